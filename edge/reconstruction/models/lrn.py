"""SpikeCLIP's LRN (lightweight reconstruction network) and its input voxelisation.

The network is five full-resolution 3x3 convolutions 50 -> 64 -> 128 -> 64 -> 16 -> 1 (stride 1,
padding 1, bias), ReLU after the first four, no final activation: 185,889 parameters. It is built as
``nn.Sequential(Sequential(conv, ReLU) x 4, conv)`` so that its ``state_dict`` keys are exactly the
official checkpoint's (``0.0.weight`` ... ``3.0.bias``, ``4.weight``, ``4.bias``).

Input: 200 upright planes, voxelised into 50 channels by summing runs of 4 consecutive planes
(``voxelise``), values 0..4. Output: an unbounded image roughly in [0, 1.1] (a firing-rate-like scale).
"""

from __future__ import annotations

import torch
from torch import nn

LRN_WINDOW_PLANES = 200
LRN_PLANES_PER_BIN = 4
LRN_IN_CHANNELS = LRN_WINDOW_PLANES // LRN_PLANES_PER_BIN  # 50
LRN_CHANNELS = (LRN_IN_CHANNELS, 64, 128, 64, 16, 1)
LRN_PARAMETERS = 185_889


def voxelise(planes: torch.Tensor, planes_per_bin: int = LRN_PLANES_PER_BIN) -> torch.Tensor:
    """Sum runs of ``planes_per_bin`` consecutive planes: ``(B, T, H, W)`` -> float ``(B, T // k, H, W)``.

    ``T`` must be a multiple of ``planes_per_bin`` (200 planes -> 50 channels for LRN). Any integer or
    float dtype is accepted; the result is float32 (or the input's float dtype).
    """
    if planes.ndim != 4:
        raise ValueError(f"planes must have shape (B, T, H, W), got {tuple(planes.shape)}")
    batch, n_planes, height, width = planes.shape
    if planes_per_bin <= 0 or n_planes % planes_per_bin:
        raise ValueError(f"{n_planes} planes do not split into runs of {planes_per_bin}")
    dtype = planes.dtype if planes.dtype.is_floating_point else torch.float32
    grouped = planes.reshape(batch, n_planes // planes_per_bin, planes_per_bin, height, width)
    return grouped.sum(dim=2, dtype=dtype)


class LRN(nn.Sequential):
    """The LRN network: ``(B, 50, H, W)`` voxels -> ``(B, 1, H, W)`` image. Any H, W (no padding needed)."""

    window_planes = LRN_WINDOW_PLANES

    def __init__(self, channels: tuple[int, ...] = LRN_CHANNELS) -> None:
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-2], channels[1:-1]):
            layers.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=True), nn.ReLU(inplace=True)))
        layers.append(nn.Conv2d(channels[-2], channels[-1], 3, 1, 1, bias=True))
        super().__init__(*layers)

    @staticmethod
    def prepare(planes: torch.Tensor) -> torch.Tensor:
        """Upright 0/1 planes ``(B, 200, H, W)`` -> network input ``(B, 50, H, W)``."""
        if planes.shape[1] != LRN_WINDOW_PLANES:
            raise ValueError(f"LRN takes {LRN_WINDOW_PLANES} planes, got {planes.shape[1]}")
        return voxelise(planes)


__all__ = ["LRN", "voxelise", "LRN_WINDOW_PLANES", "LRN_PARAMETERS"]
