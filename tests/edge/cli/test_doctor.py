"""``spike-edge doctor``: runs here, reports every check in JSON, recognises a Jetson from its files,
and exits non-zero when the CPU default cannot run (its ports taken)."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.cli.doctor import CheckStatus, cpu_model, l4t_release
from edge.protocol.endpoints import DEFAULT_PUB_URL
from firmware_io.exits import ExitCode

CHECK_KEYS = {"cpu", "cpu_bf16", "shm", "clock", "ports", "compiler", "native", "torch", "cuda", "tensorrt", "onnxruntime",
              "spikelink", "jetson"}
ORIN_RELEASE = "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64, DATE: Fri Jul 19 23:24:25 UTC 2024\n"


def fake_jetson(root: Path) -> Path:
    """The files a Jetson AGX Orin shows, as real files under ``root``."""
    files = {
        "etc/nv_tegra_release": ORIN_RELEASE + "# KERNEL_VARIANT: oot\n",
        "proc/device-tree/model": "NVIDIA Jetson AGX Orin Developer Kit\0",
        "var/lib/nvpmodel/status": "pmode:0002 fmode:quiet\n",
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1113600\n",
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq": "2201600\n",
        "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq": "729600\n",
        "sys/devices/system/cpu/cpu1/cpufreq/scaling_max_freq": "2201600\n",
        "sys/class/devfreq/17000000.ga10b/cur_freq": "306000000\n",
        "sys/class/devfreq/17000000.ga10b/max_freq": "1300500000\n",
    }
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_doctor_json_reports_every_check_and_recognises_a_jetson_root(tmp_path):
    root = fake_jetson(tmp_path / "orin")
    result = subprocess.run([sys.executable, "-m", "edge", "doctor", "--json", "--root", str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (ExitCode.OK, ExitCode.BACKEND_UNAVAILABLE), result.stderr
    report = json.loads(result.stdout)
    assert set(report["checks"]) == CHECK_KEYS
    assert {"ring", "spike_counter", "lrn_stir", "tensorrt", "onnx"} <= set(report["uses"])
    for key, check in report["checks"].items():
        assert CheckStatus(check["status"]) and check["summary"], key
    assert report["ok"] == (result.returncode == ExitCode.OK) == (report["failed"] == [])
    assert report["failed"] == [k for k, c in report["checks"].items() if c["status"] == "fail"]
    assert report["checks"]["cpu"]["cores"] >= 1 and report["checks"]["shm"]["default_ring_bytes"] > 0
    assert report["checks"]["clock"]["measured_step_ns"] > 0

    jetson = report["checks"]["jetson"]
    assert jetson["status"] == "ok" and jetson["jetson"] is True
    assert jetson["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert jetson["l4t"] == "R36.3.0"
    assert jetson["power_mode"] == {"name": None, "id": 2, "source": "var/lib/nvpmodel/status"}
    assert jetson["clocks"]["cpu_mhz"] == {"current": [729, 1113], "max": [2201, 2201]}
    assert jetson["clocks"]["gpu_mhz"] == {"current": 306, "max": 1300}


def test_doctor_human_output_and_no_jetson(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["doctor", "--root", str(fake_jetson(tmp_path / "orin"))])
    assert result.exit_code in (ExitCode.OK, ExitCode.BACKEND_UNAVAILABLE), result.output
    assert "NVIDIA Jetson AGX Orin Developer Kit, L4T R36.3.0, power mode (id 2), cpu 729-1113 MHz, gpu 306 MHz" in result.output
    assert "uses:   ring " in result.output
    (tmp_path / "plain").mkdir()
    result = runner.invoke(main, ["doctor", "--json", "--root", str(tmp_path / "plain")])
    jetson = json.loads(result.stdout.splitlines()[0])["checks"]["jetson"]
    assert jetson["status"] == "absent" and jetson["jetson"] is False


def test_doctor_fails_when_the_default_port_is_taken():
    url = urlparse(DEFAULT_PUB_URL)
    holder = socket.socket()
    try:
        holder.bind((url.hostname, url.port))
        holder.listen()
    except OSError as exc:  # already taken by someone else: the check must say so all the same
        if exc.errno != errno.EADDRINUSE:
            pytest.skip(f"cannot bind {DEFAULT_PUB_URL} here: {exc}")
    try:
        result = CliRunner().invoke(main, ["doctor", "--json"])
    finally:
        holder.close()
    assert result.exit_code == ExitCode.BACKEND_UNAVAILABLE, result.output
    report = json.loads(result.stdout.splitlines()[0])
    assert not report["ok"] and "ports" in report["failed"]
    assert "in use" in report["checks"]["ports"]["endpoints"][DEFAULT_PUB_URL]
    assert "error: the CPU default cannot run here: ports" in result.stderr


def test_release_and_cpu_parsing():
    assert l4t_release(ORIN_RELEASE) == "R36.3.0"
    assert l4t_release("# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref") == "R32.7.4"
    assert l4t_release("not a release file") is None
    orin = "processor\t: 0\nBogoMIPS\t: 62.50\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n"
    assert cpu_model(orin) == "ARM Cortex-A78AE"
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\n") == "AMD EPYC 7763 64-Core Processor"
