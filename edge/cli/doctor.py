"""``spike-edge doctor [--json] [--root DIR]``: what this machine will use, and what is missing.

Checks, each with a status (``CheckStatus``) and the facts behind it:

- ``cpu``: cores (all, and usable by this process) and model; ``cpu_bf16``: AVX512-BF16 and AMX
  (``edge.reconstruction.cpu_features``: what ``--precision bf16`` and ``auto`` on the CPU need);
  ``shm``: ``/dev/shm`` size and free space against the default ring; ``clock``: the monotonic
  clock's resolution (declared, measured); ``ports``: whether the default endpoints
  (``edge.protocol.endpoints``) can be bound;
- ``compiler``: the C compiler, and ``native``: whether the ring's atomic helper
  (``edge.live.ringsync``) and the spike counter (``firmware_io.kernels``) build and load;
- ``torch`` and ``cuda`` (device name, compute capability, memory), ``tensorrt`` (TensorRT,
  Torch-TensorRT, DLA cores), ``onnxruntime`` (version, execution providers);
- ``spikelink``: the camera library named by ``$SPIKELINK_LIBRARY``;
- ``jetson``: on a Jetson (``/etc/nv_tegra_release`` or a Jetson device-tree model): the model, the
  L4T release, the power mode (``nvpmodel -q`` when present, else nvpmodel's status file) and the CPU,
  GPU and memory clocks where readable.

Only what the CPU default needs (``spike-edge run`` with its defaults: shared memory for the ring,
the default ports, a monotonic clock) is required: when one of those fails, the report is printed
and the command exits with ``BACKEND_UNAVAILABLE``. Everything else is optional and reported as
``absent`` (not here) or ``warn`` (a slower or reduced fallback runs). ``--root DIR`` reads the
Jetson files under ``DIR`` instead of ``/`` (a copy of a board's ``etc``, ``proc``, ``sys`` and
``var``), and then does not run ``nvpmodel``, which would describe this machine instead.
"""

from __future__ import annotations

import enum
import errno
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click

from edge.live.config import DEFAULT_RING_PLANES
from edge.live.ring import RingLayout
from edge.protocol.endpoints import DEFAULT_CONTROL_URL, DEFAULT_PUB_URL
from edge.reconstruction.engines import distribution_version
from firmware_io.contract import DEFAULT_GEOMETRY
from firmware_io.exits import ExitCode, fail

SHM_PATH = Path("/dev/shm")
TOOL_TIMEOUT_S = 10
# CPU cores of the Jetson modules, by /proc/cpuinfo's (implementer, part)
ARM_CORES = {("0x41", "0xd07"): "ARM Cortex-A57", ("0x41", "0xd42"): "ARM Cortex-A78AE",
             ("0x4e", "0x004"): "NVIDIA Carmel"}


class CheckStatus(str, enum.Enum):
    OK = "ok"  # present and used
    WARN = "warn"  # a fallback runs instead (slower, or holding up the camera)
    ABSENT = "absent"  # optional and not here: what it adds is unavailable
    FAIL = "fail"  # required by the CPU default and missing: doctor exits non-zero


@dataclass
class Check:
    key: str
    status: CheckStatus
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "summary": self.summary, **self.facts}


