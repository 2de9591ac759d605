"""``spike-edge bench reconstruct``: milliseconds per frame for each network backend and precision, beside eager torch.

Times every available backend for a network side by side with plain eager torch fp32 in the same
run, at one geometry, interleaving the backends round by round so that load from other processes
falls on all of them alike. The torch backend runs once per candidate precision of the device
(``edge.reconstruction.backends.precision.CANDIDATES``: fp32 and bf16 on the CPU; fp32, fp16 and
bf16 on CUDA). ``--compile`` adds the torch backend under ``torch.compile``, ``--aoti`` AOTInductor
packages of the whole forward compiled here first (fp32 and, where the device runs it fast, bf16 on
the CPU; fp16 on CUDA). Without ``--checkpoint`` (and no packaged default) it uses random weights and
says so.

Quality, for every row, on windows with ground truth (``edge.cli.bench.quality``: the REDS_BASE
clips when present, else the simulator): the PSNR against the torch fp32 output (how far the values
moved) and the loss in dB against ground truth relative to torch fp32 (what ``--precision auto``
judges). The torch rows make the pick (``pick_precision``: the fastest within 0.1 dB), marked in
the table and stored in the precision cache for this CPU or GPU, torch version, method and device
(``PickCache``; ``--no-save-pick`` leaves it alone; a pick on random weights is never stored).
"""

from __future__ import annotations

import json
import time

import click

from edge.cli.bench.quality import fitted_psnr, psnr_against, truth_windows
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


def _aoti_package(loaded, geometry, device, precision):
    """The network's AOTInductor package at ``precision``, compiled into a temporary directory."""
    import tempfile

    from edge.reconstruction.backends import export_engine, load_engine_dir
    from edge.reconstruction.models import ExportFormat

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
              help="Also time AOTInductor packages of the whole forward (compiled here first, a minute or more each).")
@click.option("--save-pick/--no-save-pick", default=True, show_default=True,
              help="Store the torch precision pick for --precision auto (in $XDG_CACHE_HOME/spike-edge).")
