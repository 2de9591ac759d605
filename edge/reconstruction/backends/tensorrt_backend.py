"""LRN / STIR on TensorRT through Torch-TensorRT (CUDA only; optional extra ``spike-edge[gpu]``).

Engines are built explicitly by ``spike-train export --format tensorrt`` on the GPU that will run
them (``write_artifact``) and loaded from an engine directory (``load``), never built on the fly
(the registry refuses to build this backend from weights). The saved artifact is Torch-TensorRT's ExportedProgram (``torch_tensorrt.save`` /
``torch.export.load(...).module()``), a graph module whose TensorRT subgraphs are serialised
engines; inputs are prepared on the GPU exactly as for the torch backend (unpack, voxelise).

An engine is tied to the GPU model, compute capability and TensorRT version it was built with
(``engine_problems`` compares them with the manifest). Written against the documented Torch-TensorRT
2.x API (``compile(ir="dynamo", arg_inputs=...)``, ``save``); not exercised on this project's
CPU-only CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.reconstruction.backends.base import BackendUnavailable, Device
from edge.reconstruction.backends.torch_backend import TorchReconstructor
from edge.reconstruction.engines import distribution_version, gpu_info
from edge.reconstruction.methods import Method
from edge.reconstruction.models import Precision
from firmware_io.contract import Geometry

EXTRA_HINT = "pip install 'spike-edge[gpu]' (torch-tensorrt matching your torch and CUDA)"


def import_torch_tensorrt():
    try:
        import torch_tensorrt  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"Torch-TensorRT is not importable ({exc}): {EXTRA_HINT}") from None
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("TensorRT needs a CUDA GPU, and torch sees none here")
    return torch_tensorrt


def tensorrt_version() -> str | None:
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except ImportError:
        return None


def write_artifact(loaded, geometry: Geometry, precision: Precision, device: Device, path: Path, *,
                   opset: int) -> dict[str, Any]:
    """Compile the network for one fixed input shape on this GPU (``device`` is always cuda) and save it to
    ``path`` (ExportedProgram); ``opset`` is ONNX's and does not apply."""
    torch_tensorrt = import_torch_tensorrt()
    import torch

    dtype = precision.torch_dtype
    module = loaded.model.eval().cuda().to(dtype)
    inputs = [torch.zeros(loaded.network.input_shape(loaded.window_planes, geometry), dtype=dtype, device="cuda")]
    try:
        compiled = torch_tensorrt.compile(module, ir="dynamo", arg_inputs=inputs, use_explicit_typing=True)
        torch_tensorrt.save(compiled, str(path), arg_inputs=inputs)
    except TypeError:  # Torch-TensorRT < 2.5 spells the arguments differently
        compiled = torch_tensorrt.compile(module, ir="dynamo", inputs=inputs, enabled_precisions={dtype})
        torch_tensorrt.save(compiled, str(path), inputs=inputs)
    return {}


def load(artifact: Path, method: Method, geometry: Geometry, window_planes: int, weights_id: str, device: Device,
         precision: Precision) -> TorchReconstructor:
    """A ``TorchReconstructor`` running the saved TensorRT program on the GPU."""
    torch_tensorrt = import_torch_tensorrt()  # registers the TensorRT runtime ops before loading
    import torch

    del torch_tensorrt
    program = torch.export.load(str(artifact)).module()
    return TorchReconstructor(program, method, geometry, window_planes, weights_id, Device.CUDA, precision,
                              channels_last=False, cuda_graphs=False, convert_module=False,
                              label=f"tensorrt-{precision.value}")


def library_versions() -> dict[str, str | None]:
    return {"torch_tensorrt": distribution_version("torch-tensorrt", "torch_tensorrt"), "tensorrt": tensorrt_version()}


def engine_problems(manifest: dict[str, Any]) -> list[str]:
    """The GPU model, compute capability and TensorRT version the engine was built with, against this machine's."""
    problems: list[str] = []
    here = gpu_info()
    built_gpu = manifest.get("gpu") or {}
    if here is None:
        problems.append(f"gpu: engine built on {built_gpu.get('name')} (sm {built_gpu.get('compute_capability')}), no CUDA GPU here")
    else:
        if here["name"] != built_gpu.get("name"):
            problems.append(f"gpu: engine built on {built_gpu.get('name')}, running on {here['name']}")
        if here["compute_capability"] != built_gpu.get("compute_capability"):
            problems.append(f"compute capability: engine {built_gpu.get('compute_capability')}, GPU {here['compute_capability']}")
    built_trt = (manifest.get("versions") or {}).get("tensorrt")
    if tensorrt_version() != built_trt:
        problems.append(f"tensorrt: engine built with {built_trt}, installed {tensorrt_version()}")
    return problems


__all__ = ["EXTRA_HINT", "engine_problems", "import_torch_tensorrt", "library_versions", "load", "tensorrt_version",
           "write_artifact"]
