"""How raw spike planes are laid out in files and camera frames: the ``Layout`` enum and pure functions.

Two layouts are known (facts file, "The `.dat` raw file" and "The 1000x1000 camera over PCIe"):

- ``Layout.DAT``: the ``.dat`` convention, which is also the project's contract order
  (``firmware_io.contract``): ``H*W`` bits per plane, LSB first, rows stored bottom-up. Nothing to
  convert.
- ``Layout.PCIE1K``: the 1000x1000 camera over PCIe (SpikeCV's "M1K40" reader; unverified against
  hardware). A plane is 1000 rows of 1024 bits (128 bytes), rows top-down (not flipped). Each row
  is two 64-byte half-rows; a half-row holds 500 pixels (bits 0-499, LSB first) and ends in a
  12-bit tag in bits 500-511: read the half-row's last two bytes little-endian, ``v = b[63] << 8 |
  b[62]``; ``line = (v & 0x3FF0) >> 4`` (1..500), ``channel = (v & 0xC000) >> 14`` (0..3). Pixel
  columns 0-499 come from the left half-row, 500-999 from the right one. A plane starts with the
  half-row tagged (line 500, channel 0) and ends with (line 500, channel 3); a raw stream may start
  mid-plane, so readers look for that boundary (``find_plane_boundary``).

Which (line, channel) the other 1,998 half-rows of a plane carry is not stated by the facts. The
writer here (``pcie_rows_from_packed``) uses this project's provisional convention, chosen to meet
both stated ends: rows 0-499 carry channels 0 (left) and 1 (right) with line ``500 - row``; rows
500-999 carry channels 2 and 3 with line ``row - 499``. Readers rely only on what the facts state:
the boundary tags, and every tag's line within 1..500.

All functions are pure (arrays in, arrays out); files are ``firmware_io.pcie``'s.
"""

from __future__ import annotations

import enum

import numpy as np

from firmware_io.contract import FormatError, Geometry


class Layout(str, enum.Enum):
    """Raw plane layouts (the values are the command line's spellings)."""

    DAT = "dat"  # the .dat convention (= the contract order): H*W bits, LSB first, rows bottom-up
    PCIE1K = "pcie1k"  # the 1000x1000 camera over PCIe: 1024-bit rows with tags, rows top-down


PCIE_GEOMETRY = Geometry(1000, 1000)
PCIE_DECODE_WIDTH = 1024  # bits per raw row (SVPicture.width for this camera)
PCIE_ROW_BYTES = PCIE_DECODE_WIDTH // 8  # 128
HALF_ROW_BYTES = PCIE_ROW_BYTES // 2  # 64
HALF_ROW_PIXELS = 500
HALF_ROWS_PER_PLANE = 2 * PCIE_GEOMETRY.height  # 2000
PCIE_PLANE_BYTES = PCIE_GEOMETRY.height * PCIE_ROW_BYTES  # 128,000 (a .dat plane of 1000x1000: 125,000)
CONTRACT_ROW_BYTES = PCIE_GEOMETRY.width // 8  # 125
LINES = 500
FIRST_TAG = (500, 0)  # (line, channel) of a plane's first half-row
LAST_TAG = (500, 3)  # ... and of its last

_LINE_MASK, _CHANNEL_MASK = 0x3FF0, 0xC000


def layout_geometry(layout: Layout, geometry: Geometry | None) -> Geometry | None:
    """The plane geometry ``layout`` implies (PCIe: 1000x1000, any other request is a ``ValueError``)."""
    if layout is Layout.PCIE1K:
        if geometry is not None and geometry != PCIE_GEOMETRY:
            raise ValueError(f"the {layout.value} layout holds {PCIE_GEOMETRY} planes, not {geometry}")
        return PCIE_GEOMETRY
    return geometry


def stored_plane_bytes(layout: Layout, geometry: Geometry) -> int:
    """Bytes one plane of ``geometry`` takes in ``layout`` (PCIe 1K: 128,000; .dat: ``ceil(H*W/8)``)."""
    if layout is Layout.PCIE1K:
        layout_geometry(layout, geometry)
        return PCIE_PLANE_BYTES
    return geometry.plane_bytes


def decode_width(layout: Layout, geometry: Geometry) -> int:
    """Bits per raw row in ``layout`` (``SVPicture.width``): 1024 for PCIe 1K, the plane width for .dat."""
    return PCIE_DECODE_WIDTH if layout is Layout.PCIE1K else geometry.width


