"""``spike-edge bench decode [FILE] [--json]``: planes/s for decoding and for decoding + TFP, one core.

Without FILE a synthetic recording is written first. A progress bar (the recording, then each timed
run; it is updated between runs, never inside one) runs on stderr when it is a terminal.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from edge.cli.common import geometry_option, open_recording_or_fail, recording_options
from edge.reconstruction.classical import tfp_packed
from firmware_io.bitpack import unpack_planes
from firmware_io.contract import DEFAULT_RATE_HZ, Geometry
from firmware_io.kernels import native_status
from firmware_io.progress import progress_bar


def _synthetic_recording(n_planes: int, geometry: Geometry, folder: Path, rate: float = 0.1, seed: int = 0) -> Path:
    """Random planes (Bernoulli ``rate``) written to a .dat in ``folder``, for benchmarking without a file."""
    from firmware_io.dat import DatWriter

    rng = np.random.default_rng(seed)
    path = folder / f"bench_{geometry}_{n_planes}.dat"
    with DatWriter(path, geometry) as writer, \
            progress_bar(total=n_planes, desc="synthetic recording", unit="plane") as bar:
        for start in range(0, n_planes, 1000):
            n = min(1000, n_planes - start)
            writer.write_planes((rng.random((n, *geometry.shape)) < rate).astype(np.uint8))
            bar.update(n)
    return path


def _best_of(repeats: int, fn, progress) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        progress.update(1)
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
            file = _synthetic_recording(planes, geometry_option(height, width) or Geometry(250, 400), Path(tmp))
        with open_recording_or_fail(str(file), height, width, with_head, allow_partial) as rec:
            geometry, n = rec.geometry, rec.n_planes
            rec.packed(0, n).sum()  # touch the pages once: measure decoding, not the disk

            def decode_all():
                for _, packed in rec.iter_packed(1000):
                    unpack_planes(packed, geometry)

            def decode_tfp():
                for _, packed in rec.iter_packed(window):
                    if len(packed) == window:
                        tfp_packed(packed, geometry)

            with progress_bar(total=2 * repeats, desc="timed runs (decode, decode + TFP)", unit="run") as bar:
                decode_s = _best_of(repeats, decode_all, bar)
                tfp_s = _best_of(repeats, decode_tfp, bar)
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
