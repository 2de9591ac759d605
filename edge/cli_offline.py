"""Offline commands: ``info``, ``reconstruct`` and ``bench decode``.

Contracts (other tools and checks rely on them):

- ``spike-edge info FILE [--height H --width W] [--json]`` prints ``planes``, ``height``, ``width``,
  ``firing_rate`` (spikes per pixel per plane) and ``duration_s`` (at ``--rate-hz``, 40 kHz default).
- ``spike-edge reconstruct FILE --method M [--window N] [--key K | --every E] --out OUT``: the frame for
  key K uses planes ``[K - N//2, K - N//2 + N)`` (``edge.windows``); the default key is the centre plane;
  ``OUT.npy`` holds float32 ``(frames, H, W)`` raw values; ``OUT.png`` (one frame), a folder of PNGs or a
  video are display-normalised.
- ``spike-edge bench decode [FILE] [--json]`` prints planes/s for decoding and for decoding + TFP.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from edge.backends import BackendName, BackendUnavailable, Device, make_reconstructor
from edge.classical import tfp_packed
from edge.frames_out import FrameSink
from edge.methods import METHOD_NAMES
from edge.windows import check_window_fits, default_key, keys_every, window_range
from firmware_io.bitpack import count_spikes, unpack_planes
from firmware_io.kernels import native_status
from firmware_io.contract import DEFAULT_RATE_HZ, Geometry
from firmware_io.recording import open_recording

EXIT_BAD_INPUT = 2
EXIT_BACKEND_UNAVAILABLE = 4


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _geometry_option(height: int | None, width: int | None) -> Geometry | None:
    if (height is None) != (width is None):
        _fail("give both --height and --width, or neither")
    return None if height is None else Geometry(height, width)


def _open(path: str, height: int | None, width: int | None, with_head: bool, allow_partial: bool):
    try:
        return open_recording(path, _geometry_option(height, width), with_head=with_head, allow_partial=allow_partial)
    except (FileNotFoundError, ValueError) as exc:  # FormatError is a ValueError
        _fail(str(exc))


def recording_options(f):
    f = click.option("--allow-partial", is_flag=True, help="Ignore a truncated trailing plane (with a warning).")(f)
    f = click.option("--with-head", is_flag=True, help="416-column 'with-head' .dat: drop the last 16 columns.")(f)
    f = click.option("--width", type=click.IntRange(min=1), help="Plane width in pixels (.dat default 400).")(f)
    f = click.option("--height", type=click.IntRange(min=1), help="Plane height in pixels (.dat default 250).")(f)
    return f


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@recording_options
@click.option("--rate-hz", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_RATE_HZ, show_default=True,
              help="Camera plane rate, for duration_s.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
def info(file, height, width, with_head, allow_partial, rate_hz, as_json):
    """Geometry, plane count, firing rate and duration of a .dat or .npz recording."""
    with _open(file, height, width, with_head, allow_partial) as rec:
        spikes = 0
        for _, packed in rec.iter_packed(4096):
            spikes += int(count_spikes(packed, rec.geometry).sum(dtype=np.uint64))
        summary = {
            "path": str(rec.path),
            "format": rec.path.suffix.lower().lstrip("."),
            "planes": rec.n_planes,
            "height": rec.geometry.height,
            "width": rec.geometry.width,
            "plane_bytes": rec.geometry.plane_bytes,
            "firing_rate": spikes / (rec.n_planes * rec.geometry.pixels),
            "rate_hz": rate_hz,
            "duration_s": rec.n_planes / rate_hz,
        }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            click.echo(f"{key:>12}: {value}")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--method", type=click.Choice(METHOD_NAMES), required=True, help="Reconstruction method.")
@click.option("--window", type=click.IntRange(min=1), help="Window length in planes (classical methods; networks are fixed).")
@click.option("--key", type=click.IntRange(min=0), help="Key plane of the single output frame (default: centre plane).")
@click.option("--every", type=click.IntRange(min=1), help="One frame every N planes, from the first key whose window fits.")
@click.option("--out", required=True, type=click.Path(), help="OUT.npy (raw float32), OUT.png, a folder, or OUT.mp4.")
@recording_options
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="Network weights (state_dict).")
@click.option("--engine", type=click.Path(exists=True, file_okay=False), help="Exported engine folder (spike-train export).")
@click.option("--backend", type=click.Choice([b.value for b in BackendName]), default=BackendName.AUTO.value, show_default=True)
@click.option("--device", type=click.Choice([d.value for d in Device]), default=Device.CPU.value, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True, help="Windows per backend call.")
@click.option("--fps", type=float, default=25.0, show_default=True, help="Frame rate of a video output.")
def reconstruct(file, method, window, key, every, out, height, width, with_head, allow_partial, checkpoint, engine,
                backend, device, batch, fps):
    """Reconstruct frames from a recording with TFP, TFI, LRN or STIR."""
    if key is not None and every is not None:
        _fail("give --key or --every, not both")
    with _open(file, height, width, with_head, allow_partial) as rec:
        try:
            recon = make_reconstructor(method, rec.geometry, backend=backend, device=device,
                                       window_planes=window, checkpoint=checkpoint, engine=engine)
        except BackendUnavailable as exc:
            _fail(str(exc), code=EXIT_BACKEND_UNAVAILABLE)
        except (FileNotFoundError, ValueError) as exc:  # CheckpointError and EngineMismatch are ValueErrors
            _fail(str(exc))
        window_planes = recon.window_planes
        try:
            if every is not None:
                keys = keys_every(rec.n_planes, window_planes, every)
                if not keys:
                    _fail(f"{rec.path} has {rec.n_planes} planes, fewer than one {window_planes}-plane window")
            else:
                keys = [default_key(rec.n_planes) if key is None else key]
                check_window_fits(keys[0], window_planes, rec.n_planes)
        except ValueError as exc:
            _fail(str(exc))
        click.echo(f"{method}: {len(keys)} frame(s), window {window_planes} planes, backend {recon.backend}", err=True)
        try:
            with FrameSink(out, len(keys), rec.geometry.shape, fps=fps) as sink:
                for i in range(0, len(keys), batch):
                    batch_keys = keys[i : i + batch]
                    windows = np.stack([rec.packed(*window_range(k, window_planes)) for k in batch_keys])
                    for frame in recon.reconstruct(windows):
                        sink.append(frame)
        except (ValueError, RuntimeError) as exc:
            _fail(str(exc))
    click.echo(json.dumps({"out": str(out), "frames": len(keys), "first_key": keys[0], "last_key": keys[-1],
                           "window": window_planes, "method": method, "backend": recon.backend}))


def _synthetic_recording(n_planes: int, geometry: Geometry, folder: Path, rate: float = 0.1, seed: int = 0) -> Path:
    """Random planes (Bernoulli ``rate``) written to a .dat in ``folder``, for benchmarking without a file."""
    from firmware_io.dat import DatWriter

    rng = np.random.default_rng(seed)
    path = folder / f"bench_{geometry}_{n_planes}.dat"
    with DatWriter(path, geometry) as writer:
        for start in range(0, n_planes, 1000):
            n = min(1000, n_planes - start)
            writer.write_planes((rng.random((n, *geometry.shape)) < rate).astype(np.uint8))
    return path


def _best_of(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@click.command("decode")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@recording_options
@click.option("--planes", type=click.IntRange(min=1), default=40_000, show_default=True,
              help="Length of the synthetic recording used when no FILE is given.")
@click.option("--window", type=click.IntRange(min=1), default=40, show_default=True, help="TFP window (= hop) in planes.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Best of N runs.")
@click.option("--json", "as_json", is_flag=True)
def bench_decode(file, height, width, with_head, allow_partial, planes, window, repeats, as_json):
    """Planes/s for decoding (unpacking) and for decoding + TFP, on one core."""
    with tempfile.TemporaryDirectory() as tmp:
        if file is None:
            file = _synthetic_recording(planes, _geometry_option(height, width) or Geometry(250, 400), Path(tmp))
        with _open(str(file), height, width, with_head, allow_partial) as rec:
            geometry, n = rec.geometry, rec.n_planes
            rec.packed(0, n).sum()  # touch the pages once: measure decoding, not the disk

            def decode_all():
                for _, packed in rec.iter_packed(1000):
                    unpack_planes(packed, geometry)

            def decode_tfp():
                for _, packed in rec.iter_packed(window):
                    if len(packed) == window:
                        tfp_packed(packed, geometry)

            decode_s = _best_of(repeats, decode_all)
            tfp_s = _best_of(repeats, decode_tfp)
    result = {
        "file": str(file), "planes": n, "height": geometry.height, "width": geometry.width, "tfp_window": window,
        "decode_planes_per_s": round(n / decode_s), "decode_tfp_planes_per_s": round(n / tfp_s),
        "decode_tfp_frames_per_s": round((n // window) / tfp_s),
        "camera_planes_per_s": DEFAULT_RATE_HZ, "threads": 1, "cpu_count": os.cpu_count(),
        "spike_count_kernel": native_status(),
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{n} planes of {geometry} ({file}); spike counting: {result['spike_count_kernel']}")
        click.echo(f"decode (unpack to 0/1 planes): {result['decode_planes_per_s']:>10,} planes/s")
        click.echo(f"decode + TFP (window {window}):   {result['decode_tfp_planes_per_s']:>10,} planes/s "
                   f"({result['decode_tfp_frames_per_s']:,} frames/s); the camera makes {DEFAULT_RATE_HZ:,.0f} planes/s")


def register(main: click.Group, bench: click.Group) -> None:
    main.add_command(info)
    main.add_command(reconstruct)
    bench.add_command(bench_decode)
