"""The reconstruction interface every backend implements (classical, torch, ONNX Runtime, TensorRT).

A ``Reconstructor`` turns a batch of windows of *packed* planes into images:

    reconstruct(packed_windows: uint8 (B, window_planes, plane_bytes)) -> float32 (B, H, W)

Input planes are in camera order (``firmware_io.contract``); unpacking, voxelisation and padding are
the backend's job, so a GPU backend can unpack on the device. Output is the method's raw value (TFP
in [0, 1], TFI = 1/interval, the networks' unnormalised output), upright.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

import numpy as np

from edge.reconstruction.methods import Method
from firmware_io.contract import Geometry


class BackendName(str, enum.Enum):
    AUTO = "auto"
    NUMPY = "numpy"  # the classical methods
    TORCH = "torch"
    ONNX = "onnx"
    TENSORRT = "tensorrt"


class Device(str, enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (library or device missing); the message says what to install."""


@runtime_checkable
class Reconstructor(Protocol):
    method: Method
    backend: str  # what actually runs, e.g. "numpy", "torch-cpu-fp32", "onnxruntime-CPUExecutionProvider"
    geometry: Geometry
    window_planes: int
    weights_id: str  # sha256 prefix of the weights, or "none" for classical methods

    def reconstruct(self, packed_windows: np.ndarray) -> np.ndarray: ...


def check_windows(packed_windows: np.ndarray, window_planes: int, geometry: Geometry) -> np.ndarray:
    """Validate a batch of packed windows; a single window ``(T, plane_bytes)`` becomes a batch of one."""
    packed_windows = np.asarray(packed_windows)
    if packed_windows.ndim == 2:
        packed_windows = packed_windows[None]
    expected = (window_planes, geometry.plane_bytes)
    if packed_windows.dtype != np.uint8 or packed_windows.ndim != 3 or packed_windows.shape[1:] != expected:
        raise ValueError(
            f"expected packed windows uint8 (B, {expected[0]}, {expected[1]}) for {geometry}, "
            f"got {packed_windows.dtype} {packed_windows.shape}"
        )
    return packed_windows
