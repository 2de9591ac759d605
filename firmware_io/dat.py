"""The raw ``.dat`` format: reader (positioned reads) and writer (streaming, atomic) together.

Layout: no header; planes concatenated, each ``ceil(H*W/8)`` bytes in camera order (see
``firmware_io.contract``). Plane count = file size / plane bytes; a remainder is a truncated
trailing plane. The "with-head" 250x400 variant stores 416 columns per row; the last 16 columns are
not image and are dropped on read (the reader then repacks planes to the 400-column contract).

Design: the reader reads each requested range with positioned reads into a new array rather than
memory-mapping the file. A mapped file that shrinks under its reader (another program truncates or
rewrites it during a replay) kills the reader with SIGBUS at the next access past the new end, with
no message, and no check of the size before each access closes that race; Python cannot recover
from the fault either. A short read, by contrast, is an ordinary ``FormatError`` naming the file and
the planes that vanished. The copy costs about 20 us per 500 KB block here (40 planes of 250x400:
a 1,000 blocks/s replay spends about 2 % of a core on it).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from firmware_io.bitpack import pack_planes, unpack_planes
from firmware_io.atomic import PendingFile
from firmware_io.plane_range import PlaneRangeReader
from firmware_io.contract import DEFAULT_GEOMETRY, FormatError, Geometry

WITH_HEAD_EXTRA_COLUMNS = 16


class DatReader(PlaneRangeReader):
    """Random access to the planes of a ``.dat`` file without reading the whole file.

    ``packed(start, stop)`` returns camera-order planes ``[start, stop)`` (a new array, read from the
    file); ``unpacked`` returns upright 0/1 planes. Truncated files raise ``FormatError`` unless
    ``allow_partial=True``, which ignores the trailing partial plane with a warning. A file that
    shrinks while open raises ``FormatError`` from the read that finds planes missing.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        geometry: Geometry = DEFAULT_GEOMETRY,
        *,
        with_head: bool = False,
        allow_partial: bool = False,
    ) -> None:
        self.path = Path(path)
        self.geometry = geometry
        self.with_head = with_head
        self.stored_geometry = (
            Geometry(geometry.height, geometry.width + WITH_HEAD_EXTRA_COLUMNS) if with_head else geometry
        )
        if not self.path.exists():
            raise FileNotFoundError(f"no such spike file: {self.path}")
        size = self.path.stat().st_size
        plane_bytes = self.stored_geometry.plane_bytes
        if size == 0:
            raise FormatError(f"{self.path} is empty (0 bytes); a {self.stored_geometry} plane is {plane_bytes} bytes")
        n_planes, trailing = divmod(size, plane_bytes)
        if trailing:
            message = (
                f"{self.path} is {size} bytes, not a whole number of {self.stored_geometry} planes "
                f"({plane_bytes} bytes each): {n_planes} full planes and {trailing} trailing bytes. "
                f"The file is truncated or the geometry is wrong"
            )
            if not allow_partial or n_planes == 0:
                hint = "; allow_partial (--allow-partial) ignores the partial plane" if n_planes else ""
                raise FormatError(message + hint)
            warnings.warn(message + "; ignoring the partial plane", stacklevel=2)
        self.n_planes = n_planes
        self.size_bytes = size
        self._file = open(self.path, "rb", buffering=0)

    def _read_stored(self, start: int, stop: int) -> np.ndarray:
        """Stored planes ``[start, stop)`` (``stored_geometry``), read from the file into a new array."""
        plane_bytes = self.stored_geometry.plane_bytes
        out = np.empty((stop - start, plane_bytes), dtype=np.uint8)
        if self._file.closed:
            raise ValueError(f"{self.path} is closed")
        view = memoryview(out.reshape(-1))
        offset, done = start * plane_bytes, 0
        while done < len(view):
            n = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if n == 0:
                now = os.fstat(self._file.fileno()).st_size
                raise FormatError(
                    f"{self.path} shrank from {self.size_bytes} to {now} bytes while open: planes "
                    f"[{start}, {stop}) are no longer all there (the file was truncated or rewritten under its reader)"
                )
            done += n
        return out

    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Camera-order packed planes ``[start, stop)``, ``uint8 (n, plane_bytes)``."""
        start, stop = self._range(start, stop)
        raw = self._read_stored(start, stop)
        if not self.with_head:
            return raw
        return pack_planes(self._crop(unpack_planes(raw, self.stored_geometry)))

    def unpacked(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Upright 0/1 planes ``[start, stop)``, ``uint8 (n, H, W)``."""
        start, stop = self._range(start, stop)
        return self._crop(unpack_planes(self._read_stored(start, stop), self.stored_geometry))

    def _crop(self, planes: np.ndarray) -> np.ndarray:
        """Drop the head columns of a with-head file (a no-op otherwise)."""
        if self.with_head:
            return np.ascontiguousarray(planes[:, :, : self.geometry.width])
        return planes

    def close(self) -> None:
        self._file.close()


class DatWriter:
    """Streams planes to a ``.dat`` file; the file appears under its name only when closed cleanly.

    Writes go to a ``firmware_io.atomic.PendingFile`` beside the target, which ``close`` commits
    (fsynced, renamed into place). Leaving the ``with`` block by an exception removes it instead.
    """

    def __init__(self, path: str | os.PathLike, geometry: Geometry = DEFAULT_GEOMETRY) -> None:
        self.path = Path(path)
        self.geometry = geometry
        self.n_planes = 0
        self._pending = PendingFile(self.path)
        with self._pending.guard():
            self._file = open(self._pending.path, "wb")

    def write_packed(self, packed: np.ndarray) -> None:
        packed = np.asarray(packed)
        if packed.ndim != 2 or packed.dtype != np.uint8 or packed.shape[1] != self.geometry.plane_bytes:
            raise ValueError(
                f"expected uint8 (n, {self.geometry.plane_bytes}) packed {self.geometry} planes, "
                f"got {packed.dtype} {packed.shape}"
            )
        self._file.write(self._encode(packed))
        self.n_planes += packed.shape[0]

    def _encode(self, packed: np.ndarray) -> bytes:
        """The bytes stored for validated packed planes (the ``.dat`` layout stores them as they are)."""
        return np.ascontiguousarray(packed).tobytes()

    def write_planes(self, planes: np.ndarray) -> None:
        """Write upright 0/1 planes ``(n, H, W)``."""
        planes = np.asarray(planes)
        if planes.ndim == 2:
            planes = planes[None]
        if planes.shape[1:] != self.geometry.shape:
            raise ValueError(f"expected planes of {self.geometry}, got {planes.shape[1:]}")
        self.write_packed(pack_planes(planes))

    def close(self) -> None:
        if self._file.closed:
            return
        with self._pending.guard():
            self._file.close()
        self._pending.commit()

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._pending.abort()

    def __enter__(self) -> DatWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_dat(path: str | os.PathLike, planes: np.ndarray) -> Path:
    """Write upright 0/1 planes ``(n, H, W)`` to ``path`` atomically."""
    planes = np.asarray(planes)
    with DatWriter(path, Geometry(planes.shape[1], planes.shape[2])) as writer:
        writer.write_planes(planes)
    return Path(path)
