"""LRN / STIR on ONNX Runtime (CUDA execution provider when present, else CPU).

The ONNX graph holds the network only; its input is the network input (LRN: voxels ``(B, 50, H, W)``,
STIR: planes ``(B, T, H, W)``), prepared on the host as the method table says
(``edge.reconstruction.inputs``; LRN voxels are counted straight from the packed bytes). Graph
optimisations are at ``ORT_ENABLE_ALL`` (convolution layout transforms, fusions); intra-op threads
default to torch's thread count so one setting (``--threads``) governs both libraries.

A session is made from an ``.onnx`` file (an engine directory, ``load``) or from a network exported
in memory (``build``), with the exporter the method table names for the network (LRN: the
TorchScript-based one, under a second; STIR: the dynamo exporter, whose graph runs about twice as
fast in ONNX Runtime). Running needs no torch; exporting does. A CUDA request is checked against
the installed ONNX Runtime's providers before anything is exported (an export takes 20-60 s).

On the CUDA provider, where torch with CUDA is present, the input is not prepared on the host: the
packed bytes go to the GPU (8x less traffic than float planes), are prepared there by the same
torch functions as the torch backend's (``prepare_torch``), and the device tensor is bound to the
session's input with an ``IOBinding`` (its output is allocated by ONNX Runtime on the device and
copied back). Without torch it prepares on the host, as on the CPU.
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


def check_provider(device: Device) -> list[str]:
    """The execution providers for ``device``; ``BackendUnavailable`` when this ONNX Runtime cannot run there."""
    ort = _ort()
    if device is Device.CUDA:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable(f"this ONNX Runtime has no CUDA provider (it has "
                                     f"{', '.join(ort.get_available_providers())}): pip install onnxruntime-gpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(model: str | Path | bytes, device: Device):
    ort = _ort()
    providers = check_provider(device)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = 0  # ONNX Runtime's default
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
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
        network = learned_spec(self.method).network
        self._prepare = network.prepare_numpy
        provider = self.session.get_providers()[0]
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._output_name = self.session.get_outputs()[0].name
        self._batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self._np_dtype = np.float16 if self.precision is Precision.FP16 else np.float32
        self._torch = _torch_cuda() if provider == "CUDAExecutionProvider" else None
        self._prepare_torch = network.prepare_torch
        self.backend = f"onnxruntime-{provider}" + ("-iobinding" if self._torch is not None else "")

    def run_input(self, x: np.ndarray) -> np.ndarray:
        """Network input ``(B, C, H, W)`` -> float32 images ``(B, H, W)``."""
        x = x.astype(self._np_dtype, copy=False)
        if self._batch is None or self._batch == len(x):
            return self.session.run(None, {self._input_name: x})[0][:, 0].astype(np.float32)
        outs = [self.session.run(None, {self._input_name: x[i : i + 1]})[0][:, 0] for i in range(len(x))]
        return np.concatenate(outs).astype(np.float32)

    def reconstruct(self, packed_windows: np.ndarray) -> np.ndarray:
        windows = check_windows(packed_windows, self.window_planes, self.geometry)
        if self._torch is not None:
            return self._run_bound(windows)
        return self.run_input(self._prepare(windows, self.geometry))

    def _run_bound(self, windows: np.ndarray) -> np.ndarray:
        """CUDA: packed bytes up, prepared on the GPU, bound as the session's input (module docstring)."""
        torch = self._torch
        device = torch.device("cuda", torch.cuda.current_device())
        packed = torch.from_numpy(np.require(windows, requirements=("C", "W"))).to(device)
        dtype = torch.float16 if self.precision is Precision.FP16 else torch.float32
        x = self._prepare_torch(packed, self.geometry).to(dtype).contiguous()
        torch.cuda.current_stream().synchronize()  # x is written before ONNX Runtime's stream reads it
        step = len(x) if self._batch is None else self._batch
        outs = []
        for i in range(0, len(x), step):
            part = x[i: i + step]
            binding = self.session.io_binding()
            binding.bind_input(self._input_name, "cuda", device.index, self._np_dtype, tuple(part.shape),
                               part.data_ptr())
            binding.bind_output(self._output_name, "cuda", device.index)
            self.session.run_with_iobinding(binding)
            outs.append(binding.copy_outputs_to_cpu()[0][:, 0])
        return np.concatenate(outs).astype(np.float32)


def _torch_cuda():
    """torch, where it is importable and sees a GPU (the device-side input path), else ``None``."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


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
    check_provider(device)  # before the export: a machine without the CUDA provider fails in milliseconds
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


def write_artifact(loaded, geometry: Geometry, precision: Precision, device: Device, path: Path, *,
                   opset: int) -> dict[str, Any]:
    """Export the network (halved for fp16) with the dynamo exporter at ``opset``; a graph runs on any device."""
    import torch

    if opset < ONNX_MIN_OPSET:
        raise ValueError(f"ONNX export needs opset >= {ONNX_MIN_OPSET} (GridSample), got {opset}")
    dtype = precision.torch_dtype  # fp32 or fp16: export_engine refuses the precisions this format has not
    shape = loaded.network.input_shape(loaded.window_planes, geometry)
    export_onnx(loaded.model.eval().to(dtype), torch.zeros(shape, dtype=dtype), path, opset=opset, dynamo=True)
    return {"opset": opset}


def library_versions() -> dict[str, str | None]:
    return {"onnx": distribution_version("onnx"), "onnxruntime": distribution_version("onnxruntime", "onnxruntime-gpu")}


def engine_problems(manifest: dict[str, Any]) -> list[str]:
    return []  # an ONNX graph runs on any ONNX Runtime that has its opset


__all__ = ["OnnxReconstructor", "build", "check_provider", "engine_problems", "export_onnx", "library_versions",
           "load", "make_session", "write_artifact"]
