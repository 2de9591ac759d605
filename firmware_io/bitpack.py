"""Bit packing in the camera's order, as pure functions on numpy arrays.

Camera order (see ``firmware_io.contract``): pixel ``p`` of a stored plane is bit ``p % 8`` of byte
``p // 8`` (LSB first) and rows are stored bottom-up. ``pack_planes`` / ``unpack_planes`` convert
between that and upright ``(n, H, W)`` 0/1 planes; ``count_spikes`` sums planes without unpacking.

Design: ``numpy.unpackbits`` decodes about 8,000 250x400 planes/s on one core here; a 256-entry
lookup table that expands each byte to eight 0/1 bytes (one ``uint64``) runs several times faster,
and counting spikes over a window needs no unpacking at all: viewing the packed bytes as words,
``(word >> k) & 0x0101...`` isolates bit ``k`` of every byte at once, and summing those words over
up to 255 planes keeps a separate 8-bit counter per byte lane. That is eight shift/and/add passes
over packed data instead of a pass over eight times as many unpacked bytes. The same loop in C
(``firmware_io.kernels``, compiled on first use) runs about twice as fast again; numpy is the
fallback where no C compiler exists, and tests check that both give identical counts.
"""

from __future__ import annotations

import numpy as np

from firmware_io.contract import Geometry
from firmware_io.kernels import spike_count_bits

# _UNPACK_LUT[b] is the uint64 whose eight bytes are the bits of b, least-significant first.
_UNPACK_LUT: np.ndarray = (
    np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
    .copy()
    .view(np.uint64)
    .ravel()
)
_LANE_MASK = np.uint32(0x01010101)
_MAX_PLANES_PER_LANE_SUM = 255


def _check_packed(packed: np.ndarray, geometry: Geometry) -> np.ndarray:
    packed = np.asarray(packed)
    if packed.ndim == 1:
        packed = packed[None]
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ValueError(f"packed planes must be uint8 (n, plane_bytes), got {packed.dtype} {packed.shape}")
    if packed.shape[1] != geometry.plane_bytes:
        raise ValueError(
            f"packed planes have {packed.shape[1]} bytes each, but a {geometry} plane has "
            f"{geometry.plane_bytes}"
        )
    return packed


def pack_planes(planes: np.ndarray) -> np.ndarray:
    """Pack upright 0/1 planes ``(n, H, W)`` (or one ``(H, W)``) into camera order ``(n, plane_bytes)``."""
    planes = np.asarray(planes)
    if planes.ndim == 2:
        planes = planes[None]
    if planes.ndim != 3:
        raise ValueError(f"planes must have shape (n, H, W) or (H, W), got {planes.shape}")
    n, height, width = planes.shape
    flipped = planes[:, ::-1, :].reshape(n, height * width)
    bits = flipped.astype(bool, copy=False)
    return np.packbits(bits, axis=1, bitorder="little")


