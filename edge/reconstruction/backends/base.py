"""The reconstruction interface every backend implements (classical, torch, ONNX Runtime, TensorRT, AOTInductor).

A ``Reconstructor`` turns a batch of windows of *packed* planes into images:

    reconstruct(packed_windows: uint8 (B, window_planes, plane_bytes)) -> float32 (B, H, W)

Input planes are in camera order (``firmware_io.contract``); unpacking, voxelisation and padding are
the backend's job, so a GPU backend can unpack on the device. Output is the method's raw value (TFP
in [0, 1], TFI = 1/interval, the networks' unnormalised output), upright.

A backend is one module, imported by the registry (``edge.reconstruction.backends.registry``) when
first used: the classical backend's module provides ``build(method, geometry, window_planes)``; a
network backend's module provides the functions of ``NetworkBackend``.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol, runtime_checkable

import numpy as np

from edge.reconstruction.methods import Method
from edge.reconstruction.models import Precision
from firmware_io.contract import Geometry

if TYPE_CHECKING:
    from edge.reconstruction.networks import LoadedNetwork


class BackendName(str, enum.Enum):
    AUTO = "auto"
    NUMPY = "numpy"  # the classical methods
    TORCH = "torch"
    ONNX = "onnx"
    TENSORRT = "tensorrt"
    AOTI = "aoti"  # AOTInductor packages (.pt2)


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


@runtime_checkable
class GpuReconstructor(Protocol):
    """What a reconstructor that runs on a GPU through torch offers besides ``reconstruct`` (the torch
    backend): windows that already live on its device, and graph capture ahead of the stream."""

    window_device: Any  # the torch device ``reconstruct_device`` takes windows on; None: host windows only

    def reconstruct_device(self, windows: Any) -> np.ndarray:
        """Packed uint8 windows ``(B, T, plane_bytes)`` on ``window_device`` -> float32 ``(B, H, W)`` on the host."""

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        """Do now what the first call of each batch size would do (CUDA graph capture)."""


class NetworkBackend(Protocol):
    """What a network backend's module provides (the registry entry says what it needs and loads)."""

    def build(self, loaded: LoadedNetwork, geometry: Geometry, device: Device, *, precision: Precision | None,
              compile: bool) -> Reconstructor:
        """A reconstructor running the loaded weights (not called for engine-only backends)."""

    def load(self, artifact: Path, method: Method, geometry: Geometry, window_planes: int, weights_id: str,
             device: Device, precision: Precision) -> Reconstructor:
        """A reconstructor running the artifact of a checked engine directory."""

    def write_artifact(self, loaded: LoadedNetwork, geometry: Geometry, precision: Precision, device: Device,
                       path: Path, *, opset: int) -> dict[str, Any]:
        """Write the artifact of ``loaded`` for ``geometry``, built for ``device``, to ``path``; return the
        format's own manifest fields."""

    def library_versions(self) -> dict[str, str | None]:
        """The versions of the backend's libraries, recorded in manifests (torch and python are always)."""

    def engine_problems(self, manifest: dict[str, Any]) -> list[str]:
        """What in a manifest does not fit this machine for reasons of the format itself (e.g. TensorRT's GPU)."""


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
