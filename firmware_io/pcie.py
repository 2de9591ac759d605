"""Raw files of the 1000x1000 camera over PCIe (``Layout.PCIE1K``): reader (memory-mapped) and writer together.

Layout (``firmware_io.layouts``, provisional: inferred from SpikeCV's reader, unverified against
hardware): no header; planes of 1000 rows x 1024 bits (128,000 bytes), rows top-down, each 64-byte
half-row ending in a 12-bit (line, channel) tag. A raw dump may start mid-plane: the reader skips
to the first plane boundary the tags show (``offset_bytes``). It checks every plane's boundary tags
when it opens the file and all of a plane's tags when it reads it; a trailing partial plane, or a
plane that lost the boundary, raises ``FormatError`` unless ``allow_partial`` (then the rest of the
file from there is ignored, with a warning).

``detect_file_layout(path, geometry)`` sniffs a ``.dat`` file's first two planes' worth of bytes:
PCIe 1K where the tags say so (only for a 1000x1000 or unstated geometry), the ``.dat`` convention
otherwise.
"""

from __future__ import annotations

import mmap
import os
import warnings
from pathlib import Path

import numpy as np

from firmware_io.dat import DatWriter
from firmware_io.bitpack import unpack_planes
from firmware_io.contract import FormatError, Geometry
from firmware_io.layouts import (
    FIRST_TAG,
    HALF_ROW_BYTES,
    LAST_TAG,
    PCIE_GEOMETRY,
    PCIE_PLANE_BYTES,
    Layout,
    detect_layout,
    encode_tag,
    find_plane_boundary,
    layout_geometry,
    packed_from_pcie_rows,
    pcie_rows_from_packed,
)
from firmware_io.plane_range import PlaneRangeReader

SNIFF_BYTES = 2 * PCIE_PLANE_BYTES  # a boundary lies within the first plane; its plane ends by here


def detect_file_layout(path: str | os.PathLike, geometry: Geometry | None = None) -> Layout:
    """The layout of the raw file ``path``: ``PCIE1K`` where its tags say so and ``geometry`` allows it."""
    if geometry is not None and geometry != PCIE_GEOMETRY:
        return Layout.DAT
    with open(path, "rb") as f:
        return detect_layout(f.read(SNIFF_BYTES))


def _boundary_ok(raw: np.ndarray) -> np.ndarray:
    """Per raw plane: do its first and last half-rows carry the boundary tags? (Reads 4 bytes per plane.)"""
    def tag(offset: int) -> np.ndarray:
        return (raw[:, offset + 1].astype(np.uint16) << 8 | raw[:, offset]) & 0xFFF0

    return ((tag(HALF_ROW_BYTES - 2) == encode_tag(*FIRST_TAG))
            & (tag(PCIE_PLANE_BYTES - 2) == encode_tag(*LAST_TAG)))


class PcieReader(PlaneRangeReader):
    """Random access to the planes of a raw PCIe 1K file (see the module docstring).

    ``packed(start, stop)`` returns contract-order planes (converted, tags checked); ``raw(start,
    stop)`` the stored bytes (a zero-copy view of the memory map); ``offset_bytes`` is where the
    first whole plane starts.
    """

    layout = Layout.PCIE1K

    def __init__(self, path: str | os.PathLike, geometry: Geometry | None = None, *, with_head: bool = False,
                 allow_partial: bool = False) -> None:
        self.path = Path(path)
        self.geometry = layout_geometry(Layout.PCIE1K, geometry)
        if with_head:
            raise ValueError(f"{self.path}: the 416-column 'with-head' variant is a 250x400 .dat layout, "
                             f"not {Layout.PCIE1K.value}")
        if not self.path.exists():
            raise FileNotFoundError(f"no such spike file: {self.path}")
        size = self.path.stat().st_size
        if size == 0:
            raise FormatError(f"{self.path} is empty (0 bytes); a {Layout.PCIE1K.value} plane is {PCIE_PLANE_BYTES} bytes")
        self._file = open(self.path, "rb")
        self._mmap = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._open(size, allow_partial)
        except BaseException:
            self.close()
            raise

    def _open(self, size: int, allow_partial: bool) -> None:
        whole = np.frombuffer(self._mmap, dtype=np.uint8)
        offset = find_plane_boundary(whole[:SNIFF_BYTES])
        if offset is None:
            raise FormatError(f"{self.path} holds no whole {Layout.PCIE1K.value} plane in its first "
                              f"{min(size, SNIFF_BYTES)} bytes (a plane starts with a half-row tagged line "
                              f"{FIRST_TAG[0]} channel {FIRST_TAG[1]} and is {PCIE_PLANE_BYTES} bytes)")
        self.offset_bytes = offset
        n_planes, trailing = divmod(size - offset, PCIE_PLANE_BYTES)
        planes = whole[offset : offset + n_planes * PCIE_PLANE_BYTES].reshape(n_planes, PCIE_PLANE_BYTES)
        lost = np.flatnonzero(~_boundary_ok(planes))
        problems = []
        if len(lost):
            k = int(lost[0])
            problems.append(f"plane {k} (byte {offset + k * PCIE_PLANE_BYTES}) does not start and end with the "
                            f"boundary tags {FIRST_TAG} / {LAST_TAG}: the stream lost sync there")
            n_planes = k
        elif trailing:
            problems.append(f"{self.path} ends in {trailing} bytes of a partial {Layout.PCIE1K.value} plane "
                            f"({PCIE_PLANE_BYTES} bytes each, the first at byte {offset}): the file is truncated")
        if problems:
            message = f"{self.path}: {problems[0]}"
            if not allow_partial or n_planes == 0:
                hint = "; allow_partial (--allow-partial) reads the planes before it" if n_planes else ""
                raise FormatError(message + hint)
            warnings.warn(message + f"; reading the {n_planes} planes before it", stacklevel=3)
        self.n_planes = n_planes
        self._planes = planes[:n_planes]

    def raw(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The stored planes ``[start, stop)``, ``uint8 (n, 128000)`` (a view of the memory map)."""
        start, stop = self._range(start, stop)
        return self._planes[start:stop]

    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Contract-order packed planes ``[start, stop)``, ``uint8 (n, 125000)``; ``FormatError`` for a bad tag."""
        return packed_from_pcie_rows(self.raw(start, stop))

    def unpacked(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Upright 0/1 planes ``[start, stop)``, ``uint8 (n, 1000, 1000)``."""
        return unpack_planes(self.packed(start, stop), self.geometry)

    def close(self) -> None:
        if self._mmap is not None:
            self._planes = None
            try:
                self._mmap.close()
            except BufferError:
                pass  # a caller still holds a view; the map is freed with it
            self._file.close()
            self._mmap = None


class PcieWriter(DatWriter):
    """Streams 1000x1000 planes to a raw PCIe 1K file, tagged as ``firmware_io.layouts`` writes them;
    the file appears under its name only when closed cleanly (``DatWriter``'s atomic commit)."""

    layout = Layout.PCIE1K

    def __init__(self, path: str | os.PathLike, geometry: Geometry = PCIE_GEOMETRY) -> None:
        super().__init__(path, layout_geometry(Layout.PCIE1K, geometry))

    def _encode(self, packed: np.ndarray) -> bytes:
        return pcie_rows_from_packed(packed).tobytes()


def write_pcie(path: str | os.PathLike, planes: np.ndarray) -> Path:
    """Write upright 0/1 planes ``(n, 1000, 1000)`` to ``path`` in the PCIe 1K layout, atomically."""
    with PcieWriter(path) as writer:
        writer.write_planes(planes)
    return Path(path)
