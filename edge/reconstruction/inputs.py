"""Network inputs from packed windows: the preparation every backend shares, on the host and on torch devices.

A backend receives packed camera-order windows ``uint8 (B, T, plane_bytes)`` and feeds its network
``float32 (B, C, H, W)``:

- LRN: the 200 upright planes summed in runs of ``LRN_PLANES_PER_BIN`` = 4 (``voxelise``), 50
  channels of counts 0..4. On the host the counts are taken straight from the packed bytes
  (``firmware_io.bitpack.block_counts``); on a torch device the bytes are unpacked there
  (``edge.reconstruction.torch_unpack``) and summed.
- STIR: the upright planes themselves, as float.

The method table (``edge.reconstruction.methods``) names, for each network, which of these it uses.
This module imports no backend and no network, and torch only inside the torch functions, so the
host path (ONNX Runtime) runs without torch.

Design: the torch functions take the network's compute dtype and never make a float32 copy on the
way to it: STIR's planes are unpacked straight into that dtype, LRN's are summed as uint8 (counts
0..4) and cast once, 50 channels instead of 200 planes (a float32 copy of the 200 planes was 80 MB
per 250x400 frame). Counts and 0/1 values are exact in fp16 and bf16, so every dtype sees the same
input values as float32 does, and float32 results are unchanged.
"""

from __future__ import annotations

import numpy as np

from firmware_io.bitpack import block_counts, unpack_planes
from firmware_io.contract import Geometry

LRN_PLANES_PER_BIN = 4


def voxelise(planes, planes_per_bin: int = LRN_PLANES_PER_BIN, dtype=None):
    """Sum runs of ``planes_per_bin`` consecutive planes: tensor ``(B, T, H, W)`` -> float ``(B, T // k, H, W)``.

    ``T`` must be a multiple of ``planes_per_bin`` (200 planes -> 50 channels for LRN). Float planes
    are summed in their dtype; integer or bool planes (0/1) are summed as uint8 and cast once to
    ``dtype`` (default float32).
    """
    import torch

    if planes.ndim != 4:
        raise ValueError(f"planes must have shape (B, T, H, W), got {tuple(planes.shape)}")
    batch, n_planes, height, width = planes.shape
    if planes_per_bin <= 0 or n_planes % planes_per_bin:
        raise ValueError(f"{n_planes} planes do not split into runs of {planes_per_bin}")
    grouped = planes.reshape(batch, n_planes // planes_per_bin, planes_per_bin, height, width)
    if planes.dtype.is_floating_point:
        return grouped.sum(dim=2, dtype=dtype or planes.dtype)
    if planes_per_bin > 255:
        raise ValueError(f"runs of {planes_per_bin} planes could overflow uint8 counts (at most 255)")
    return grouped.sum(dim=2, dtype=torch.uint8).to(dtype or torch.float32)


def voxels_numpy(windows: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Packed windows ``uint8 (B, T, plane_bytes)`` -> float32 voxels ``(B, T // 4, H, W)`` on the host."""
    return np.stack([block_counts(w, geometry, LRN_PLANES_PER_BIN) for w in windows]).astype(np.float32)


def planes_numpy(windows: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Packed windows ``uint8 (B, T, plane_bytes)`` -> float32 upright planes ``(B, T, H, W)`` on the host."""
    b, t, _ = windows.shape
    return unpack_planes(windows.reshape(b * t, -1), geometry).reshape(b, t, *geometry.shape).astype(np.float32)


def voxels_torch(packed, geometry: Geometry, dtype=None):
    """Packed windows as a uint8 tensor ``(B, T, plane_bytes)`` -> voxels of ``dtype`` (default float32), on the
    tensor's device."""
    from edge.reconstruction.torch_unpack import unpack_planes_torch

    return voxelise(unpack_planes_torch(packed, geometry), LRN_PLANES_PER_BIN, dtype)


def planes_torch(packed, geometry: Geometry, dtype=None):
    """Packed windows as a uint8 tensor ``(B, T, plane_bytes)`` -> upright planes of ``dtype`` (default float32), on
    the tensor's device."""
    import torch

    from edge.reconstruction.torch_unpack import unpack_planes_torch

    return unpack_planes_torch(packed, geometry, dtype or torch.float32)


__all__ = ["LRN_PLANES_PER_BIN", "planes_numpy", "planes_torch", "voxelise", "voxels_numpy", "voxels_torch"]