def _run(argv: list[str]) -> str | None:
    """A tool's stdout, or ``None`` when it is missing, fails or hangs."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\0", "").strip()
    except OSError:
        return None


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


# -- the machine ---------------------------------------------------------------------------------
def cpu_model(cpuinfo: str) -> str:
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    if "model name" in fields:
        return fields["model name"]
    core = ARM_CORES.get((fields.get("CPU implementer", "").lower(), fields.get("CPU part", "").lower()))
    return core or fields.get("Hardware") or platform.processor() or "unknown"


def check_cpu() -> Check:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    model = cpu_model(_read(Path("/proc/cpuinfo")) or "")
    facts = {"cores": cores, "usable_cores": usable, "model": model, "machine": platform.machine()}
    status = CheckStatus.OK if usable >= 2 else CheckStatus.WARN  # capture and worker each want a core
    note = "" if status is CheckStatus.OK else " (capture and worker share one core: expect overruns at 40 kHz)"
    return Check("cpu", status, f"{cores} cores ({usable} usable), {model} ({platform.machine()}){note}", facts)


def check_shm() -> Check:
    ring_bytes = RingLayout(DEFAULT_RING_PLANES, DEFAULT_GEOMETRY.plane_bytes).total_bytes
    facts: dict[str, Any] = {"path": str(SHM_PATH), "default_ring_bytes": ring_bytes}
    try:
        usage = shutil.disk_usage(SHM_PATH)
    except OSError as exc:
        return Check("shm", CheckStatus.FAIL, f"{SHM_PATH} unusable ({exc}): the ring lives there", facts)
    facts.update(size_bytes=usage.total, free_bytes=usage.free)
    summary = f"{SHM_PATH} {_gib(usage.total)}, {_gib(usage.free)} free; the default ring needs {ring_bytes / 1e6:.1f} MB"
    if usage.free < ring_bytes:
        return Check("shm", CheckStatus.FAIL, summary + " (too little: enlarge /dev/shm or pass --ring-planes)", facts)
    return Check("shm", CheckStatus.OK, summary, facts)


def check_clock() -> Check:
    info = time.get_clock_info("monotonic")
    steps = []
    last = time.monotonic_ns()
    for _ in range(20000):
        now = time.monotonic_ns()
        if now != last:
            steps.append(now - last)
        last = now
    measured = min(steps) if steps else None
    facts = {"implementation": info.implementation, "resolution_ns": round(info.resolution * 1e9),
             "measured_step_ns": measured}
    summary = f"monotonic ({info.implementation}): resolution {info.resolution * 1e9:.0f} ns, smallest step seen {measured} ns"
    if not info.monotonic or measured is None or measured > 1_000_000:
        return Check("clock", CheckStatus.FAIL, summary + " (frame timestamps need a sub-millisecond clock)", facts)
    return Check("clock", CheckStatus.OK, summary, facts)


def port_free(url: str) -> tuple[bool, str]:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = "in use (a daemon already running?)" if exc.errno == errno.EADDRINUSE else str(exc)
            return False, reason
    return True, "free"


def check_ports() -> Check:
    results = {url: port_free(url) for url in (DEFAULT_PUB_URL, DEFAULT_CONTROL_URL)}
    facts = {"endpoints": {url: reason for url, (_, reason) in results.items()}}
    busy = [f"{url} {reason}" for url, (free, reason) in results.items() if not free]
    if busy:
        return Check("ports", CheckStatus.FAIL, "; ".join(busy) + ": pass --bind/--control to run elsewhere", facts)
    return Check("ports", CheckStatus.OK, f"{DEFAULT_PUB_URL} (frames) and {DEFAULT_CONTROL_URL} (control) free", facts)


# -- native helpers ------------------------------------------------------------------------------
def check_compiler() -> Check:
    from firmware_io.cbuild import CompilerNotFoundError, find_c_compiler

    try:
        argv = find_c_compiler()
    except CompilerNotFoundError as exc:
        return Check("compiler", CheckStatus.WARN, f"{exc}: the fallbacks below run instead", {"command": None})
    version = (_run([*argv, "--version"]) or "").splitlines()
    facts = {"command": " ".join(argv), "version": version[0] if version else None}
    return Check("compiler", CheckStatus.OK, f"{facts['command']}: {facts['version'] or 'version unknown'}", facts)


def check_native() -> Check:
    from edge.live import ringsync
    from firmware_io.kernels import native_status, spike_count_bits

    ring_ok = ringsync.helper() is not None
    counter_ok = spike_count_bits() is not None
    facts = {"ring_helper": ringsync.helper_status(), "ring_sync": ringsync.choose_mode().value,
             "spike_counter": native_status()}
    ring = "ring: atomic helper builds" if ring_ok else "ring: shared lock (a reader's copy holds up the writer)"
    counter = "spike counter: C" if counter_ok else "spike counter: numpy (about half as fast)"
    status = CheckStatus.OK if ring_ok and counter_ok else CheckStatus.WARN
    return Check("native", status, f"{ring}; {counter}", facts)


def check_cpu_bf16() -> Check:
    from edge.reconstruction.cpu_features import detect_bf16_support

    support = detect_bf16_support()
    status = CheckStatus.OK if support.fast_bf16 else CheckStatus.ABSENT
    use = ("--precision bf16 runs fast on the CPU" if support.fast_bf16
           else "CPU networks stay fp32 under --precision auto")
    return Check("cpu_bf16", status, f"{support.summary()}: {use}", support.as_dict())


# -- accelerators --------------------------------------------------------------------------------
def check_torch() -> tuple[Check, Check]:
    try:
        import torch
    except ImportError as exc:
        hint = "on a Jetson: NVIDIA's JetPack wheel (docs/deploy.md), else pip install 'spike-edge[torch]'"
        absent = Check("torch", CheckStatus.ABSENT, f"not importable ({exc}): LRN/STIR unavailable; {hint}",
                       {"version": None})
        return absent, Check("cuda", CheckStatus.ABSENT, "needs torch", {"available": False})
    torch_check = Check("torch", CheckStatus.OK, f"torch {torch.__version__} (CUDA build {torch.version.cuda})",
                        {"version": torch.__version__, "cuda_build": torch.version.cuda})
    if not torch.cuda.is_available():
        return torch_check, Check("cuda", CheckStatus.ABSENT, "no CUDA device visible to torch: networks run on the CPU",
                                  {"available": False})
    props = torch.cuda.get_device_properties(0)
    facts = {"available": True, "device_count": torch.cuda.device_count(), "name": props.name,
             "compute_capability": f"{props.major}.{props.minor}", "memory_bytes": int(props.total_memory)}
    return torch_check, Check("cuda", CheckStatus.OK,
                              f"{props.name}, compute capability {props.major}.{props.minor}, {_gib(props.total_memory)}",
                              facts)


def check_tensorrt() -> Check:
    facts: dict[str, Any] = {"tensorrt": None, "torch_tensorrt": distribution_version("torch-tensorrt", "torch_tensorrt"),
                             "dla_cores": None}
    try:
        import tensorrt

        facts["tensorrt"] = str(tensorrt.__version__)
        builder = tensorrt.Builder(tensorrt.Logger(tensorrt.Logger.ERROR))
        facts["dla_cores"] = int(builder.num_DLA_cores)
    except ImportError:
        pass
    except Exception as exc:  # a TensorRT that imports but cannot make a builder (no GPU): say so
        facts["error"] = str(exc)
    if facts["tensorrt"] is None:
        return Check("tensorrt", CheckStatus.ABSENT, "TensorRT not importable: no TensorRT engines", facts)
    parts = [f"TensorRT {facts['tensorrt']}",
             f"Torch-TensorRT {facts['torch_tensorrt']}" if facts["torch_tensorrt"] else "no Torch-TensorRT",
             f"{facts['dla_cores']} DLA cores" if facts["dla_cores"] is not None else "DLA cores unknown"]
    status = CheckStatus.OK if facts["torch_tensorrt"] else CheckStatus.WARN
    return Check("tensorrt", status, ", ".join(parts), facts)


def check_onnxruntime() -> Check:
    try:
        import onnxruntime
    except ImportError as exc:
        return Check("onnxruntime", CheckStatus.ABSENT, f"not importable ({exc}): no ONNX engines",
                     {"version": None, "providers": []})
    providers = list(onnxruntime.get_available_providers())
    return Check("onnxruntime", CheckStatus.OK, f"{onnxruntime.__version__}: {', '.join(providers)}",
                 {"version": onnxruntime.__version__, "providers": providers})


def check_spikelink() -> Check:
    from firmware_io.contract import SourceError
    from firmware_io.spikelink import LIBRARY_ENV, SpikeLinkLibrary

    path = os.environ.get(LIBRARY_ENV)
    facts: dict[str, Any] = {"env": LIBRARY_ENV, "path": path}
    if not path:
        return Check("spikelink", CheckStatus.ABSENT, f"${LIBRARY_ENV} not set: --camera needs --camera-library", facts)
    try:
        SpikeLinkLibrary(path)
    except (FileNotFoundError, SourceError) as exc:
        return Check("spikelink", CheckStatus.WARN, f"${LIBRARY_ENV}={path}: {exc}", facts)
    return Check("spikelink", CheckStatus.OK, f"${LIBRARY_ENV}={path} loads", facts)


# -- the Jetson ----------------------------------------------------------------------------------
def l4t_release(text: str) -> str | None:
    """``R35.4.1`` from ``/etc/nv_tegra_release``'s ``# R35 (release), REVISION: 4.1, ...``."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"R{match.group(1)}.{match.group(2)}" if match else None


