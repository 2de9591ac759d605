"""LRN / STIR on ONNX Runtime (CUDA execution provider when present, else CPU).

The ONNX graph holds the network only; its input is the network input (LRN: voxels ``(B, 50, H, W)``,
STIR: planes ``(B, T, H, W)``), prepared on the host as the method table says
(``edge.reconstruction.inputs``; LRN voxels are counted straight from the packed bytes). Graph
optimisations are at ``ORT_ENABLE_ALL`` (convolution layout transforms, fusions); intra-op threads
default to torch's thread count so one setting (``--threads``) governs both libraries.

A session is made from an ``.onnx`` file (an engine directory, ``load``) or from a network exported
in memory (``build``), with the exporter the method table names for the network (LRN: the
TorchScript-based one, under a second; STIR: the dynamo exporter, whose graph runs about twice as
fast in ONNX Runtime). Running needs no torch; exporting does.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.reconstruction.backends.base import BackendUnavailable, Device, check_windows
from edge.reconstruction.engines import distribution_version
from edge.reconstruction.methods import Method, learned_spec
from edge.reconstruction.models import ONNX_MIN_OPSET, ONNX_OPSET, Precision
from firmware_io.contract import Geometry


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable("ONNX Runtime is not installed: pip install 'spike-edge[onnx]'") from None
    return onnxruntime


def make_session(model: str | Path | bytes, device: Device):
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = 0  # ONNX Runtime's default
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if device is Device.CUDA:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable("this ONNX Runtime has no CUDA provider: pip install onnxruntime-gpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=providers)


def export_onnx(module, example, path_or_buffer, *, opset: int = ONNX_OPSET, dynamo: bool = True) -> None:
    """Export ``module`` (input ``x``, output ``y``) with a fixed input shape."""
    import torch

    module = module.eval()
    with torch.no_grad():
        if dynamo:
            program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                        input_names=["x"], output_names=["y"], verbose=False)
            program.optimize()
            if isinstance(path_or_buffer, io.BytesIO):
                path_or_buffer.write(program.model_proto.SerializeToString())
            else:
                program.save(str(path_or_buffer))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
                torch.onnx.export(module, (example,), path_or_buffer, dynamo=False, opset_version=opset,
                                  input_names=["x"], output_names=["y"])


@dataclass
class OnnxReconstructor:
    session: Any
    method: Method
    geometry: Geometry
    window_planes: int
    weights_id: str
    device: Device = Device.CPU
    precision: Precision = Precision.FP32

    def __post_init__(self) -> None:
        self._prepare = learned_spec(self.method).network.prepare_numpy
        provider = self.session.get_providers()[0]
        self.backend = f"onnxruntime-{provider}"
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self._np_dtype = np.float16 if self.precision is Precision.FP16 else np.float32

    def run_input(self, x: np.ndarray) -> np.ndarray:
        """Network input ``(B, C, H, W)`` -> float32 images ``(B, H, W)``."""
        x = x.astype(self._np_dtype, copy=False)
        if self._batch is None or self._batch == len(x):
            return self.session.run(None, {self._input_name: x})[0][:, 0].astype(np.float32)
        outs = [self.session.run(None, {self._input_name: x[i : i + 1]})[0][:, 0] for i in range(len(x))]
        return np.concatenate(outs).astype(np.float32)

    def reconstruct(self, packed_windows: np.ndarray) -> np.ndarray:
        windows = check_windows(packed_windows, self.window_planes, self.geometry)
        return self.run_input(self._prepare(windows, self.geometry))


# -- the backend's functions (``base.NetworkBackend``) ---------------------------------------------


def build(loaded, geometry: Geometry, device: Device, *, precision: Precision | None = None,
          compile: bool = False) -> OnnxReconstructor:
    """The loaded network exported in memory (fp32) and run in an ONNX Runtime session."""
    import torch

    if precision not in (None, Precision.FP32):
        raise ValueError(f"ONNX Runtime runs weights in fp32 (in-memory export), not {precision.value}; export an fp16 "
                         "engine with spike-train export, or run bf16 on the torch backend (ONNX Runtime has no bf16 "
                         "convolutions)")
    if compile:
        raise ValueError("torch.compile applies to the torch backend, not to ONNX Runtime")
    network = loaded.network
    shape = network.input_shape(loaded.window_planes, geometry)
    buffer = io.BytesIO()
    export_onnx(loaded.model, torch.zeros(shape), buffer, dynamo=network.onnx_dynamo)
    session = make_session(buffer.getvalue(), device)
    return OnnxReconstructor(session, loaded.method, geometry, loaded.window_planes, loaded.weights_id, device,
                             Precision.FP32)


def load(artifact: Path, method: Method, geometry: Geometry, window_planes: int, weights_id: str, device: Device,
         precision: Precision) -> OnnxReconstructor:
    return OnnxReconstructor(make_session(artifact, device), method, geometry, window_planes, weights_id, device,
                             precision)


def write_artifact(net, input_shape: tuple[int, ...], precision: Precision, path: Path, *, opset: int) -> dict[str, Any]:
    """Export ``net`` (halved for fp16) with the dynamo exporter at ``opset``."""
    import torch

    if opset < ONNX_MIN_OPSET:
        raise ValueError(f"ONNX export needs opset >= {ONNX_MIN_OPSET} (GridSample), got {opset}")
    dtype = precision.torch_dtype  # fp32 or fp16: export_engine refuses the precisions this format has not
    export_onnx(net.to(dtype), torch.zeros(input_shape, dtype=dtype), path, opset=opset, dynamo=True)
    return {"opset": opset}


def library_versions() -> dict[str, str | None]:
    return {"onnx": distribution_version("onnx"), "onnxruntime": distribution_version("onnxruntime", "onnxruntime-gpu")}


def engine_problems(manifest: dict[str, Any]) -> list[str]:
    return []  # an ONNX graph runs on any ONNX Runtime that has its opset


__all__ = ["OnnxReconstructor", "build", "engine_problems", "export_onnx", "library_versions", "load",
           "make_session", "write_artifact"]
