"""LRN / STIR on ONNX Runtime (CUDA execution provider when present, else CPU).

The ONNX graph holds the network only; its input is the network input (LRN: voxels ``(B, 50, H, W)``,
STIR: planes ``(B, T, H, W)``), prepared on the host by ``edge.reconstruction.backends.networks.prepare_numpy``
(LRN voxels are counted straight from the packed bytes). Graph optimisations are at
``ORT_ENABLE_ALL`` (convolution layout transforms, fusions); intra-op threads default to torch's
thread count so one setting (``--threads``) governs both libraries.

A session is made from an ``.onnx`` file (an engine directory) or from a network exported in memory
(``from_network``: the TorchScript-based exporter for LRN, under a second; the dynamo exporter for
STIR, whose graph runs about twice as fast in ONNX Runtime as the TorchScript-based export).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.reconstruction.backends.base import BackendUnavailable, Device, check_windows
from edge.reconstruction.backends.networks import prepare_numpy
from edge.reconstruction.methods import Method
from edge.reconstruction.models import ModelName, Precision
from firmware_io.contract import Geometry

DEFAULT_OPSET = 18


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable("ONNX Runtime is not installed: pip install 'spike-edge[onnx]'") from None
    return onnxruntime


def make_session(model: str | Path | bytes, device: Device, threads: int | None = None):
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is None:
        try:
            import torch

            threads = torch.get_num_threads()
        except ImportError:
            threads = 0
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


def export_onnx(module, example, path_or_buffer, *, opset: int = DEFAULT_OPSET, dynamo: bool = True) -> None:
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


def network_input_shape(model: ModelName, window_planes: int, geometry: Geometry, batch: int = 1) -> tuple[int, ...]:
    channels = window_planes // 4 if model is ModelName.LRN else window_planes
    return (batch, channels, geometry.height, geometry.width)


@dataclass
class OnnxReconstructor:
    session: Any
    model: ModelName
    geometry: Geometry
    window_planes: int
    weights_id: str
    device: Device = Device.CPU
    precision: Precision = Precision.FP32

    def __post_init__(self) -> None:
        self.method = Method(self.model.value)
        provider = self.session.get_providers()[0]
        self.backend = f"onnxruntime-{provider}"
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self._np_dtype = np.float16 if self.precision is Precision.FP16 else np.float32

    @classmethod
    def from_network(cls, loaded, geometry: Geometry, device: Device, *, precision: Precision = Precision.FP32,
                     threads: int | None = None) -> "OnnxReconstructor":
        import torch

        if precision is not Precision.FP32:
            raise ValueError("in-memory ONNX export is fp32; export an fp16 engine with spike-train export")
        shape = network_input_shape(loaded.name, loaded.window_planes, geometry)
        buffer = io.BytesIO()
        export_onnx(loaded.model, torch.zeros(shape), buffer, dynamo=loaded.name is ModelName.STIR,
                    opset=DEFAULT_OPSET if loaded.name is ModelName.STIR else 17)
        session = make_session(buffer.getvalue(), device, threads)
        return cls(session, loaded.name, geometry, loaded.window_planes, loaded.weights_id, device, precision)

    def run_input(self, x: np.ndarray) -> np.ndarray:
        """Network input ``(B, C, H, W)`` -> float32 images ``(B, H, W)``."""
        x = x.astype(self._np_dtype, copy=False)
        if self._batch is None or self._batch == len(x):
            return self.session.run(None, {self._input_name: x})[0][:, 0].astype(np.float32)
        outs = [self.session.run(None, {self._input_name: x[i : i + 1]})[0][:, 0] for i in range(len(x))]
        return np.concatenate(outs).astype(np.float32)

    def reconstruct(self, packed_windows: np.ndarray) -> np.ndarray:
        windows = check_windows(packed_windows, self.window_planes, self.geometry)
        return self.run_input(prepare_numpy(self.model, windows, self.geometry))


__all__ = ["OnnxReconstructor", "export_onnx", "make_session", "network_input_shape"]
