"""The learned methods (LRN, STIR) behind the ``Reconstructor`` interface: choosing and building a backend.

``make_network_reconstructor`` is called by ``edge.reconstruction.backends.make_reconstructor``:

- ``engine=DIR``: load a prebuilt artifact directory (``edge.reconstruction.engines.load_engine_dir``), which checks
  its manifest against this machine and the requested geometry. Engines are never built implicitly.
- otherwise the weights come from ``checkpoint`` or the packaged default (``edge.reconstruction.models.checkpoints``)
  and run on torch (CPU or CUDA) or on ONNX Runtime (the network exported to ONNX in memory at
  start-up, which takes about a second for LRN and a few for STIR). TensorRT needs an engine.

``auto`` picks the fastest backend available for the method and device, from measurements on the
project's machines (``spike-edge bench reconstruct`` reproduces them): on CUDA torch fp16 with
CUDA graphs; on the CPU ONNX Runtime for LRN (222 ms per 250x400 frame against 277 ms for torch
channels_last and 495 ms eager, idle 2-core machine) and torch channels_last for STIR (756 ms,
against 846 ms ONNX Runtime and 1,157 ms eager); the other one when the first is not installed.

Input preparation is shared by every backend: ``prepare_torch`` (unpacking on the tensor's device,
voxelisation for LRN, float planes for STIR) and ``prepare_numpy`` (the same on the host with the
numpy LUT / packed-count kernels, for ONNX Runtime).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edge.reconstruction.backends.base import BackendName, BackendUnavailable, Device, Reconstructor
from edge.reconstruction.methods import Method
from edge.reconstruction.models import ModelName, Precision
from firmware_io.bitpack import block_counts, unpack_planes
from firmware_io.contract import Geometry

LRN_PLANES_PER_BIN = 4

# Preferred backends per (model, device), fastest first.
_AUTO_ORDER: dict[tuple[ModelName, Device], tuple[BackendName, ...]] = {
    (ModelName.LRN, Device.CPU): (BackendName.ONNX, BackendName.TORCH),
    (ModelName.STIR, Device.CPU): (BackendName.TORCH, BackendName.ONNX),
    (ModelName.LRN, Device.CUDA): (BackendName.TORCH, BackendName.ONNX),
    (ModelName.STIR, Device.CUDA): (BackendName.TORCH, BackendName.ONNX),
}


def model_name(method: Method | ModelName | str) -> ModelName:
    value = method.value if isinstance(method, (Method, ModelName)) else str(method)
    try:
        return ModelName(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a learned method; choose one of {', '.join(m.value for m in ModelName)}") from None


def prepare_numpy(model: ModelName, windows: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Packed windows ``uint8 (B, T, plane_bytes)`` -> float32 network input on the host."""
    if model is ModelName.LRN:
        return np.stack([block_counts(w, geometry, LRN_PLANES_PER_BIN) for w in windows]).astype(np.float32)
    b, t, _ = windows.shape
    return unpack_planes(windows.reshape(b * t, -1), geometry).reshape(b, t, *geometry.shape).astype(np.float32)


def prepare_torch(model: ModelName, packed, geometry: Geometry):
    """Packed windows as a uint8 tensor ``(B, T, plane_bytes)`` on any device -> float32 network input there."""
    import torch

    from edge.reconstruction.backends.torch_unpack import unpack_planes_torch
    from edge.reconstruction.models.lrn import voxelise

    planes = unpack_planes_torch(packed, geometry)
    if model is ModelName.LRN:
        return voxelise(planes, LRN_PLANES_PER_BIN)
    return planes.to(torch.float32)


def available_backends(device: Device) -> list[BackendName]:
    """Network backends whose libraries import here (TensorRT only with CUDA and an engine)."""
    found: list[BackendName] = []
    if importlib.util.find_spec("torch") is not None:
        found.append(BackendName.TORCH)
    if importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None:
        found.append(BackendName.ONNX)
    if device is Device.CUDA and importlib.util.find_spec("torch_tensorrt") is not None:
        found.append(BackendName.TENSORRT)
    return found


def check_device(device: Device) -> None:
    if device is Device.CUDA:
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda was requested but torch sees no CUDA GPU here; use --device cpu")


def build_backend(loaded, geometry: Geometry, backend: BackendName, device: Device, *,
                  precision: Precision | None = None, compile: bool = False) -> Reconstructor:
    """A reconstructor running ``loaded`` (an ``edge.reconstruction.models.checkpoints.LoadedNetwork``) on ``backend``."""
    check_device(device)
    if backend is BackendName.AUTO:
        found = available_backends(device)
        choice = next((b for b in _AUTO_ORDER[(loaded.name, device)] if b in found), None)
        if choice is None:
            raise BackendUnavailable("no network backend is installed: pip install 'spike-edge[torch]' (or [onnx])")
        backend = choice
    if backend is BackendName.TORCH:
        from edge.reconstruction.backends.torch_backend import TorchReconstructor

        return TorchReconstructor.from_network(loaded, geometry, device, precision=precision, compile=compile)
    if backend is BackendName.ONNX:
        from edge.reconstruction.backends.onnx_backend import OnnxReconstructor

        return OnnxReconstructor.from_network(loaded, geometry, device, precision=precision or Precision.FP32)
    if backend is BackendName.TENSORRT:
        raise BackendUnavailable(
            "TensorRT runs prebuilt engines only: build one with `spike-train export --format tensorrt "
            "--model M --checkpoint P --height H --width W --out DIR` and pass --engine DIR"
        )
    raise BackendUnavailable(f"the networks do not run on the {backend.value} backend")


def make_network_reconstructor(
    method: Method,
    geometry: Geometry,
    *,
    backend: BackendName = BackendName.AUTO,
    device: Device = Device.CPU,
    checkpoint: str | Path | None = None,
    engine: str | Path | None = None,
) -> Reconstructor:
    name = model_name(method)
    backend = BackendName(backend)
    device = Device(device)
    if engine is not None:
        if checkpoint is not None:
            raise ValueError("give --checkpoint or --engine, not both (an engine directory carries its own weights)")
        from edge.reconstruction.engines import load_engine_dir

        return load_engine_dir(engine, geometry, model=name, backend=backend, device=device)
    from edge.reconstruction.models.checkpoints import load_network

    return build_backend(load_network(name, checkpoint), geometry, backend, device)


__all__ = ["available_backends", "build_backend", "make_network_reconstructor", "prepare_numpy", "prepare_torch"]