def power_mode(root: Path) -> dict[str, Any] | None:
    """``nvpmodel -q`` (``NV Power Mode: MAXN`` then the mode's id) on this machine, else nvpmodel's status file."""
    if root == Path("/") and shutil.which("nvpmodel"):
        out = _run(["nvpmodel", "-q"])
        if out:
            name = re.search(r"NV Power Mode:\s*(\S+)", out)
            ids = [line.strip() for line in out.splitlines() if line.strip().isdigit()]
            return {"name": name.group(1) if name else None, "id": int(ids[0]) if ids else None, "source": "nvpmodel -q"}
    status = _read(root / "var/lib/nvpmodel/status")
    match = re.search(r"pmode:(\d+)", status or "")
    if match:
        return {"name": None, "id": int(match.group(1)), "source": "var/lib/nvpmodel/status"}
    return None


def _khz_range(paths: list[Path]) -> tuple[int, int] | None:
    values = [int(v) for v in (_read(p) for p in paths) if v and v.isdigit()]
    return (min(values), max(values)) if values else None


def clocks(root: Path) -> dict[str, Any]:
    """CPU (cpufreq, kHz) and GPU / memory (devfreq, Hz) clocks, current and maximum, where readable."""
    out: dict[str, Any] = {}
    cpu = sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))
    cur = _khz_range([d / "scaling_cur_freq" for d in cpu])
    top = _khz_range([d / "scaling_max_freq" for d in cpu])
    if cur:
        out["cpu_mhz"] = {"current": [cur[0] // 1000, cur[1] // 1000], "max": [top[0] // 1000, top[1] // 1000] if top else None}
    for device in sorted((root / "sys/class/devfreq").glob("*")):
        name = device.name.split(".")[-1]
        kind = "gpu" if re.search(r"gpu|gv11b|ga10b|gp10b|gm20b", name) else "emc" if "emc" in name else None
        current = _read(device / "cur_freq")
        if kind and current and current.isdigit():
            maximum = _read(device / "max_freq")
            out[f"{kind}_mhz"] = {"current": int(current) // 1_000_000,
                                  "max": int(maximum) // 1_000_000 if maximum and maximum.isdigit() else None}
    return out


def jetson_facts(root: Path) -> dict[str, Any] | None:
    """What the Jetson files under ``root`` say, or ``None`` when this is no Jetson."""
    release = _read(root / "etc/nv_tegra_release")
    model = _read(root / "proc/device-tree/model")
    if release is None and not (model and re.search(r"jetson|nvidia", model, re.IGNORECASE)):
        return None
    first_line = (release or "").splitlines()[0] if release else None
    return {"model": model, "l4t": l4t_release(release or ""), "nv_tegra_release": first_line,
            "power_mode": power_mode(root), "clocks": clocks(root)}


def _mhz_text(value: int | list[int]) -> str:
    if isinstance(value, list):  # the range over the CPU cores
        return str(value[0]) if value[0] == value[1] else f"{value[0]}-{value[1]}"
    return str(value)


def check_jetson(root: Path) -> Check:
    facts = jetson_facts(root)
    if facts is None:
        return Check("jetson", CheckStatus.ABSENT, f"not a Jetson (no {root / 'etc/nv_tegra_release'})", {"jetson": False})
    mode = facts["power_mode"]
    if mode is None:
        mode_text = "power mode unreadable (no nvpmodel)"
    else:
        mode_text = f"power mode {mode['name'] or ''} (id {mode['id']})".replace("  ", " ")
    clock_text = ", ".join(f"{k.removesuffix('_mhz')} {_mhz_text(v['current'])} MHz"
                           for k, v in facts["clocks"].items()) or "clocks unreadable"
    return Check("jetson", CheckStatus.OK, f"{facts['model'] or 'Jetson'}, L4T {facts['l4t'] or 'unknown'}, {mode_text}, {clock_text}",
                 {"jetson": True, **facts})


# -- the command ---------------------------------------------------------------------------------
def run_checks(root: Path) -> list[Check]:
    checks = [check_cpu(), check_cpu_bf16(), check_shm(), check_clock(), check_ports(), check_compiler(), check_native()]
    checks += [*check_torch(), check_tensorrt(), check_onnxruntime(), check_spikelink(), check_jetson(root)]
    return checks


def uses(by_key: dict[str, Check]) -> dict[str, str]:
    """What the pipeline will run on, in words."""
    native = by_key["native"].facts
    cuda = by_key["cuda"]
    networks = ("not available (no torch)" if by_key["torch"].status is CheckStatus.ABSENT
                else f"torch on CUDA ({cuda.facts['name']})" if cuda.status is CheckStatus.OK else "torch on the CPU")
    return {
        "ring": "C11 acquire/release atomics" if native["ring_sync"] == "atomic" else "a lock shared by capture and worker",
        "spike_counter": "C" if native["spike_counter"] == "native C" else "numpy",
        "tfp_tfi": "CPU",
        "lrn_stir": networks,
        "onnx": "ONNX Runtime" if by_key["onnxruntime"].status is CheckStatus.OK else "not available",
        "tensorrt": "TensorRT engines" if by_key["tensorrt"].status is CheckStatus.OK else "not available",
    }


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@click.option("--root", "root", type=click.Path(file_okay=False, exists=True), default="/", show_default=True,
              help="Read the Jetson files (etc/nv_tegra_release, proc/device-tree/model, sys clocks) under this "
                   "folder, e.g. a copy of a board's; nvpmodel is only run for /.")
def doctor(as_json: bool, root: str) -> None:
    """What this machine will use for the pipeline, and what is missing.

    Exits 4 when something the CPU default needs (shared memory, the default ports, a monotonic
    clock) is missing; optional parts (compiler, torch, CUDA, TensorRT, ONNX Runtime, camera
    library) are reported, never fatal.
    """
    checks = run_checks(Path(root))
    by_key = {check.key: check for check in checks}
    failed = [check.key for check in checks if check.status is CheckStatus.FAIL]
    report = {"ok": not failed, "failed": failed, "uses": uses(by_key),
              "checks": {check.key: check.to_dict() for check in checks}}
    if as_json:
        click.echo(json.dumps(report))
    else:
        for check in checks:
            click.echo(f"{check.status.value:>6}  {check.key:<12} {check.summary}")
        click.echo("uses:   " + "; ".join(f"{key} {value}" for key, value in report["uses"].items()))
    if failed:
        fail(f"the CPU default cannot run here: {', '.join(failed)} (see above)", ExitCode.BACKEND_UNAVAILABLE)
