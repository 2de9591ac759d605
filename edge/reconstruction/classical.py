"""Classical reconstruction as pure functions over one window of planes.

- TFP (texture from playback): the mean of the window, i.e. the firing rate in spikes per plane.
- TFI (texture from inter-spike interval), with Spike-Zoo/SpikeCV semantics: for a window of ``T``
  planes, ``key = T // 2`` and ``half = T // 2``. The last spike at or before the key is searched in
  planes ``key, key-1, ..., max(key - half + 1, 1)``; the first spike after it in planes
  ``key+1, ..., min(key + half, T - 1)``. The interval is their distance; when either is missing
  (or the interval is 0) it is ``2 * half``. The image is ``1 / interval``. Plane 0 of the window is
  never searched, as in the reference. (The reference would read past the window for even ``T``;
  here the forward search stops at the last plane.)
"""

from __future__ import annotations

import numpy as np

from firmware_io.bitpack import count_spikes
from firmware_io.contract import Geometry


def tfp(planes: np.ndarray) -> np.ndarray:
    """Window mean of upright 0/1 planes ``(T, H, W)`` -> ``float32 (H, W)`` in [0, 1]."""
    planes = np.asarray(planes)
    if planes.ndim != 3 or planes.shape[0] == 0:
        raise ValueError(f"TFP needs planes of shape (T>0, H, W), got {planes.shape}")
    return (planes.sum(axis=0, dtype=np.uint32) / np.float32(planes.shape[0])).astype(np.float32)


def tfp_packed(packed: np.ndarray, geometry: Geometry, out: np.ndarray | None = None) -> np.ndarray:
    """TFP straight from camera-order packed planes ``(T, plane_bytes)`` (no unpacking), into ``out``
    (``float32 (H, W)``) when given."""
    if packed.shape[0] == 0:
        raise ValueError("TFP needs at least one plane")
    out = np.empty(geometry.shape, dtype=np.float32) if out is None else out
    return count_spikes(packed, geometry, out=out, scale=1.0 / packed.shape[0])


def tfi(planes: np.ndarray) -> np.ndarray:
    """Inter-spike-interval image of upright 0/1 planes ``(T, H, W)`` -> ``float32 (H, W)``."""
    planes = np.asarray(planes)
    if planes.ndim != 3 or planes.shape[0] < 2:
        raise ValueError(f"TFI needs planes of shape (T>=2, H, W), got {planes.shape}")
    n = planes.shape[0]
    key = n // 2
    half = n // 2
    fallback = 2 * half
    earlier = np.zeros(planes.shape[1:], dtype=np.int32)  # 0 = none found (plane 0 is never searched)
    for index in range(key, max(key - half + 1, 1) - 1, -1):
        earlier = np.where((earlier == 0) & (planes[index] != 0), index, earlier)
    later = np.zeros(planes.shape[1:], dtype=np.int32)
    for index in range(key + 1, min(key + half, n - 1) + 1):
        later = np.where((later == 0) & (planes[index] != 0), index, later)
    interval = later - earlier
    interval = np.where((earlier == 0) | (later == 0) | (interval == 0), fallback, interval)
    return (1.0 / interval).astype(np.float32)