@click.option("--json", "as_json", is_flag=True)
def bench_reconstruct(method, checkpoint, height, width, iterations, threads, use_compile, use_aoti, save_pick,
                      as_json) -> None:
    """Milliseconds per frame and PSNR for each backend and torch precision; stores the precision pick for auto."""
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
    from edge.reconstruction.backends.precision import (
        CANDIDATES,
        PICK_TOLERANCE_DB,
        PickCache,
        PrecisionTrial,
        pick_key,
        pick_precision,
    )
    from edge.reconstruction.cpu_features import detect_bf16_support
    from edge.reconstruction.models import Precision
    from edge.reconstruction.models.checkpoints import CheckpointError
    from edge.reconstruction.networks import load_network

    torch.set_num_threads(threads)
    geometry = geometry_option(height, width)
    try:
        loaded = load_network(method, checkpoint, allow_random=True)
    except (CheckpointError, FileNotFoundError) as exc:
        fail(str(exc))
    device = Device.CUDA if torch.cuda.is_available() else Device.CPU
    candidates = [("eager", None, _eager_reference(copy.deepcopy(loaded), geometry))]
    for precision in CANDIDATES[device]:
        try:
            candidates.append((f"torch-{precision.value}", precision,
                               build_backend(copy.deepcopy(loaded), geometry, BackendName.TORCH, device,
                                             precision=precision)))
        except (BackendUnavailable, ValueError) as exc:
            click.echo(f"skipping torch {precision.value}: {exc}", err=True)
    for name in available_backends(device):
        if name is BackendName.TORCH or backend_entry(name).needs_engine:
            continue  # torch is above, once per precision; engine formats need a directory (--aoti compiles one)
        try:
            candidates.append((name.value, None, build_backend(copy.deepcopy(loaded), geometry, name, device)))
        except BackendUnavailable as exc:
            click.echo(f"skipping {name.value}: {exc}", err=True)
    if use_compile:
        candidates.append(("compile", None, build_backend(copy.deepcopy(loaded), geometry, BackendName.TORCH, device,
                                                          compile=True)))
    if use_aoti:
        if loaded.weights_path is None:
            click.echo("skipping aoti: packages are compiled from weights on disk; these are random", err=True)
        else:
            fast_bf16 = device is Device.CUDA or detect_bf16_support().fast_bf16
            for precision in [Precision.FP16 if device is Device.CUDA else Precision.FP32] + (
                    [Precision.BF16] if fast_bf16 else []):
                candidates.append((f"aoti-{precision.value}", None, _aoti_package(loaded, geometry, device, precision)))
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 256, (1, loaded.window_planes, geometry.plane_bytes), dtype=np.uint8)
    truth_in, truth, truth_source = truth_windows(loaded.window_planes, geometry)
    times: dict[str, list[float]] = {label: [] for label, _, _ in candidates}
    images = {}
    for label, _, rec in candidates:  # warm-up (and compilation), then the images quality is judged on
        rec.reconstruct(windows)
        images[label] = np.concatenate([rec.reconstruct(w[None]) for w in truth_in])
    for _ in range(iterations):
        for label, _, rec in candidates:
            t0 = time.perf_counter()
            rec.reconstruct(windows)
            times[label].append((time.perf_counter() - t0) * 1e3)
    eager_ms = float(np.median(times["eager"]))
    reference = images.get(f"torch-{Precision.FP32.value}", images["eager"])
    reference_psnr = float(np.mean([fitted_psnr(i, t) for i, t in zip(reference, truth)]))
    rows, trials = [], []
    for label, precision, rec in candidates:
        ms = float(np.median(times[label]))
        psnr_gt = float(np.mean([fitted_psnr(i, t) for i, t in zip(images[label], truth)]))
        vs_fp32 = psnr_against(images[label], reference)
        loss_db = round(reference_psnr - psnr_gt, 3) + 0.0  # + 0.0: no -0.0
        rows.append({"backend": rec.backend, "precision": precision.value if precision else None,
                     "ms_per_frame": round(ms, 1), "min_ms": round(min(times[label]), 1),
                     "speedup_vs_eager": round(eager_ms / ms, 2),
                     "psnr_vs_fp32_db": None if not np.isfinite(vs_fp32) else round(vs_fp32, 2),
                     "psnr_gt_db": round(psnr_gt, 3), "loss_db": loss_db, "pick": False})
        if precision is not None:
            trials.append(PrecisionTrial(precision, ms, loss_db))
    random_weights = loaded.weights_path is None
    pick = pick_precision(trials) if any(t.precision is Precision.FP32 for t in trials) else None
    stored = None
    for row in rows:
        row["pick"] = pick is not None and row["precision"] == pick.value
    if pick is not None and save_pick and not random_weights:
        cache = PickCache()
        cache.put(pick_key(loaded.method, device), pick, trials)
        stored = str(cache.path)
    report = {"method": method, "geometry": str(geometry), "device": device.value, "threads": threads,
              "iterations": iterations, "weights": loaded.weights_id, "random_weights": random_weights,
              "load_average": list(os.getloadavg()), "cpu_bf16": detect_bf16_support().as_dict(),
              "quality_source": truth_source, "tolerance_db": PICK_TOLERANCE_DB,
              "pick": pick.value if pick else None, "pick_stored": stored, "results": rows}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    note = " (RANDOM weights: no checkpoint given and none packaged)" if random_weights else ""
    click.echo(f"{method} at {geometry}, {device.value}, {threads} threads, median of {iterations}{note}; "
               f"load average {report['load_average'][0]:.2f}; CPU bf16: {detect_bf16_support().summary()}")
    click.echo(f"quality on {truth_source}: PSNR vs torch fp32 output, and dB lost against ground truth")
    for r in rows:
        vs = "identical" if r["psnr_vs_fp32_db"] is None else f"{r['psnr_vs_fp32_db']:.1f} dB"
        click.echo(f"  {r['backend']:38} {r['ms_per_frame']:9.1f} ms/frame  x{r['speedup_vs_eager']:.2f}  "
                   f"(min {r['min_ms']:.1f})  vs fp32 {vs:>9}  loss {r['loss_db']:+.3f} dB"
                   + ("  <- pick" if r["pick"] else ""))
    if pick is not None:
        where = (f"stored in {stored}" if stored else
                 "not stored (random weights)" if random_weights else "not stored (--no-save-pick)")
        click.echo(f"pick for --precision auto: {pick.value} (fastest torch precision losing <= "
                   f"{PICK_TOLERANCE_DB} dB); {where}")
