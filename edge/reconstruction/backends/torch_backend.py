"""LRN / STIR on torch: CPU fp32 / bf16 (channels_last, inference mode), CUDA fp16 / bf16 (channels_last, CUDA graphs).

``TorchReconstructor.reconstruct(packed uint8 (B, T, plane_bytes)) -> float32 (B, H, W)``: the packed
bytes go to the device as they are (8x less traffic than unpacked planes), are prepared there as the
method table says (``edge.reconstruction.inputs``: unpacked, voxelised for LRN) and fed to the
network (``edge.reconstruction.torch_forward.forward_packed``, the computation the AOTInductor
engines compile); STIR pads and crops inside its ``forward``.

On CUDA the whole chain (unpack, voxelise, network) for a given batch size is captured once into a
CUDA graph and replayed: one host-to-device copy into a static input buffer, one replay, one
device-to-host copy. ``warm_up(batch_sizes)`` captures them ahead (the daemon: every batch size it
can use, at start), all in one memory pool, with ``cudnn.benchmark`` on before the first capture.
``reconstruct_device`` takes windows that are already on the GPU (the live worker uploads each span
of ring planes once and cuts the overlapping windows there): a device-to-device copy into the static
input, then the same replay. Network input is unpacked and voxelised straight into the compute dtype
(``Precision.torch_dtype``; counts 0..4 are exact in fp16 and bf16); STIR's warps run in fp32 (see
``edge.reconstruction.models.stir``). The output is returned as float32.

bf16 runs on the CPU too: oneDNN has bf16 convolutions that use AVX512-BF16 and AMX where the CPU
has them (``edge.reconstruction.cpu_features``), and still runs, slowly, where it has not. fp16 on
the CPU is refused (no fast fp16 convolutions on CPUs).

Design: ``torch.compile`` (inductor with weight freezing) is a further ~1.4-2x on the CPU for STIR
but compiles for one to two minutes on two cores, so it is opt-in (``compile=True``, used by
``spike-edge bench reconstruct --compile``) rather than a start-up cost for every user.

Its artifact is TorchScript (``model.ts``): traced on the CPU in fp32 and bf16, on a GPU in fp16.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.reconstruction.backends.base import BackendUnavailable, Device, check_windows
from edge.reconstruction.methods import Method, learned_spec
from edge.reconstruction.models import Precision
from edge.reconstruction.torch_forward import check_device_windows, forward_packed
from firmware_io.contract import Geometry

CPU_PRECISIONS = (Precision.FP32, Precision.BF16)  # what the CPU runs; CUDA runs every ``Precision``


@dataclass
class _Graph:
    graph: Any
    static_in: torch.Tensor
    static_out: torch.Tensor


@dataclass
class TorchReconstructor:
    module: Any  # an nn.Module or a TorchScript module taking the network input
    method: Method
    geometry: Geometry
    window_planes: int
    weights_id: str
    device: Device = Device.CPU
    precision: Precision = Precision.FP32
    channels_last: bool = True
    cuda_graphs: bool = True
    compiled: bool = False
    convert_module: bool = True  # False for prebuilt modules (TorchScript / TensorRT), used as loaded
    label: str | None = None  # backend string override, e.g. "tensorrt-fp16"
    _graphs: dict[int, _Graph] = field(default_factory=dict, init=False, repr=False)
    _pinned: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    _pool: Any = field(default=None, init=False, repr=False)  # the graphs' shared memory pool

    def __post_init__(self) -> None:
        self._prepare = learned_spec(self.method).network.prepare_torch
        self._torch_device = torch.device("cuda" if self.device is Device.CUDA else "cpu")
        if self.device is Device.CPU and self.precision not in CPU_PRECISIONS:
            raise ValueError(f"the torch CPU backend runs {', '.join(p.value for p in CPU_PRECISIONS)}, not "
                             f"{self.precision.value} (fp16 convolutions are slow on CPUs)")
        self._dtype = self.precision.torch_dtype
        if self.convert_module:
            self.module = self.module.eval().to(self._torch_device, dtype=self._dtype)
            if self.channels_last:
                self.module = self.module.to(memory_format=torch.channels_last)
        self.backend = self.label or (
            f"torch-{self.device.value}-{self.precision.value}" + ("-compiled" if self.compiled else ""))

    # -- the computation ---------------------------------------------------------------------

    def _forward(self, packed: torch.Tensor) -> torch.Tensor:
        return forward_packed(self.module, self._prepare, packed, self.geometry, self._dtype,
                              channels_last=self.channels_last)

    def reconstruct(self, packed_windows: np.ndarray) -> np.ndarray:
        windows = check_windows(packed_windows, self.window_planes, self.geometry)
        if self.device is Device.CUDA and self.cuda_graphs:
            return self._reconstruct_graph(windows)
        # torch wants writable memory; windows may be read-only views of a memory-mapped file
        packed = torch.from_numpy(np.require(windows, requirements=("C", "W"))).to(self._torch_device)
        with torch.inference_mode():
            return self._forward(packed).cpu().numpy()

    # -- windows already on the device (the live worker's CUDA path) ------------------------------

    @property
    def window_device(self) -> torch.device | None:
        """The device ``reconstruct_device`` takes windows on (CUDA), or ``None``: host windows only."""
        return self._torch_device if self.device is Device.CUDA else None

    def reconstruct_device(self, windows: torch.Tensor) -> np.ndarray:
        """Packed windows already on ``window_device`` (uint8 ``(B, T, plane_bytes)``, any strides, e.g.
        overlapping views of one uploaded span) -> float32 images ``(B, H, W)`` on the host."""
        check_device_windows(windows, self.window_planes, self.geometry, self.window_device)
        if self.cuda_graphs:
            entry = self._graph_for(len(windows))
            entry.static_in.copy_(windows)  # device to device: the windows' overlap is expanded here
            entry.graph.replay()
            return entry.static_out.cpu().numpy()
        with torch.inference_mode():
            return self._forward(windows.contiguous()).cpu().numpy()

    # -- CUDA graphs ---------------------------------------------------------------------------

    def warm_up(self, batch_sizes) -> None:
        """Capture the CUDA graph of every batch size in ``batch_sizes`` now (the daemon does this at start
        for 1..max batch, so no capture happens mid-stream); nothing to do on the CPU or without graphs."""
        if self.device is Device.CUDA and self.cuda_graphs:
            for batch in sorted(set(batch_sizes)):
                self._graph_for(batch)

    def _capture(self, batch: int) -> _Graph:
        # cuDNN picks its algorithms in the warm-up runs below; benchmark mode must be on before the
        # first capture, or a graph keeps the heuristic's choice for good
        torch.backends.cudnn.benchmark = True
        if self._pool is None:  # one memory pool for every batch size's graph (they never run concurrently)
            self._pool = torch.cuda.graph_pool_handle()
        static_in = torch.zeros((batch, self.window_planes, self.geometry.plane_bytes), dtype=torch.uint8,
                                device=self._torch_device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode():
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up: cuDNN algorithm selection and allocator pools
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                static_out = self._forward(static_in)
        return _Graph(graph, static_in, static_out)

    def _graph_for(self, batch: int) -> _Graph:
        entry = self._graphs.get(batch)
        if entry is None:
            entry = self._graphs[batch] = self._capture(batch)
            self._pinned[batch] = torch.empty(entry.static_in.shape, dtype=torch.uint8).pin_memory()
        return entry

    def _reconstruct_graph(self, windows: np.ndarray) -> np.ndarray:
        entry = self._graph_for(len(windows))
        pinned = self._pinned[len(windows)]
        pinned.numpy()[...] = windows
        entry.static_in.copy_(pinned, non_blocking=True)
        entry.graph.replay()
        return entry.static_out.cpu().numpy()  # .cpu() synchronises the stream


# -- the backend's functions (``base.NetworkBackend``) ---------------------------------------------


def build(loaded, geometry: Geometry, device: Device, *, precision: Precision | None = None,
          compile: bool = False) -> TorchReconstructor:
    """The loaded network on ``device``: fp16 on CUDA and fp32 on the CPU unless ``precision`` says."""
    if precision is None:
        precision = Precision.FP16 if device is Device.CUDA else Precision.FP32
    rec = TorchReconstructor(loaded.model, loaded.method, geometry, loaded.window_planes, loaded.weights_id, device,
                             precision, compiled=compile)
    if compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        rec.module = torch.compile(rec.module)
    return rec


def load(artifact: Path, method: Method, geometry: Geometry, window_planes: int, weights_id: str, device: Device,
         precision: Precision) -> TorchReconstructor:
    """A TorchScript artifact, run as loaded (no channels_last conversion)."""
    if device is Device.CUDA and not torch.cuda.is_available():
        raise BackendUnavailable("--device cuda was requested but torch sees no CUDA GPU here")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(artifact), map_location="cuda" if device is Device.CUDA else "cpu").eval()
    return TorchReconstructor(module, method, geometry, window_planes, weights_id, device, precision,
                              channels_last=False, convert_module=False,
                              label=f"torchscript-{device.value}-{precision.value}")


def write_artifact(loaded, geometry: Geometry, precision: Precision, device: Device, path: Path, *,
                   opset: int) -> dict[str, Any]:
    """Trace the network to TorchScript on ``device`` (fp16: a GPU; bf16: the CPU); ``opset`` is ONNX's and does not apply."""
    if device is Device.CUDA and not torch.cuda.is_available():
        raise ValueError(f"a {precision.value} TorchScript artifact for cuda is traced on a GPU; none is present")
    dtype = precision.torch_dtype
    net = loaded.model.eval().to(device.value, dtype)
    shape = loaded.network.input_shape(loaded.window_planes, geometry)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated but still the portable format
        traced = torch.jit.trace(net, torch.zeros(shape, dtype=dtype, device=device.value), check_trace=False)
        torch.jit.save(traced, str(path))
    return {}


def library_versions() -> dict[str, str | None]:
    return {}  # torch's own version is in every manifest


def engine_problems(manifest: dict[str, Any]) -> list[str]:
    return []  # TorchScript runs on any machine with torch (fp16 and CUDA are checked by the registry)


__all__ = ["CPU_PRECISIONS", "TorchReconstructor", "build", "engine_problems", "library_versions", "load",
           "write_artifact"]