def unpack_planes(packed: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Unpack camera-order planes ``(n, plane_bytes)`` into upright ``uint8`` 0/1 planes ``(n, H, W)``."""
    packed = _check_packed(packed, geometry)
    n = packed.shape[0]
    height, width = geometry.shape
    if width % 8 == 0:
        # Rows are whole bytes: flip the (small) packed rows, then expand straight into place.
        rows = packed.reshape(n, height, width // 8)[:, ::-1, :]
        out = np.empty((n, height, width // 8), dtype=np.uint64)
        np.take(_UNPACK_LUT, rows, out=out)
        return out.view(np.uint8).reshape(n, height, width)
    expanded = np.take(_UNPACK_LUT, packed).view(np.uint8)
    upright = expanded[:, : geometry.pixels].reshape(n, height, width)[:, ::-1, :]
    return np.ascontiguousarray(upright)


def _as_words(packed: np.ndarray) -> np.ndarray:
    """View (or copy, padding to a multiple of 4 bytes) packed planes as uint32 words."""
    n, nbytes = packed.shape
    if nbytes % 4 == 0 and packed.flags.c_contiguous:
        return packed.view(np.uint32)
    padded = np.zeros((n, -(-nbytes // 4) * 4), dtype=np.uint8)
    padded[:, :nbytes] = packed
    return padded.view(np.uint32)


def _bit_counts_numpy(packed: np.ndarray) -> np.ndarray:
    """``counts[8*j + k]`` = planes whose byte ``j`` has bit ``k`` set (file order), ``uint32``."""
    words = _as_words(packed)
    n_words = words.shape[1]
    total = np.zeros(n_words * 4 * 8, dtype=np.uint32)
    lanes = np.empty((8, n_words), dtype=np.uint32)
    shifted = np.empty((min(len(words), _MAX_PLANES_PER_LANE_SUM), n_words), dtype=np.uint32)
    for start in range(0, len(words), _MAX_PLANES_PER_LANE_SUM):
        chunk = words[start : start + _MAX_PLANES_PER_LANE_SUM]
        buf = shifted[: len(chunk)]
        for bit in range(8):
            np.right_shift(chunk, np.uint32(bit), out=buf)
            np.bitwise_and(buf, _LANE_MASK, out=buf)
            buf.sum(axis=0, dtype=np.uint32, out=lanes[bit])
        total += lanes.view(np.uint8).T.reshape(-1)  # lanes as bytes: [bit, byte] -> pixel 8 * byte + bit
    return total


def _bit_counts(packed: np.ndarray) -> np.ndarray:
    native = spike_count_bits()
    if native is None:
        return _bit_counts_numpy(packed)
    if packed.strides[1] != 1 or packed.strides[0] < packed.shape[1]:
        packed = np.ascontiguousarray(packed)
    counts = np.empty(8 * packed.shape[1], dtype=np.uint32)  # the kernel sets every element
    if native(packed.ctypes.data, packed.shape[0], packed.strides[0], packed.shape[1], counts.ctypes.data) != 0:
        raise MemoryError("the native spike counter could not allocate its scratch memory")
    return counts


def count_spikes(packed: np.ndarray, geometry: Geometry, *, out: np.ndarray | None = None,
                 scale: float | None = None) -> np.ndarray:
    """Spikes per pixel over all given planes, upright, computed on packed bytes.

    Returns ``uint32 (H, W)``, or fills ``out`` (any numeric dtype, shape ``(H, W)``) with the counts
    times ``scale`` when given: TFP is ``count_spikes(window, g, out=float32 frame, scale=1 / T)``,
    flip, conversion and scaling done in one pass.
    """
    packed = _check_packed(packed, geometry)
    height, width = geometry.shape
    flat = _bit_counts(packed)[: geometry.pixels].reshape(height, width)
    if out is None:
        out = np.empty((height, width), dtype=np.uint32)
    elif out.shape != (height, width):
        raise ValueError(f"out has shape {out.shape}, expected {(height, width)}")
    if scale is None:
        np.copyto(out[::-1], flat, casting="unsafe")
    else:
        np.multiply(flat, scale, out=out[::-1], dtype=out.dtype, casting="unsafe")
    return out


def block_counts(packed: np.ndarray, geometry: Geometry, block_planes: int) -> np.ndarray:
    """Spike counts of consecutive blocks of ``block_planes`` planes: ``uint32 (n // block_planes, H, W)``.

    A trailing partial block is ignored. Sums of adjacent blocks give the counts of longer windows.
    """
    if block_planes <= 0:
        raise ValueError(f"block_planes must be positive, got {block_planes}")
    packed = _check_packed(packed, geometry)
    n_blocks = packed.shape[0] // block_planes
    out = np.empty((n_blocks, *geometry.shape), dtype=np.uint32)
    for i in range(n_blocks):
        out[i] = count_spikes(packed[i * block_planes : (i + 1) * block_planes], geometry)
    return out
