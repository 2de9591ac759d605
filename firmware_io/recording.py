"""Opening a recorded spike file by its suffix: ``.dat`` (raw) or ``.npz`` (UHSR layout).

A raw ``.dat`` is in one of the ``firmware_io.layouts.Layout`` s: the ``.dat`` convention
(``DatReader``) or the 1000x1000 PCIe rows (``PcieReader``). ``layout=None`` detects it from the
file's tags (``firmware_io.pcie.detect_file_layout``) where the geometry is unstated or 1000x1000.

``SpikeRecording`` is what both readers offer: geometry, plane count, packed and unpacked planes for
any half-open range, chunked iteration, and closing as a context manager.
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


class SpikeRecording(Protocol):
    path: Path
    geometry: Geometry
    n_planes: int

    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray: ...

    def unpacked(self, start: int = 0, stop: int | None = None) -> np.ndarray: ...

    def iter_packed(self, chunk_planes: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]: ...

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
    """Open ``.dat`` (geometry defaults to 250x400; ``layout`` None: detected) or ``.npz`` (geometry read from
    the file).

    Raises ``FileNotFoundError`` for a missing file, ``FormatError`` (a ``ValueError``) for a file that
    is not what it claims (the readers check everything they read, see ``firmware_io.dat``,
    ``firmware_io.pcie`` and ``firmware_io.npz``), and ``ValueError`` for an unknown suffix or a geometry
    the file does not have.
    """
    path = Path(path)
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
    raise ValueError(f"unknown spike file type {suffix!r} for {path}; expected .dat or .npz")