# -- tags ------------------------------------------------------------------------------------------
def encode_tag(line: int, channel: int) -> int:
    """The 16-bit little-endian value of a half-row's last two bytes for ``(line, channel)``, pixel bits clear."""
    if not (1 <= line <= LINES and 0 <= channel <= 3):
        raise ValueError(f"a tag needs line 1..{LINES} and channel 0..3, got line {line}, channel {channel}")
    return (channel << 14) | (line << 4)


def parse_tags(half_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(line, channel)`` arrays of the tags of ``half_rows`` (``uint8 (..., 64)``)."""
    half_rows = np.asarray(half_rows)
    if half_rows.dtype != np.uint8 or half_rows.shape[-1] != HALF_ROW_BYTES:
        raise ValueError(f"half-rows must be uint8 (..., {HALF_ROW_BYTES}), got {half_rows.dtype} {half_rows.shape}")
    value = half_rows[..., -1].astype(np.uint16) << 8 | half_rows[..., -2]
    return (value & _LINE_MASK) >> 4, (value & _CHANNEL_MASK) >> 14


def plane_tags(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(line, channel)`` of every half-row of raw PCIe planes ``uint8 (n, 128000)``: arrays ``(n, 2000)``."""
    raw = _check_raw(raw)
    return parse_tags(raw.reshape(raw.shape[0], HALF_ROWS_PER_PLANE, HALF_ROW_BYTES))


def writer_tags() -> tuple[np.ndarray, np.ndarray]:
    """The (line, channel) this project's writer gives the 2,000 half-rows of a plane (see the module docstring)."""
    row = np.repeat(np.arange(PCIE_GEOMETRY.height), 2)
    half = np.tile(np.arange(2), PCIE_GEOMETRY.height)
    top = row < LINES
    line = np.where(top, LINES - row, row - (LINES - 1))
    channel = np.where(top, half, 2 + half)
    return line, channel


_WRITER_TAG_VALUES = np.array([encode_tag(int(l), int(c)) for l, c in zip(*writer_tags())], dtype=np.uint16)


def bad_planes(raw: np.ndarray) -> np.ndarray:
    """Indices of the raw PCIe planes whose tags break what the facts state (boundary tags, lines 1..500)."""
    line, channel = plane_tags(raw)
    ok = ((line[:, 0] == FIRST_TAG[0]) & (channel[:, 0] == FIRST_TAG[1])
          & (line[:, -1] == LAST_TAG[0]) & (channel[:, -1] == LAST_TAG[1])
          & (line >= 1).all(axis=1) & (line <= LINES).all(axis=1))
    return np.flatnonzero(~ok)


def find_plane_boundary(data: np.ndarray | bytes, start: int = 0) -> int | None:
    """The first byte offset ``>= start`` where a whole, well-tagged PCIe plane begins; None if none does.

    A stream cut anywhere (mid-plane, even mid-half-row) is searched byte by byte for a half-row
    tagged (500, 0) whose plane, ``PCIE_PLANE_BYTES`` further, ends in (500, 3) and has every line
    within 1..500.
    """
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    if buf.dtype != np.uint8 or buf.ndim != 1:
        raise ValueError(f"data must be bytes or a 1-D uint8 array, got {buf.dtype} {buf.shape}")
    first_value = encode_tag(*FIRST_TAG)
    # half-row ends at offset o + 63: byte o + 63 is the tag's high byte, o + 62's high nibble its low bits
    hi = buf[start + HALF_ROW_BYTES - 1 :]
    lo = buf[start + HALF_ROW_BYTES - 2 : len(buf) - 1]
    candidates = np.flatnonzero((hi == first_value >> 8) & ((lo & 0xF0) == (first_value & 0xF0))) + start
    for offset in candidates:
        if offset + PCIE_PLANE_BYTES > len(buf):
            return None
        if not len(bad_planes(buf[offset : offset + PCIE_PLANE_BYTES][None])):
            return int(offset)
    return None


def detect_layout(head: np.ndarray | bytes) -> Layout:
    """``PCIE1K`` when ``head`` (a raw file's first bytes: two planes' worth suffices) holds a whole, well-tagged
    PCIe plane, else ``DAT``. Two thousand valid 12-bit tags at 64-byte spacing do not happen by chance."""
    return Layout.PCIE1K if find_plane_boundary(head) is not None else Layout.DAT


# -- rows <-> packed planes ---------------------------------------------------------------------------
def _check_raw(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim == 1:
        raw = raw[None]
    if raw.dtype != np.uint8 or raw.ndim != 2 or raw.shape[1] != PCIE_PLANE_BYTES:
        raise ValueError(f"raw PCIe planes must be uint8 (n, {PCIE_PLANE_BYTES}), got {raw.dtype} {raw.shape}")
    return raw


def packed_from_pcie_rows(raw: np.ndarray, *, check_tags: bool = True) -> np.ndarray:
    """Raw PCIe planes ``uint8 (n, 128000)`` -> contract-order packed planes ``uint8 (n, 125000)``.

    Tag columns are dropped and rows flipped into the contract's bottom-up order. With ``check_tags``
    a plane whose tags break the facts raises ``FormatError`` naming it.
    """
    raw = _check_raw(raw)
    if check_tags:
        bad = bad_planes(raw)
        if len(bad):
            line, channel = plane_tags(raw[bad[:1]])
            raise FormatError(f"raw PCIe plane {int(bad[0])} is not a well-tagged plane (first half-row tag line "
                              f"{int(line[0, 0])} channel {int(channel[0, 0])}, last line {int(line[0, -1])} channel "
                              f"{int(channel[0, -1])}; expected {FIRST_TAG} ... {LAST_TAG})")
    n = raw.shape[0]
    rows = raw.reshape(n, PCIE_GEOMETRY.height, PCIE_ROW_BYTES)
    out = np.empty((n, PCIE_GEOMETRY.height, CONTRACT_ROW_BYTES), dtype=np.uint8)
    up = out[:, ::-1, :]  # the contract stores rows bottom-up; raw rows are top-down
    left, right = rows[:, :, :HALF_ROW_BYTES], rows[:, :, HALF_ROW_BYTES:]
    # pixels 0-499: the left half-row's bytes 0-61 and the low nibble of byte 62
    up[:, :, :62] = left[:, :, :62]
    # pixels 500-999 start mid-byte (bit 4 of byte 62): the right half-row shifted up by four bits
    up[:, :, 62] = (left[:, :, 62] & 0x0F) | (right[:, :, 0] << 4)
    up[:, :, 63:] = (right[:, :, :62] >> 4) | (right[:, :, 1:63] << 4)
    return out.reshape(n, PCIE_GEOMETRY.plane_bytes)


def pcie_rows_from_packed(packed: np.ndarray) -> np.ndarray:
    """Contract-order packed 1000x1000 planes ``uint8 (n, 125000)`` -> raw PCIe planes ``uint8 (n, 128000)``,
    tagged with this project's provisional convention (``writer_tags``)."""
    packed = np.asarray(packed)
    if packed.ndim == 1:
        packed = packed[None]
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != PCIE_GEOMETRY.plane_bytes:
        raise ValueError(f"packed 1000x1000 planes must be uint8 (n, {PCIE_GEOMETRY.plane_bytes}), "
                         f"got {packed.dtype} {packed.shape}")
    n = packed.shape[0]
    up = packed.reshape(n, PCIE_GEOMETRY.height, CONTRACT_ROW_BYTES)[:, ::-1, :]
    raw = np.empty((n, PCIE_GEOMETRY.height, PCIE_ROW_BYTES), dtype=np.uint8)
    left, right = raw[:, :, :HALF_ROW_BYTES], raw[:, :, HALF_ROW_BYTES:]
    left[:, :, :62] = up[:, :, :62]
    left[:, :, 62] = up[:, :, 62] & 0x0F
    right[:, :, :62] = (up[:, :, 62:124] >> 4) | (up[:, :, 63:125] << 4)
    right[:, :, 62] = up[:, :, 124] >> 4
    tags = _WRITER_TAG_VALUES.reshape(PCIE_GEOMETRY.height, 2)
    for half, view in enumerate((left, right)):
        view[:, :, 62] |= (tags[:, half] & 0xF0).astype(np.uint8)
        view[:, :, 63] = (tags[:, half] >> 8).astype(np.uint8)
    return raw.reshape(n, PCIE_PLANE_BYTES)


def packed_from_layout(raw: np.ndarray, layout: Layout, geometry: Geometry) -> np.ndarray:
    """Raw planes of ``layout`` -> contract-order packed planes (``DAT``: as they are)."""
    if layout is Layout.PCIE1K:
        layout_geometry(layout, geometry)
        return packed_from_pcie_rows(raw)
    return raw
