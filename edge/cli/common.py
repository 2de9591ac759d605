"""Options and helpers shared by the offline commands (``info``, ``reconstruct``, ``bench decode``)."""

from __future__ import annotations

import click

from firmware_io.contract import Geometry
from firmware_io.exits import fail
from firmware_io.layouts import Layout
from firmware_io.recording import open_recording


def geometry_option(height: int | None, width: int | None) -> Geometry | None:
    if (height is None) != (width is None):
        fail("give both --height and --width, or neither")
    return None if height is None else Geometry(height, width)


def open_recording_or_fail(path: str, height: int | None, width: int | None, with_head: bool, allow_partial: bool,
                           layout: Layout | None = None):
    try:
        return open_recording(path, geometry_option(height, width), with_head=with_head, allow_partial=allow_partial,
                              layout=layout)
    except (FileNotFoundError, ValueError) as exc:  # FormatError is a ValueError
        fail(str(exc))


def layout_option(f):
    """``--layout dat|pcie1k`` (a ``Layout``; left out: detected from the file)."""
    return click.option("--layout", type=click.Choice([layout.value for layout in Layout]), default=None,
                        callback=lambda ctx, param, value: None if value is None else Layout(value),
                        help="Plane layout of a .dat (default: detected; pcie1k = the 1000x1000 camera's PCIe rows, "
                             "which may start mid-plane).")(f)


def recording_options(f):
    f = click.option("--allow-partial", is_flag=True, help="Ignore a truncated trailing plane (with a warning).")(f)
    f = click.option("--with-head", is_flag=True, help="416-column 'with-head' .dat: drop the last 16 columns.")(f)
    f = click.option("--width", type=click.IntRange(min=1), help="Plane width in pixels (.dat default 400).")(f)
    f = click.option("--height", type=click.IntRange(min=1), help="Plane height in pixels (.dat default 250).")(f)
    return f
