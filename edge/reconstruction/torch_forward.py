"""The whole torch forward of a learned method: packed windows in, images out, as one function and one module.

``forward_packed(network, prepare, packed, geometry, dtype)``: packed camera-order windows ``uint8
(B, T, plane_bytes)`` are prepared on their device as the method table says (unpacked by
``edge.reconstruction.torch_unpack``, voxelised for LRN: ``edge.reconstruction.inputs``), cast to the
network's ``dtype``, run through the network, and returned as float32 images ``(B, H, W)``.
``PackedForward`` is the same computation as an ``nn.Module`` holding the network, which is what
``torch.export`` traces for the compiled (AOTInductor) engines; the torch backend calls the function
directly (dtypes come from ``Precision.torch_dtype``, the one mapping); ``check_device_windows``
validates windows handed over on a GPU.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from edge.reconstruction.methods import Method, learned_spec
from firmware_io.contract import Geometry


def forward_packed(network: Callable[[torch.Tensor], torch.Tensor], prepare: Callable[..., Any],
                   packed: torch.Tensor, geometry: Geometry, dtype: torch.dtype, *,
                   channels_last: bool = False) -> torch.Tensor:
    """Packed windows ``uint8 (B, T, plane_bytes)`` -> float32 images ``(B, H, W)`` on ``packed``'s device."""
    x = prepare(packed, geometry, dtype)  # unpacked / voxelised straight into the compute dtype
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return network(x)[:, 0].float()


def check_device_windows(windows: torch.Tensor, window_planes: int, geometry: Geometry,
                         device: torch.device | None) -> torch.Tensor:
    """Validate packed windows handed over on ``device`` (``GpuReconstructor.reconstruct_device``; ``None``: the
    reconstructor takes host windows only): uint8 ``(B, window_planes, plane_bytes)``, any strides."""
    expected = (window_planes, geometry.plane_bytes)
    if (device is None or windows.dtype != torch.uint8 or windows.ndim != 3 or tuple(windows.shape[1:]) != expected
            or windows.device != device):
        raise ValueError(f"expected packed windows uint8 (B, {expected[0]}, {expected[1]}) on {device}, "
                         f"got {windows.dtype} {tuple(windows.shape)} on {windows.device}")
    return windows


class PackedForward(nn.Module):
    """``method``'s network with its input preparation: ``forward(packed uint8 (B, T, plane_bytes))`` ->
    float32 ``(B, H, W)`` at ``geometry``; the network runs in ``dtype`` (it is converted here)."""

    def __init__(self, network: nn.Module, method: Method, geometry: Geometry, dtype: torch.dtype) -> None:
        super().__init__()
        self.network = network.to(dtype)
        self.geometry = geometry
        self.dtype = dtype
        self._prepare = learned_spec(method).network.prepare_torch

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return forward_packed(self.network, self._prepare, packed, self.geometry, self.dtype)


__all__ = ["PackedForward", "check_device_windows", "forward_packed"]
