"""SpikeCLIP's LRN (lightweight reconstruction network): the torch module, its input transform, ``build``.

The network is five full-resolution 3x3 convolutions 50 -> 64 -> 128 -> 64 -> 16 -> 1 (stride 1,
padding 1, bias), ReLU after the first four, no final activation: 185,889 parameters. It is built as
``nn.Sequential(Sequential(conv, ReLU) x 4, conv)`` so that its ``state_dict`` keys are exactly the
official checkpoint's (``0.0.weight`` ... ``3.0.bias``, ``4.weight``, ``4.bias``).

Input: 200 upright planes, voxelised into 50 channels by summing runs of 4 consecutive planes
(``edge.reconstruction.inputs.voxelise``), values 0..4. Output: an unbounded image roughly in
[0, 1.1] (a firing-rate-like scale).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from edge.reconstruction.inputs import LRN_PLANES_PER_BIN, voxelise

LRN_WINDOW_PLANES = 200
LRN_IN_CHANNELS = LRN_WINDOW_PLANES // LRN_PLANES_PER_BIN  # 50
LRN_CHANNELS = (LRN_IN_CHANNELS, 64, 128, 64, 16, 1)
LRN_PARAMETERS = 185_889


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


def build(window_planes: int | None = None, state: Mapping[str, Any] | None = None) -> LRN:
    """A fresh LRN; there is one variant (200 planes), so ``state`` has nothing to choose."""
    if window_planes is not None and window_planes != LRN_WINDOW_PLANES:
        raise ValueError(f"LRN takes a {LRN_WINDOW_PLANES}-plane window, not {window_planes}")
    return LRN()


__all__ = ["LRN", "build", "LRN_WINDOW_PLANES", "LRN_PARAMETERS"]
