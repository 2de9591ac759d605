"""``spike-edge bench device``: the networks on one device, side by side, written to a results file.

For each network (LRN at 250x400, STIR at 256x400 unless ``--height/--width`` say otherwise), on
the same device and in the same run:

- ``eager-fp32``: plain eager torch fp32 (no channels_last, no CUDA graphs), the baseline. Packed
  windows go to the device and are unpacked / voxelised there, as for the project's backend, so
  the two differ only in how the network runs. On CUDA torch's defaults apply (TF32 convolutions).
- ``torch``: the project's torch backend through the real ``Reconstructor`` interface (on CUDA:
  fp16, channels_last, one CUDA graph per batch size, pinned host buffer).
- ``torch-bf16``: the same backend in bf16 (``--precision bf16``; on the CPU fast where it has
  AVX512-BF16 or AMX, see ``environment.cpu_bf16``).
- ``onnxruntime``: ONNX Runtime (CUDA execution provider on ``--device cuda``, input prepared on the
  GPU and bound with IOBinding), where importable.
- ``tensorrt``: Torch-TensorRT, where importable on CUDA and the network has weights on disk; an
  fp16 engine is built for batch 1 into a temporary directory (it times batch 1 only).
- ``aoti-fp16`` (CUDA) / ``aoti-fp32`` (CPU), and ``aoti-bf16`` on CUDA and on CPUs with fast bf16:
  an AOTInductor package of the whole forward, unpacking
  included, compiled into the temporary directory (where the network has weights on disk).

Each candidate is timed through ``reconstruct(packed uint8 windows) -> float32 images on the host``:
single-frame latency (batch 1, one call per sample, p50/p99; on CUDA ``torch.cuda.synchronize``
before and after each call) and throughput in frames/s at each ``--batch-sizes`` (calls in series for
``--seconds``). Output agreement is measured against a strict fp32 reference (the eager network with
TF32 off) on windows of the REDS_BASE recordings in ``../shared/data/redsbase`` when present (centre
cropped / wrap padded to the benchmark geometry), else on a simulated recording: finiteness, max abs
and relative difference and PSNR (peak = the reference's range). Targets (``TARGETS``) are printed beside the figures with
PASS/FAIL: frames/s is the best over the batch sizes, latency is judged on the p50 (p99 shown).

``--out FILE.json`` writes the report atomically and a Markdown summary beside it (``FILE.md``), and
rewrites both as each part finishes (every candidate, every network, the pipeline trial), so a bench
cut short (a hang, a time limit) leaves what it had measured. Every candidate is built, checked and
timed on its own, in turn, and freed before the next: a failure of any kind (a compile error, out of
memory) is recorded in its row and the bench moves on; on CUDA the peak memory figure is that
candidate's alone (the allocator's peak is reset and its cache emptied between candidates).
A candidate passes only with finite output; agreement is judged by the max error relative to the
reference's range (``edge.reconstruction.reference``). ``--candidates KEY,...`` times only the
candidates whose keys match (shell patterns allowed: ``'*bf16*'``); one that matches nothing in this
version is listed as skipped, not an error. For candidates
that hold a torch module, ``stages_ms`` splits one call into host-to-device copy, unpack + prepare,
network and device-to-host copy (CUDA events on a GPU, ``perf_counter`` on the CPU; eager, outside
any CUDA graph).
``--pipeline`` (CUDA only) adds one live-pipeline trial (``edge.cli.bench.pipeline.run_trial``: a real
daemon replaying a 250x400 recording at 40 kHz, hop 40, LRN on the torch backend); without it the
report carries the command that measures it (``PIPELINE_COMMAND``).

On a GPU machine, the figures for the repository come from one command::

    spike-edge bench device --device cuda --pipeline --out docs/results/bench_device_<gpu>.json

(``scripts/gpu_check.sh`` runs it with the other GPU checks; ``docs/gpu-check.md``.)
"""

from __future__ import annotations

import copy
import datetime as _dt
import fnmatch
import gc
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np

from edge.reconstruction.backends.base import BackendName, BackendUnavailable, Device
from edge.reconstruction.engines import distribution_version
from edge.reconstruction.methods import LEARNED_METHOD_NAMES, Method
from edge.reconstruction.reference import (EagerReconstructor, agreement, agreement_windows, strict_fp32,
                                           tf32_convolutions, within)
from firmware_io.contract import Geometry
from firmware_io.exits import ExitCode, fail

