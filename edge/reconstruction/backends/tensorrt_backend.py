"""LRN / STIR on TensorRT through Torch-TensorRT (CUDA only; optional extra ``spike-edge[gpu]``).

Engines are built explicitly by ``spike-train export --format tensorrt`` on the GPU that will run
them (``build_engine``) and loaded from an engine directory (``load_engine``), never built on the
fly. The saved artifact is Torch-TensorRT's ExportedProgram (``torch_tensorrt.save`` /
``torch.export.load(...).module()``), a graph module whose TensorRT subgraphs are serialised
engines; inputs are prepared on the GPU exactly as for the torch backend (unpack, voxelise).

Written against the documented Torch-TensorRT 2.x API (``compile(ir="dynamo", arg_inputs=...)``,
``save``); not exercised on this project's CPU-only CI.
"""

from __future__ import annotations

from pathlib import Path

from edge.reconstruction.backends.base import BackendUnavailable, Device
from edge.reconstruction.models import ModelName, Precision
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


def build_engine(module, example_shape: tuple[int, ...], precision: Precision, path: Path) -> None:
    """Compile ``module`` for one fixed input shape and save it to ``path`` (ExportedProgram)."""
    torch_tensorrt = import_torch_tensorrt()
    import torch

    dtype = torch.float16 if precision is Precision.FP16 else torch.float32
    module = module.eval().cuda().to(dtype)
    inputs = [torch.zeros(example_shape, dtype=dtype, device="cuda")]
    try:
        compiled = torch_tensorrt.compile(module, ir="dynamo", arg_inputs=inputs, use_explicit_typing=True)
        torch_tensorrt.save(compiled, str(path), arg_inputs=inputs)
    except TypeError:  # Torch-TensorRT < 2.5 spells the arguments differently
        compiled = torch_tensorrt.compile(module, ir="dynamo", inputs=inputs, enabled_precisions={dtype})
        torch_tensorrt.save(compiled, str(path), inputs=inputs)


def load_engine(path: Path, model: ModelName, geometry: Geometry, window_planes: int, weights_id: str,
                precision: Precision):
    """A ``TorchReconstructor`` running the saved TensorRT program on the GPU."""
    torch_tensorrt = import_torch_tensorrt()  # registers the TensorRT runtime ops before loading
    import torch

    from edge.reconstruction.backends.torch_backend import TorchReconstructor

    del torch_tensorrt
    program = torch.export.load(str(path)).module()
    return TorchReconstructor(program, model, geometry, window_planes, weights_id, Device.CUDA, precision,
                              channels_last=False, cuda_graphs=False, convert_module=False,
                              label=f"tensorrt-{precision.value}")


__all__ = ["EXTRA_HINT", "build_engine", "import_torch_tensorrt", "load_engine", "tensorrt_version"]
