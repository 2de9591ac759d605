"""``spike-edge service unit CONFIG`` (``edge.cli.service``): the unit runs the checked configuration, hardened,
and systemd's own checker accepts it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from edge.cli.processes import EDGE


def unit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGE, "service", "unit", *args], capture_output=True, text=True, timeout=60)


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_runs_the_checked_config_hardened(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text('simulate = "shapes"\nrate-hz = 20000\nring-planes = 8000\nmetrics = "127.0.0.1:9464"\n')
    result = unit(str(config))
    assert result.returncode == 0, result.stderr
    s = settings(result.stdout)
    assert s["ExecStart"] == [f"{EDGE[0]} -m edge run --config {config}"]
    assert s["WorkingDirectory"] == [str(tmp_path)]
    expected = {"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30", "Restart": "on-failure",
                "RestartPreventExitStatus": "2", "DynamicUser": "yes", "ProtectSystem": "strict",
                "ProtectHome": "read-only", "PrivateTmp": "yes", "RuntimeDirectory": "spike-edge",
                "PrivateDevices": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
                "SystemCallFilter": "@system-service", "WantedBy": "multi-user.target"}
    for key, value in expected.items():
        assert s.get(key) == [value], (key, s.get(key))
    assert "# Metrics: http://127.0.0.1:9464/metrics" in result.stdout
    assert "the ring takes 100.1 MB of /dev/shm (8000 planes of 250x400 = 12,500 B)" in result.stdout
    assert "size=1G" in result.stdout  # how to enlarge /dev/shm


def test_unit_options_a_camera_and_a_bad_config(tmp_path):
    camera = tmp_path / "camera.toml"
    camera.write_text("camera = true\nmethod = \"lrn\"\n")
    result = unit(str(camera), "--user", "spike", "--group", "video", "--device", "/dev/spikelink0", "--watchdog-s", "90")
    assert result.returncode == 0, result.stderr
    s = settings(result.stdout)
    assert s["User"] == ["spike"] and s["Group"] == ["spike"] and "DynamicUser" not in s
    assert s["SupplementaryGroups"] == ["video"] and s["WatchdogSec"] == ["90"]
    assert s["DevicePolicy"] == ["closed"] and s["DeviceAllow"] == ["/dev/spikelink0 rw"] and "PrivateDevices" not in s
    open_devices = unit(str(camera))
    assert "PrivateDevices" not in settings(open_devices.stdout) and "--device PATH" in open_devices.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('simulate = "shapes"\nhop = 0\n')
    result = unit(str(bad))
    assert result.returncode == 2 and "hop must be >= 1, got 0" in result.stderr and "bad.toml" in result.stderr
    bad.write_text('simulate = "shapes"\nmetrics = "0.0.0.0:9464"\n')
    result = unit(str(bad))
    assert result.returncode == 2 and "without --insecure" in result.stderr
    assert unit(str(tmp_path / "missing.toml")).returncode == 2
    assert unit(str(camera), "--device", "spikelink0").returncode == 2


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not found (Debian's systemd package)")
    config = tmp_path / "edge.toml"
    config.write_text('simulate = "shapes"\nmetrics = 9464\n')
    result = unit(str(config))
    assert result.returncode == 0, result.stderr
    path = tmp_path / "spike-edge.service"
    path.write_text(result.stdout)
    check = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (check.stdout + check.stderr).splitlines() if str(path) in line]
    assert check.returncode == 0 and not problems, check.stdout + check.stderr
