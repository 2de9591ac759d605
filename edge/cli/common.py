"""Options and helpers shared by the offline commands (``info``, ``reconstruct``, ``bench decode``)."""

from __future__ import annotations

import click

from firmware_io.contract import Geometry
from firmware_io.exits import fail
from firmware_io.layouts import Layout
from firmware_io.npz import DEFAULT_MAX_MB, MAX_MB_ENV
from firmware_io.recording import open_recording

#: The help epilog of commands that read recordings: how much memory an .npz may take.
NPZ_MEMORY_NOTE = (f"An .npz is decompressed into memory, packed to one bit per pixel; one that would need more "
                   f"than {MAX_MB_ENV} megabytes (default {DEFAULT_MAX_MB}) is refused before it is read.")


def geometry_option(height: int | None, width: int | None) -> Geometry | None:
    """The ``--height``/``--width`` geometry (None when neither is given); a bad one exits 2 before anything
    is sized from it (``Geometry`` refuses planes over ``MAX_PLANE_PIXELS``)."""
    if (height is None) != (width is None):
        fail("give both --height and --width, or neither")
    if height is None:
        return None
    try:
        return Geometry(height, width)
    except ValueError as exc:
        fail(f"--height {height} --width {width}: {exc}")


def open_recording_or_fail(path: str, height: int | None, width: int | None, with_head: bool, allow_partial: bool,
                           layout: Layout | None = None):
    """The recording at ``path``; a missing, unreadable or malformed file exits 2 with the reader's message."""
    geometry = geometry_option(height, width)
    try:
        return open_recording(path, geometry, with_head=with_head, allow_partial=allow_partial, layout=layout)
    except (FileNotFoundError, ValueError) as exc:  # FormatError is a ValueError
        fail(str(exc))
    except OSError as exc:  # permissions, a path that is a folder, I/O errors
        fail(f"cannot read {path}: {exc.strerror or exc}")


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