SCHEMA = "spike-edge bench device v2"  # v2: per-candidate errors, finite/relative agreement, stages_ms
REPO_ROOT = Path(__file__).resolve().parents[3]
BENCH_GEOMETRY = {Method.LRN: Geometry(250, 400), Method.STIR: Geometry(256, 400)}
PIPELINE_COMMAND = ("spike-edge bench pipeline --method lrn --backend torch --rate-hz 40000 --hop 40 "
                    "--seconds 10 --find-max --json")
WARMUP_CALLS = 2
MIN_TIMED_CALLS = 3
STAGE_CALLS = 20  # calls per batch size for the per-stage split
AGREEMENT_REL_TOL = {"fp32": 1e-3, "reduced": 3e-2}  # max error / reference range: fp32 vs fp16, bf16, TensorRT


@dataclass(frozen=True)
class Target:
    min_frames_per_s: float
    max_latency_ms: float


TARGETS = {Method.LRN: Target(2000.0, 0.5), Method.STIR: Target(200.0, 5.0)}


# -- environment ---------------------------------------------------------------------------------


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _run_text(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=cwd, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _driver_versions() -> dict[str, str | None]:
    """The NVIDIA driver (``nvidia-smi``) and the CUDA version it supports (``cuDriverGetVersion``)."""
    found: dict[str, str | None] = {"driver": None, "cuda_driver_api": None}
    if shutil.which("nvidia-smi"):
        text = _run_text(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        found["driver"] = text.splitlines()[0].strip() if text else None
    try:
        import ctypes

        libcuda = ctypes.CDLL("libcuda.so.1")
        value = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(value)) == 0:
            found["cuda_driver_api"] = f"{value.value // 1000}.{(value.value % 1000) // 10}"
    except (OSError, AttributeError):
        pass
    return found


def environment(device: Device) -> dict[str, Any]:
    import torch

    from edge.reconstruction.backends.tensorrt_backend import tensorrt_version
    from edge.reconstruction.cpu_features import detect_bf16_support

    env: dict[str, Any] = {
        "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "spike-edge " + " ".join(sys.argv[1:]) if sys.argv and "edge" in sys.argv[0] else None,
        "git": _run_text(["git", "describe", "--always", "--dirty", "--abbrev=12"], REPO_ROOT),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": detect_bf16_support().as_dict(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "onnx": distribution_version("onnx"),
        "onnxruntime": distribution_version("onnxruntime-gpu", "onnxruntime"),
        "onnxruntime_providers": None,
        "tensorrt": tensorrt_version(),
        "torch_tensorrt": distribution_version("torch-tensorrt", "torch_tensorrt"),
        "gpu": None,
    }
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        env["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
    if device is Device.CUDA:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        env["gpu"] = {
            "name": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            **_driver_versions(),
            "tf32_convolutions": tf32_convolutions(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        }
    return env


# -- candidates ----------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One way to run the network; built (``make``) only when its turn comes, and freed after it."""

    key: str
    description: str
    make: Callable[[], Any]
    max_batch: int | None = None
    rec: Any = field(default=None, repr=False)
    build_s: float = 0.0


def build_candidates(loaded, geometry: Geometry, device: Device, *, tensorrt: bool, workdir: Path,
                     selected: frozenset[str] | None = None) -> tuple[list[Candidate], list[dict[str, str]]]:
    """The candidates for one network, in order (not built yet), and those that cannot run here with why.
    ``selected``: only the keys matching these patterns (``--candidates``, shell-style: ``aoti*``); a
    pattern that matches nothing offered here is reported skipped."""
    from edge.reconstruction.backends import available_backends, build_backend

    candidates: list[Candidate] = []
    skipped: list[dict[str, str]] = []

    def attempt(key: str, description: str, make: Callable[[], Any], max_batch: int | None = None) -> None:
        """Queue a candidate (built later, on its own: ``bench_network``), unless ``--candidates`` leaves it out."""
        if selected is not None and not any(fnmatch.fnmatchcase(key, pattern) for pattern in selected):
            return
        candidates.append(Candidate(key, description, make, max_batch))

    attempt("eager-fp32", "plain eager torch fp32: no channels_last, no CUDA graphs (baseline)",
            lambda: EagerReconstructor(copy.deepcopy(loaded), geometry, device))
    found = available_backends(device)
    project = ("fp16, channels_last, CUDA graph per batch size, pinned host buffer" if device is Device.CUDA
               else "fp32, channels_last, inference mode")
    attempt("torch", f"the project's torch backend: {project}",
            lambda: build_backend(copy.deepcopy(loaded), geometry, BackendName.TORCH, device))
    attempt("torch-bf16", "the project's torch backend in bf16: channels_last, inference mode (CUDA: graphs)",
            lambda: build_backend(copy.deepcopy(loaded), geometry, BackendName.TORCH, device, precision="bf16"))
    if BackendName.ONNX in found:
        attempt("onnxruntime", "ONNX Runtime fp32 (network exported in memory; input prepared on the host, "
                "or on the GPU and bound with IOBinding on CUDA)",
                lambda: build_backend(copy.deepcopy(loaded), geometry, BackendName.ONNX, device))
    else:
        skipped.append({"key": "onnxruntime", "reason": "onnxruntime / onnx not importable"})
    if device is not Device.CUDA:
        skipped.append({"key": "tensorrt", "reason": "TensorRT runs on CUDA only"})
    elif not tensorrt:
        skipped.append({"key": "tensorrt", "reason": "--no-tensorrt"})
    elif BackendName.TENSORRT not in found:
        skipped.append({"key": "tensorrt", "reason": "torch_tensorrt not importable: pip install 'spike-edge[gpu]'"})
    elif loaded.weights_path is None:
        skipped.append({"key": "tensorrt", "reason": "engines are built from weights on disk; these are random"})
    else:
        def make_trt():
            from edge.reconstruction.backends import export_engine, load_engine_dir

            out = export_engine(loaded.method, loaded.weights_path, "tensorrt", geometry,
                                workdir / f"trt_{loaded.method.value}", precision="fp16")
            return load_engine_dir(out, geometry, model=loaded.method, backend=BackendName.TENSORRT,
                                   device=Device.CUDA)

        attempt("tensorrt", "Torch-TensorRT fp16 engine for batch 1 (built here; build time in build_s)",
                make_trt, max_batch=1)
    from edge.reconstruction.cpu_features import detect_bf16_support

    aoti_precisions = ["fp16" if device is Device.CUDA else "fp32"]
    if device is Device.CUDA or detect_bf16_support().fast_bf16:
        aoti_precisions.append("bf16")
    for aoti_precision in aoti_precisions:
        if loaded.weights_path is None:
            skipped.append({"key": f"aoti-{aoti_precision}", "reason": "packages are compiled from weights on disk; "
                                                                       "these are random"})
            continue

        def make_aoti(aoti_precision=aoti_precision):
            from edge.reconstruction.backends import export_engine, load_engine_dir

            out = export_engine(loaded.method, loaded.weights_path, "aoti", geometry,
                                workdir / f"aoti_{loaded.method.value}_{aoti_precision}", precision=aoti_precision,
                                device=device)
            return load_engine_dir(out, geometry, model=loaded.method, backend=BackendName.AOTI, device=device)

        attempt(f"aoti-{aoti_precision}", f"AOTInductor {aoti_precision} package of the whole forward, unpacking "
                "included (compiled here; compile time in build_s)", make_aoti)
    if selected is not None:
        offered = {c.key for c in candidates} | {s["key"] for s in skipped}
        skipped = [s for s in skipped if any(fnmatch.fnmatchcase(s["key"], pattern) for pattern in selected)]
        skipped += [{"key": pattern, "reason": "no candidate of this version matches (--candidates)"}
                    for pattern in sorted(selected) if not any(fnmatch.fnmatchcase(k, pattern) for k in offered)]
    return candidates, skipped


# -- timing --------------------------------------------------------------------------------------


def time_calls(call: Callable[[], Any], seconds: float, sync: Callable[[], None],
               min_calls: int = MIN_TIMED_CALLS) -> list[float]:
    """Milliseconds per call, synchronised before and after each, for ``seconds`` (at least ``min_calls``)."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < deadline:
        sync()
        t0 = time.perf_counter_ns()
        call()
        sync()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


def _summary(ms: list[float]) -> dict[str, Any]:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 4), "p99": round(float(np.percentile(a, 99)), 4),
            "mean": round(float(a.mean()), 4), "min": round(float(a.min()), 4), "calls": int(a.size)}


def measure(cand: Candidate, batches: dict[int, np.ndarray], seconds: float, device: Device) -> dict[str, Any]:
    import torch

    cuda = device is Device.CUDA
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    row: dict[str, Any] = {"latency_ms": None, "throughput": []}
    for batch, windows in batches.items():
        entry: dict[str, Any] = {"batch": batch}
        if cand.max_batch is not None and batch > cand.max_batch:
            entry["skipped"] = f"built for batch <= {cand.max_batch}"
            row["throughput"].append(entry)
            continue
        try:
            for _ in range(WARMUP_CALLS):  # a backend that captures CUDA graphs lazily does it here
                cand.rec.reconstruct(windows)
            ms = time_calls(lambda: cand.rec.reconstruct(windows), seconds, sync)
        except Exception as exc:  # out of memory at a large batch, a backend that cannot batch, ...
            entry["error"] = _error_text(exc)
            row["throughput"].append(entry)
            if cuda:
                torch.cuda.empty_cache()
            continue
        stats = _summary(ms)
        if batch == 1:
            row["latency_ms"] = stats
        entry.update(frames_per_s=round(batch * len(ms) / (sum(ms) / 1e3), 2), ms_per_call=stats)
        row["throughput"].append(entry)
    rates = [e["frames_per_s"] for e in row["throughput"] if "frames_per_s" in e]
    row["best_frames_per_s"] = max(rates) if rates else None
    return row


def _error_text(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _stage_timer(cuda: bool):
    """``(mark, elapsed)``: ``mark()`` records a point (a CUDA event on the current stream, or
    ``perf_counter``); ``elapsed(marks)`` gives the milliseconds between consecutive marks."""
    import torch

    if cuda:
        def mark():
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event

        def elapsed(marks):
            marks[-1].synchronize()
            return [a.elapsed_time(b) for a, b in zip(marks, marks[1:])]
    else:
        mark = time.perf_counter

        def elapsed(marks):
            return [(b - a) * 1e3 for a, b in zip(marks, marks[1:])]
    return mark, elapsed


def stage_split(rec: Any, prepare: Callable[[Any, Geometry], Any], batches: dict[int, np.ndarray], device: Device,
                calls: int = STAGE_CALLS) -> dict[str, Any] | None:
    """Milliseconds per stage of one call (p50 over ``calls``) at each batch size, for a candidate holding
    a torch module (``rec.module``): host-to-device copy of the packed bytes (from pinned memory on CUDA),
    unpack + prepare, network, device-to-host copy of the images. Eager, outside any CUDA graph: the
    sum is above a graph replay's time; the split says where the time goes. ``None`` for other candidates."""
    import torch

    module = getattr(rec, "module", None)
    if not isinstance(module, torch.nn.Module):
        return None
    params = next(module.parameters(), None)
    if params is None:
        return None
    dtype, target = params.dtype, params.device
    channels_last = bool(getattr(rec, "channels_last", False))
    cuda = device is Device.CUDA
    mark, elapsed = _stage_timer(cuda)
    names = ("h2d", "prepare", "network", "d2h")
    out: dict[str, Any] = {"method": "cuda events" if cuda else "perf_counter", "batches": []}
    with torch.inference_mode():
        for batch, windows in batches.items():
            host = torch.from_numpy(np.ascontiguousarray(windows))
            if cuda:
                host = host.pin_memory()
            samples: list[list[float]] = []
            try:
                for i in range(calls + 1):  # the first call warms up
                    marks = [mark()]
                    packed = host.to(target, non_blocking=True)
                    marks.append(mark())
                    x = prepare(packed, rec.geometry).to(dtype)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    marks.append(mark())
                    y = module(x)[:, 0].float()
                    marks.append(mark())
                    y.to("cpu", non_blocking=cuda)
                    marks.append(mark())
                    if i:
                        samples.append(elapsed(marks))
            except Exception as exc:
                out["batches"].append({"batch": batch, "error": _error_text(exc)})
                continue
            per_stage = np.asarray(samples)
            p50 = {n: round(float(np.percentile(per_stage[:, k], 50)), 4) for k, n in enumerate(names)}
            out["batches"].append({"batch": batch, **p50, "total": round(sum(p50.values()), 4)})
    return out


def verdict(row: dict[str, Any], target: Target) -> dict[str, Any]:
    fps = row.get("best_frames_per_s")
    lat = (row.get("latency_ms") or {}).get("p50")
    fps_ok = fps is not None and fps >= target.min_frames_per_s
    lat_ok = lat is not None and lat < target.max_latency_ms
    agr = row.get("agreement_vs_fp32") or {}
    output_ok = bool(agr.get("within_tolerance"))
    return {"frames_per_s": fps, "frames_per_s_pass": fps_ok, "latency_p50_ms": lat, "latency_pass": lat_ok,
            "output_pass": output_ok, "verdict": "PASS" if fps_ok and lat_ok and output_ok else "FAIL"}


def _tolerance(backend: str, device: Device) -> float:
    """The max relative error allowed: fp32 on the CPU is tight; reduced precision (fp16, bf16, TF32 on
    CUDA, TensorRT) is judged like a picture (a few percent of the range at the worst pixel)."""
    strict = device is Device.CPU and "fp16" not in backend and "bf16" not in backend
    return AGREEMENT_REL_TOL["fp32" if strict else "reduced"]


# -- one network ---------------------------------------------------------------------------------


def _free(device: Device) -> None:
    gc.collect()
    if device is Device.CUDA:
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def bench_candidate(cand: Candidate, check: np.ndarray, reference: np.ndarray, batches: dict[int, np.ndarray],
                    batch_sizes: list[int], seconds: float, device: Device, target: Target,
                    prepare: Callable[[Any, Geometry], Any], stage_calls: int = STAGE_CALLS) -> dict[str, Any]:
    """Build, check and time one candidate; every failure ends up in the row (``error``), never raised."""
    import torch

    row: dict[str, Any] = {"key": cand.key, "backend": None, "description": cand.description}
    cuda = device is Device.CUDA
    _free(device)
    base = torch.cuda.memory_allocated() if cuda else 0
    t0 = time.perf_counter()
    try:
        cand.rec = cand.make()
        row["build_s"] = cand.build_s = round(time.perf_counter() - t0, 2)
        row["backend"] = cand.rec.backend
        try:
            outputs = np.concatenate([cand.rec.reconstruct(w[None]) for w in check])
            agr = agreement(outputs, reference)
            agr["rel_tolerance"] = _tolerance(cand.rec.backend, device)
            agr["within_tolerance"] = within(agr, agr["rel_tolerance"])
            row["agreement_vs_fp32"] = agr
        except Exception as exc:
            row["agreement_vs_fp32"] = {"error": _error_text(exc)}
        row.update(measure(cand, batches, seconds, device))
        row["throughput"] = [e for e in row["throughput"] if e["batch"] in batch_sizes]
        stage_batches = {b: batches[b] for b in sorted({1, max(batch_sizes)})
                         if cand.max_batch is None or b <= cand.max_batch}
        row["stages_ms"] = stage_split(cand.rec, prepare, stage_batches, device, stage_calls) if stage_calls else None
    except Exception as exc:  # any failure of this candidate (a compile error of any type, out of memory)
        row["error"] = _error_text(exc)
        row["traceback"] = traceback.format_exc(limit=-8)
        row.setdefault("build_s", round(time.perf_counter() - t0, 2))
        row.setdefault("throughput", [])
        row.setdefault("latency_ms", None)
        row.setdefault("best_frames_per_s", None)
    if cuda:
        torch.cuda.synchronize()
        row["peak_gpu_memory_mib"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
        row["peak_gpu_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    row["target"] = verdict(row, target)
    cand.rec = None
    _free(device)
    return row


def bench_network(name: Method, geometry: Geometry, device: Device, *, seconds: float, batch_sizes: list[int],
                  tensorrt: bool, log: Callable[[str], None], selected: frozenset[str] | None = None,
                  stage_calls: int = STAGE_CALLS,
                  checkpoint: Callable[[dict[str, Any]], None] = lambda result: None) -> dict[str, Any]:
    """One network's candidates, each in turn; ``checkpoint(result so far)`` after each one."""
    from edge.reconstruction.networks import load_network

    loaded = load_network(name, None, allow_random=True)
    target = TARGETS[name]
    result: dict[str, Any] = {
        "geometry": {"height": geometry.height, "width": geometry.width},
        "target_geometry": geometry == BENCH_GEOMETRY[name],
        "window_planes": loaded.window_planes,
        "weights": {"id": loaded.weights_id, "file": loaded.weights_path.name if loaded.weights_path else None,
                    "random": loaded.weights_path is None},
        "target": {"min_frames_per_s": target.min_frames_per_s, "max_latency_ms": target.max_latency_ms},
        "candidates": [], "skipped": [], "verdict": "FAIL",
    }
    with tempfile.TemporaryDirectory(prefix="spike-bench-device-") as tmp:
        candidates, skipped = build_candidates(loaded, geometry, device, tensorrt=tensorrt, workdir=Path(tmp),
                                               selected=selected)
        result["skipped"] = skipped
        check, source = agreement_windows(loaded.window_planes, geometry)
        result["agreement_source"] = source
        reference_net = EagerReconstructor(copy.deepcopy(loaded), geometry, device)
        with strict_fp32():
            reference = np.concatenate([reference_net.reconstruct(w[None]) for w in check])
        del reference_net
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (max(batch_sizes), loaded.window_planes, geometry.plane_bytes), dtype=np.uint8)
        batches = {b: np.ascontiguousarray(base[:b]) for b in sorted(set([1, *batch_sizes]))}
        for cand in candidates:
            log(f"{name.value} at {geometry}: {cand.key}")
            row = bench_candidate(cand, check, reference, batches, batch_sizes, seconds, device, target,
                                  loaded.network.prepare_torch, stage_calls)
            result["candidates"].append(row)
            project = next((r for r in result["candidates"] if r["key"] == "torch"), None)
            result["verdict"] = project["target"]["verdict"] if project else "FAIL"
            checkpoint(result)
        del candidates
        _free(device)
    return result


# -- the report ----------------------------------------------------------------------------------


def run_pipeline_trial(seconds: float) -> dict[str, Any]:
    """One live-pipeline trial: the daemon (device auto = CUDA for networks) runs LRN on the torch backend.
    Any failure, an import error included, comes back as ``{"error": ...}``."""
    try:
        from edge.cli.bench.pipeline import make_bench_recording, run_trial
        from edge.live.config import DEFAULT_RING_PLANES

        with tempfile.TemporaryDirectory(prefix="spike-bench-device-pipe-") as tmp:
            path = make_bench_recording(Path(tmp))
            return run_trial(path, rate_hz=40_000.0, seconds=max(seconds, 5.0), warmup_s=2.0, hop=40, method="lrn",
                             backend="torch", ring_planes=DEFAULT_RING_PLANES, policy="all",
                             log_path=Path(tmp) / "daemon.log")
    except Exception as exc:
        return {"error": _error_text(exc)}


def run_device_bench(device: Device, methods: list[Method], *, seconds: float, batch_sizes: list[int],
                     geometry: Geometry | None = None, tensorrt: bool = True, pipeline: bool = False,
                     candidates: frozenset[str] | None = None, stage_calls: int = STAGE_CALLS,
                     log: Callable[[str], None] = lambda s: None,
                     checkpoint: Callable[[dict[str, Any]], None] = lambda report: None) -> dict[str, Any]:
    """The whole report; ``checkpoint(report so far)`` after every candidate, network and the pipeline trial."""
    from edge.reconstruction.backends import check_device

    check_device(device)  # BackendUnavailable with a clear message when CUDA is asked for and absent
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "device": device.value,
        "settings": {"methods": [m.value for m in methods], "seconds_per_measurement": seconds,
                     "batch_sizes": batch_sizes, "warmup_calls": WARMUP_CALLS,
                     "geometry_override": str(geometry) if geometry else None,
                     "candidates": sorted(candidates) if candidates is not None else None,
                     "stage_calls": stage_calls},
        "environment": environment(device),
        "targets": {m.value: {"min_frames_per_s": t.min_frames_per_s, "max_latency_ms": t.max_latency_ms}
                    for m, t in TARGETS.items()},
        "methods": {},
        "pipeline": {"command": PIPELINE_COMMAND, "skipped": "not reached yet"},
    }
    for name in methods:
        def progress(result: dict[str, Any], name: Method = name) -> None:
            report["methods"][name.value] = result
            checkpoint(report)

        progress(bench_network(name, geometry or BENCH_GEOMETRY[name], device, seconds=seconds,
                               batch_sizes=batch_sizes, tensorrt=tensorrt, log=log, selected=candidates,
                               stage_calls=stage_calls, checkpoint=progress))
    if pipeline and device is Device.CUDA:
        log("pipeline: one live trial (LRN, torch backend, 40 kHz, hop 40)")
        report["pipeline"] = {"command": PIPELINE_COMMAND, "trial": run_pipeline_trial(seconds)}
    else:
        reason = "not requested; add --pipeline" if not pipeline else "--pipeline needs --device cuda"
        report["pipeline"] = {"command": PIPELINE_COMMAND, "skipped": reason}
    report["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    checkpoint(report)
    return report


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    gpu = env.get("gpu")
    lines = [f"# spike-edge bench device ({report['device']}, {env['utc']})", ""]
    if env.get("command"):
        lines += [f"Command: `{env['command']}` (git {env.get('git') or '?'})", ""]
    if gpu:
        lines.append(f"- GPU: {gpu['name']}, compute capability {gpu['compute_capability']}, {gpu['memory_gib']} GiB, "
                     f"driver {gpu.get('driver') or '?'} (CUDA driver API {gpu.get('cuda_driver_api') or '?'}), "
                     f"TF32 convolutions {'on' if gpu.get('tf32_convolutions') else 'off'}")
    lines += [
        f"- Libraries: torch {env['torch']} (CUDA {env.get('torch_cuda') or '-'}, cuDNN {env.get('cudnn') or '-'}), "
        f"onnxruntime {env.get('onnxruntime') or '-'}, TensorRT {env.get('tensorrt') or '-'}, "
        f"Torch-TensorRT {env.get('torch_tensorrt') or '-'}, numpy {env['numpy']}, Python {env['python']}",
        f"- CPU: {env.get('cpu_model') or '?'}, {env['cpu_count']} CPUs ({env.get('cpu_affinity')} usable), "
        f"torch threads {env['torch_threads']}, load average {env['load_average'][0]} at start",
        f"- Timing: {report['settings']['seconds_per_measurement']} s per measurement after "
        f"{report['settings']['warmup_calls']} warm-up calls; latency = batch 1, synchronised per call; "
        "frames/s = calls in series through `reconstruct` (host in, host out)",
        "",
    ]
    batch_sizes = report["settings"]["batch_sizes"]
    for name, res in report["methods"].items():
        g, t, w = res["geometry"], res["target"], res["weights"]
        weights = "RANDOM weights (none packaged)" if w["random"] else f"weights {w['file']} ({w['id']})"
        lines += [f"## {name.upper()} at {g['height']}x{g['width']}: project backend {res['verdict']}", "",
                  f"{weights}; target >= {t['min_frames_per_s']:,.0f} frames/s and p50 latency < "
                  f"{t['max_latency_ms']} ms" + ("" if res["target_geometry"] else
                                                 " (defined at the default geometry, not this one)"), "",
                  "| candidate | backend | latency p50 / p99 ms | " + " | ".join(f"frames/s b={b}" for b in batch_sizes)
                  + " | max rel error vs fp32 | PSNR dB | peak GPU MiB | target |",
                  "|---|---|---|" + "---|" * len(batch_sizes) + "---|---|---|---|"]
        for r in res["candidates"]:
            lat = r.get("latency_ms") or {}
            by_batch = {e["batch"]: e for e in r["throughput"]}
            cells = []
            for b in batch_sizes:
                e = by_batch.get(b, {})
                cells.append(_fmt(e.get("frames_per_s"), 1) if "frames_per_s" in e else
                             ("n/a" if "skipped" in e else "error"))
            agr = r.get("agreement_vs_fp32") or {}
            if "error" in agr or not agr:
                rel, psnr = "error", "-"
            elif not agr["finite"]:
                rel, psnr = f"NON-FINITE ({agr['non_finite_values']} values)", "-"
            else:
                rel = format(agr["max_rel_error"], ".2e")
                psnr = "identical" if agr.get("identical") else _fmt(agr.get("psnr_db"), 1)
            tv = r["target"]
            mark = (f"{tv['verdict']} ({'ok' if tv['frames_per_s_pass'] else 'slow'} fps, "
                    f"{'ok' if tv['latency_pass'] else 'slow'} latency, "
                    f"{'ok' if tv['output_pass'] else 'bad'} output)")
            lines.append(f"| {r['key']} | {r['backend'] or 'error'} | {_fmt(lat.get('p50'))} / {_fmt(lat.get('p99'))} | "
                         + " | ".join(cells) + f" | {rel} | {psnr} | {_fmt(r.get('peak_gpu_memory_mib'), 1)} | {mark} |")
        lines += ["", f"Agreement measured on {res.get('agreement_source', '?')} against eager fp32 with TF32 off "
                      "(max error relative to the reference's range)."]
        stage_rows = [(r, e) for r in res["candidates"] for e in ((r.get("stages_ms") or {}).get("batches") or [])
                      if "error" not in e]
        if stage_rows:
            lines += ["", "Per-stage split of one eager call (p50 ms; "
                          f"{(stage_rows[0][0].get('stages_ms') or {}).get('method', '?')}):", "",
                      "| candidate | batch | H2D | unpack + prepare | network | D2H | total |", "|---|---|---|---|---|---|---|"]
            for r, e in stage_rows:
                lines.append(f"| {r['key']} | {e['batch']} | {_fmt(e['h2d'], 4)} | {_fmt(e['prepare'], 4)} | "
                             f"{_fmt(e['network'], 4)} | {_fmt(e['d2h'], 4)} | {_fmt(e['total'], 4)} |")
            lines.append("")
        for s in res["skipped"]:
            lines.append(f"- skipped {s['key']}: {s['reason']}")
        for r in res["candidates"]:
            if "error" in r:
                lines.append(f"- {r['key']} failed: {r['error']}")
            for e in r["throughput"]:
                if "error" in e:
                    lines.append(f"- {r['key']} at batch {e['batch']}: {e['error']}")
        lines.append("")
    pipe = report["pipeline"]
    lines.append("## Live pipeline")
    lines.append("")
    if "trial" in pipe:
        tr = pipe["trial"]
        if "error" in tr:
            lines.append(f"Trial failed: {tr['error']}")
        else:
            lines.append(f"LRN, torch backend, {tr['rate_hz']:.0f} planes/s, hop {tr['hop']}: published "
                         f"{tr.get('published_fps')} frames/s (nominal {tr['nominal_fps']:.0f}), ring overruns "
                         f"{tr.get('ring_overrun_planes')}, capture->publish p50/p99 "
                         f"{tr.get('capture_to_publish_ms_p50')}/{tr.get('capture_to_publish_ms_p99')} ms -> "
                         f"{'PASS' if tr.get('passed') else 'FAIL'}")
    else:
        lines.append(f"Not run here ({pipe['skipped']}); measure it with `{pipe['command']}`.")
    return "\n".join(lines) + "\n"


def write_results(report: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    """The JSON report at ``out`` and its Markdown summary beside it (same name, ``.md``), each atomic."""
    from firmware_io.atomic import write_text_atomic

    out = Path(out)
    md = out.with_suffix(".md")
    write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    write_text_atomic(md, render_markdown(report))
    return out, md


# -- the command ---------------------------------------------------------------------------------


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        values = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not values or values[0] < 1:
        raise click.BadParameter("batch sizes must be >= 1")
    return values


def _key_list(ctx, param, value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    keys = frozenset(v.strip() for v in value.split(",") if v.strip())
    if not keys:
        raise click.BadParameter(f"expected comma-separated candidate keys, got {value!r}")
    return keys


def _method_list(ctx, param, value: str) -> list[Method]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in LEARNED_METHOD_NAMES]
    if bad or not names:
        raise click.BadParameter(f"unknown method(s) {bad}; choose from {','.join(LEARNED_METHOD_NAMES)}")
    return [Method(n) for n in dict.fromkeys(names)]


@click.command("device")
@click.option("--device", "device_name", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True,
              help="auto: cuda when torch sees a GPU.")
@click.option("--methods", default="lrn,stir", show_default=True, callback=_method_list,
              help="Comma-separated networks.")
@click.option("--seconds", type=click.FloatRange(min=0.0), default=3.0, show_default=True,
              help="Timed seconds per candidate per measurement (latency, each batch size).")
@click.option("--batch-sizes", default="1,8,32", show_default=True, callback=_int_list,
              help="Comma-separated batch sizes for frames/s (batch 1 is always timed, for latency).")
@click.option("--height", type=click.IntRange(min=1), default=None,
              help="Override the geometry (default: LRN 250x400, STIR 256x400); with --width.")
@click.option("--width", type=click.IntRange(min=1), default=None)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads (default: torch's).")
@click.option("--tensorrt/--no-tensorrt", default=True, show_default=True,
              help="Build and time a TensorRT engine where Torch-TensorRT imports (CUDA).")
@click.option("--candidates", default=None, callback=_key_list,
              help="Comma-separated candidate keys or shell patterns to time (e.g. torch,'aoti*'); "
                   "one that matches no candidate of this version is listed as skipped. Default: all.")
@click.option("--stage-calls", type=click.IntRange(min=0), default=STAGE_CALLS, show_default=True,
              help="Calls per batch size for the per-stage split (0: no split).")
@click.option("--pipeline", is_flag=True, help="Also run one live-pipeline trial (LRN, torch, CUDA only).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON report here (atomically) and a Markdown table beside it (.md), "
                   "rewritten as each candidate finishes.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the table.")
def bench_device(device_name, methods, seconds, batch_sizes, height, width, threads, tensorrt, candidates,
                 stage_calls, pipeline, out, as_json) -> None:
    """LRN/STIR on one device: eager fp32 vs the torch backend vs ONNX Runtime/TensorRT, against targets."""
    if (height is None) != (width is None):
        raise click.UsageError("give --height and --width together")
    import torch

    if threads:
        torch.set_num_threads(threads)
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    log = (lambda s: None) if as_json else (lambda s: click.echo(f"... {s}", err=True))
    checkpoint = (lambda report: write_results(report, out)) if out else (lambda report: None)
    try:
        report = run_device_bench(Device(device_name), methods, seconds=seconds, batch_sizes=batch_sizes,
                                  geometry=Geometry(height, width) if height else None, tensorrt=tensorrt,
                                  pipeline=pipeline, candidates=candidates, stage_calls=stage_calls, log=log,
                                  checkpoint=checkpoint)
    except BackendUnavailable as exc:
        fail(str(exc), ExitCode.BACKEND_UNAVAILABLE)
    if out and not as_json:
        click.echo(f"wrote {Path(out)} and {Path(out).with_suffix('.md')}", err=True)
    click.echo(json.dumps(report, indent=2) if as_json else render_markdown(report))


__all__ = ["BENCH_GEOMETRY", "PIPELINE_COMMAND", "TARGETS", "environment", "render_markdown", "run_device_bench",
           "stage_split", "write_results"]
