"""``spike-edge info FILE [--height H --width W] [--layout L] [--json]``: what a recording holds.

Prints ``planes``, ``height``, ``width``, ``firing_rate`` (spikes per pixel per plane) and
``duration_s`` (at ``--rate-hz``, 40 kHz by default). Other tools and checks rely on these keys.
A ``.dat`` also reports its ``layout`` (given or detected) and ``offset_bytes``, where its first
whole plane starts (a raw PCIe stream may start mid-plane).

Planes are counted in chunks of at most ``CHUNK_BYTES``, so memory does not grow with the file.

A recording folder (``spike-edge run --record``) is one recording: ``planes`` is the span of stream
planes it covers, ``recorded_planes`` those it holds and ``gap_planes`` those its stream lacked
(``gaps``: ``[start, stop, cause]``); ``segments`` and ``open_segments`` (not closed by the recorder:
read up to their last whole plane). The firing rate counts recorded planes; the default rate is the
recorded one.
"""

from __future__ import annotations

import json

import click
import numpy as np

from edge.cli.common import NPZ_MEMORY_NOTE, layout_option, open_recording_or_fail, recording_options
from firmware_io.bitpack import count_spikes
from firmware_io.contract import DEFAULT_RATE_HZ
from firmware_io.exits import fail
from firmware_io.layouts import Layout

CHUNK_BYTES = 64 << 20
CHUNK_PLANES = 4096


@click.command("info", epilog=NPZ_MEMORY_NOTE)
@click.argument("file", type=click.Path())
@recording_options
@layout_option
@click.option("--rate-hz", type=click.FloatRange(min=0, min_open=True),
              help=f"Camera plane rate, for duration_s [default: {DEFAULT_RATE_HZ:.0f}; a recording folder: its own].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
def info(file, height, width, with_head, allow_partial, layout, rate_hz, as_json):
    """Geometry, plane count, firing rate and duration of a .dat or .npz recording or a recording folder.

    For a recording folder (run --record), planes is the span of its stream, recorded_planes what it
    holds, gaps the missing ranges with their cause; open_segments were not closed by the recorder.
    """
    with open_recording_or_fail(file, height, width, with_head, allow_partial, layout) as rec:
        folder = rec.path.is_dir()
        rate_hz = rate_hz or getattr(rec, "rate_hz", None) or DEFAULT_RATE_HZ
        spikes = 0
        chunk_planes = max(1, min(CHUNK_PLANES, CHUNK_BYTES // rec.geometry.plane_bytes))
        try:
            for _, packed in rec.iter_packed(chunk_planes):
                spikes += int(count_spikes(packed, rec.geometry).sum(dtype=np.uint64))
        except ValueError as exc:  # a FormatError: the file changed while being read
            fail(str(exc))
        summary = {
            "path": str(rec.path),
            "format": "folder" if folder else rec.path.suffix.lower().lstrip("."),
            **({"layout": getattr(rec, "layout", Layout.DAT).value, "offset_bytes": getattr(rec, "offset_bytes", 0)}
               if rec.path.suffix.lower() == ".dat" else {}),
            "planes": rec.n_planes,
            "recorded_planes": rec.recorded_planes,
            "gap_planes": rec.n_planes - rec.recorded_planes,
            "height": rec.geometry.height,
            "width": rec.geometry.width,
            "plane_bytes": rec.geometry.plane_bytes,
            "firing_rate": spikes / (rec.recorded_planes * rec.geometry.pixels),
            "rate_hz": rate_hz,
            "duration_s": rec.n_planes / rate_hz,
        }
        if folder:
            summary.update(segments=len(rec.segments), open_segments=rec.open_segments, first_plane=rec.first_plane,
                           gaps=[[gap.start, gap.stop, gap.cause.value] for gap in rec.gaps])
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            click.echo(f"{key:>15}: {value}")
