"""Unpacking camera-order planes with torch, on whatever device the tensor lives (CPU or GPU).

Bit-exact with ``firmware_io.bitpack.unpack_planes``: pixel ``p`` of a stored plane is bit ``p % 8``
of byte ``p // 8`` and rows are stored bottom-up, so the result is flipped to be upright. Works on
any leading batch shape: ``(..., plane_bytes)`` uint8 -> ``(..., H, W)``.

Design: when the width is a multiple of 8 the (eight times smaller) packed rows are flipped before
expansion and every row expands in place; otherwise the flat bit stream is expanded, cut to
``H*W`` and the unpacked rows are flipped. Shifting by a broadcast ``arange(8)`` and masking with 1
is a single elementwise kernel on a GPU; a lookup table (the numpy path's trick) would be a gather.
"""

from __future__ import annotations

import torch

from firmware_io.contract import Geometry


def _shifts(device: torch.device) -> torch.Tensor:
    return torch.arange(8, dtype=torch.uint8, device=device)


def unpack_planes_torch(packed: torch.Tensor, geometry: Geometry, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """``(..., plane_bytes)`` uint8 camera-order planes -> upright 0/1 planes ``(..., H, W)`` of ``dtype``."""
    if packed.dtype != torch.uint8:
        raise ValueError(f"packed planes must be uint8, got {packed.dtype}")
    if packed.ndim < 1 or packed.shape[-1] != geometry.plane_bytes:
        raise ValueError(
            f"packed planes must end in {geometry.plane_bytes} bytes for {geometry}, got shape {tuple(packed.shape)}"
        )
    lead = packed.shape[:-1]
    height, width = geometry.shape
    shifts = _shifts(packed.device)
    if width % 8 == 0:
        rows = packed.reshape(*lead, height, width // 8).flip(-2)
        bits = rows.unsqueeze(-1) >> shifts
        bits &= 1  # in place: one full-size pass fewer
        return bits.reshape(*lead, height, width).to(dtype)
    bits = packed.unsqueeze(-1) >> shifts
    bits &= 1
    flat = bits.reshape(*lead, geometry.plane_bytes * 8)[..., : geometry.pixels]
    return flat.reshape(*lead, height, width).flip(-2).to(dtype)


__all__ = ["unpack_planes_torch"]
