"""``spike-edge bench reconstruct``: milliseconds per frame for each network backend, beside eager torch.

Times every available backend for a network side by side with plain eager torch fp32 in the same
run, at one geometry, interleaving the backends round by round so that load from other processes
falls on all of them alike. ``--compile`` adds the torch backend under ``torch.compile``, ``--aoti``
an AOTInductor package of the whole forward compiled here first (fp32 on the CPU, fp16 on CUDA).
Without ``--checkpoint`` (and no packaged default) it uses random weights and says so.
"""

from __future__ import annotations

import json
import time

import click

from edge.cli.common import geometry_option
from edge.reconstruction.methods import LEARNED_METHOD_NAMES
from firmware_io.exits import fail


def _eager_reference(loaded, geometry):
    """Plain eager torch fp32 (no channels_last), the baseline every figure is compared with."""
    import torch

    prepare_torch = loaded.network.prepare_torch
    module = loaded.model.eval()

    class _Eager:
        backend = "torch-cpu-fp32-eager (baseline)"

        def reconstruct(self, windows):
            with torch.inference_mode():
                x = prepare_torch(torch.from_numpy(windows), geometry)
                return module(x)[:, 0].numpy()

    return _Eager()


def _aoti_package(loaded, geometry, device):
    """The network's AOTInductor package (fp16 on CUDA, fp32 on the CPU), compiled into a temporary directory."""
    import tempfile

    from edge.reconstruction.backends import Device, export_engine, load_engine_dir
    from edge.reconstruction.models import ExportFormat, Precision

    precision = Precision.FP16 if device is Device.CUDA else Precision.FP32
    with tempfile.TemporaryDirectory() as tmp:  # a loaded package no longer needs its file
        out = export_engine(loaded.method, loaded.weights_path, ExportFormat.AOTI, geometry, f"{tmp}/aoti",
                            precision=precision, device=device)
        return load_engine_dir(out, geometry, device=device)


@click.command("reconstruct")
@click.option("--method", type=click.Choice(LEARNED_METHOD_NAMES), required=True)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--height", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--width", type=click.IntRange(min=1), default=400, show_default=True)
@click.option("--iterations", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--compile", "use_compile", is_flag=True, help="Also time torch.compile (inductor; compiles for minutes).")
@click.option("--aoti", "use_aoti", is_flag=True,
              help="Also time an AOTInductor package of the whole forward (compiled here first, a minute or more).")
@click.option("--json", "as_json", is_flag=True)
def bench_reconstruct(method, checkpoint, height, width, iterations, threads, use_compile, use_aoti,
                      as_json) -> None:
    """Milliseconds per frame for each available backend, beside eager torch fp32."""
    import copy
    import os

    import numpy as np
    import torch

    from edge.reconstruction.backends import (
        BackendName,
        BackendUnavailable,
        Device,
        available_backends,
        build_backend,
    )
    from edge.reconstruction.backends.registry import backend_entry
    from edge.reconstruction.models.checkpoints import CheckpointError
    from edge.reconstruction.networks import load_network

    torch.set_num_threads(threads)
    geometry = geometry_option(height, width)
    try:
        loaded = load_network(method, checkpoint, allow_random=True)
    except (CheckpointError, FileNotFoundError) as exc:
        fail(str(exc))
    device = Device.CUDA if torch.cuda.is_available() else Device.CPU
    candidates = [("eager", _eager_reference(copy.deepcopy(loaded), geometry))]
    for name in available_backends(device):
        if backend_entry(name).needs_engine:
            continue  # needs an engine directory (--aoti compiles one)
        try:
            candidates.append((name.value, build_backend(copy.deepcopy(loaded), geometry, name, device)))
        except BackendUnavailable as exc:
            click.echo(f"skipping {name.value}: {exc}", err=True)
    if use_compile:
        candidates.append(("compile", build_backend(copy.deepcopy(loaded), geometry, BackendName.TORCH, device, compile=True)))
    if use_aoti:
        if loaded.weights_path is None:
            click.echo("skipping aoti: packages are compiled from weights on disk; these are random", err=True)
        else:
            candidates.append(("aoti", _aoti_package(loaded, geometry, device)))
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 256, (1, loaded.window_planes, geometry.plane_bytes), dtype=np.uint8)
    times: dict[str, list[float]] = {label: [] for label, _ in candidates}
    outputs = {}
    for label, rec in candidates:  # warm-up (and compilation)
        outputs[label] = rec.reconstruct(windows)
    for _ in range(iterations):
        for label, rec in candidates:
            t0 = time.perf_counter()
            rec.reconstruct(windows)
            times[label].append((time.perf_counter() - t0) * 1e3)
    eager_ms = float(np.median(times["eager"]))
    rows = []
    for label, rec in candidates:
        ms = float(np.median(times[label]))
        rows.append({"backend": rec.backend, "ms_per_frame": round(ms, 1), "min_ms": round(min(times[label]), 1),
                     "speedup_vs_eager": round(eager_ms / ms, 2),
                     "max_abs_diff_vs_eager": float(np.abs(outputs[label] - outputs["eager"]).max())})
    report = {"method": method, "geometry": str(geometry), "device": device.value, "threads": threads,
              "iterations": iterations, "weights": loaded.weights_id,
              "random_weights": loaded.weights_path is None,
              "load_average": list(os.getloadavg()), "results": rows}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    note = " (RANDOM weights: no checkpoint given and none packaged)" if report["random_weights"] else ""
    click.echo(f"{method} at {geometry}, {device.value}, {threads} threads, median of {iterations}{note}; "
               f"load average {report['load_average'][0]:.2f}")
    for r in rows:
        click.echo(f"  {r['backend']:38} {r['ms_per_frame']:9.1f} ms/frame  x{r['speedup_vs_eager']:.2f}  "
                   f"(min {r['min_ms']:.1f}, max|diff| {r['max_abs_diff_vs_eager']:.1e})")
