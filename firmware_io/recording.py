"""Opening a recording: a ``.dat`` (raw) or ``.npz`` (UHSR layout) file by its suffix, or a recording folder.

A raw ``.dat`` is in one of the ``firmware_io.layouts.Layout`` s: the ``.dat`` convention
(``DatReader``) or the 1000x1000 PCIe rows (``PcieReader``). ``layout=None`` detects it from the
file's tags (``firmware_io.pcie.detect_file_layout``) where the geometry is unstated or 1000x1000.

A folder is a recording written by ``spike-edge run --record`` (``firmware_io.segments``: rotating
``.dat`` segments with JSON sidecars), read in segment order as one recording.

``SpikeRecording`` is what every reader offers: geometry, plane count, packed and unpacked planes for
any half-open range, chunked iteration, and closing as a context manager; ``gaps`` lists the planes a
folder's stream lacks (``firmware_io.plane_range``; always empty for a single file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from firmware_io.contract import DEFAULT_GEOMETRY, Geometry
from firmware_io.dat import DatReader
from firmware_io.layouts import Layout
from firmware_io.npz import NpzReader
from firmware_io.pcie import PcieReader, detect_file_layout
from firmware_io.plane_range import MissingRange
from firmware_io.segments import SegmentedReader, folder_metadata, is_recording_folder


class SpikeRecording(Protocol):
    path: Path
    geometry: Geometry
    n_planes: int
    gaps: tuple[MissingRange, ...]
    recorded_planes: int

    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray: ...

    def unpacked(self, start: int = 0, stop: int | None = None) -> np.ndarray: ...

    def iter_packed(self, chunk_planes: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]: ...

    def gap_in(self, start: int, stop: int) -> MissingRange | None: ...

    def next_present(self, plane: int) -> int: ...

    def run_stop(self, plane: int) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> "SpikeRecording": ...

    def __exit__(self, *exc: object) -> None: ...


def open_recording(
    path: str | os.PathLike,
    geometry: Geometry | None = None,
    *,
    with_head: bool = False,
    allow_partial: bool = False,
    layout: Layout | None = None,
) -> SpikeRecording:
    """Open ``.dat`` (geometry defaults to 250x400; ``layout`` None: detected), ``.npz`` (geometry read from
    the file) or a recording folder (geometry read from its sidecars).

    Raises ``FileNotFoundError`` for a missing file, ``FormatError`` (a ``ValueError``) for a file that
    is not what it claims (the readers check everything they read, see ``firmware_io.dat``,
    ``firmware_io.pcie``, ``firmware_io.npz`` and ``firmware_io.segments``), and ``ValueError`` for an
    unknown suffix or a geometry the file does not have.
    """
    path = Path(path)
    if is_recording_folder(path):
        if with_head:
            raise ValueError(f"{path} is a recording folder: its segments hold contract planes without head "
                             f"columns, --with-head does not apply")
        return SegmentedReader(path, geometry, allow_partial=allow_partial)
    suffix = path.suffix.lower()
    if layout is not None and suffix != ".dat":
        raise ValueError(f"a layout ({Layout(layout).value}) applies to raw .dat files, not {path}")
    if suffix == ".npz":
        reader = NpzReader(path)
        if geometry is not None and geometry != reader.geometry:
            raise ValueError(f"{path} holds {reader.geometry} planes, but {geometry} was requested")
        return reader
    if suffix == ".dat":
        if path.is_file() and (layout or detect_file_layout(path, geometry)) is Layout.PCIE1K:
            return PcieReader(path, geometry, with_head=with_head, allow_partial=allow_partial)
        return DatReader(path, geometry or DEFAULT_GEOMETRY, with_head=with_head, allow_partial=allow_partial)
    raise ValueError(f"unknown spike file type {suffix!r} for {path}; expected .dat, .npz or a recording folder")


def recording_defaults(path: str | os.PathLike) -> tuple[Geometry | None, float | None]:
    """The geometry and plane rate ``path`` states about itself: a recording folder's sidecars say both;
    a single file says neither here (``(None, None)``; an ``.npz`` knows its geometry once opened)."""
    return folder_metadata(path) if is_recording_folder(path) else (None, None)
