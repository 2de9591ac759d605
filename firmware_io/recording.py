"""Opening a recorded spike file by its suffix: ``.dat`` (raw) or ``.npz`` (UHSR layout).

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
from firmware_io.npz import NpzReader


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
) -> SpikeRecording:
    """Open ``.dat`` (geometry defaults to 250x400) or ``.npz`` (geometry read from the file).

    Raises ``FileNotFoundError`` for a missing file, ``FormatError`` (a ``ValueError``) for a file that
    is not what it claims (the readers check everything they read, see ``firmware_io.dat`` and
    ``firmware_io.npz``), and ``ValueError`` for an unknown suffix or a geometry the file does not have.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        reader = NpzReader(path)
        if geometry is not None and geometry != reader.geometry:
            raise ValueError(f"{path} holds {reader.geometry} planes, but {geometry} was requested")
        return reader
    if suffix == ".dat":
        return DatReader(path, geometry or DEFAULT_GEOMETRY, with_head=with_head, allow_partial=allow_partial)
    raise ValueError(f"unknown spike file type {suffix!r} for {path}; expected .dat or .npz")
