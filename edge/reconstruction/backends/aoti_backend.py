"""LRN / STIR compiled ahead of time by AOTInductor: ``.pt2`` packages for the CPU and CUDA, on core torch.

``write_artifact`` exports a method's whole forward, not only its network
(``edge.reconstruction.torch_forward.PackedForward``: packed uint8 windows ``(B, T, plane_bytes)`` in,
bits unpacked, input prepared as the method table says, network, float32 images ``(B, H, W)`` out)
with ``torch.export``, the batch dynamic from 1 to ``MAX_BATCH`` and the window and geometry fixed,
and compiles it with ``torch._inductor.aoti_compile_and_package`` into one package for the device it
is built on: fp32 on the CPU, fp32 or fp16 on CUDA (any ``Precision`` with a torch dtype,
``torch_forward.torch_dtype``). ``load`` opens the package (``torch._inductor.aoti_load_package``);
the reconstructor hands it the packed bytes as they are and gets the images back, with no Python
between the operations; a batch over ``MAX_BATCH`` runs in slices. A CUDA package also takes windows
already on its GPU (``base.GpuReconstructor``: the live worker uploads each span of planes once).

A package is native code built against one torch: it runs only with the exact torch version that
compiled it, on its device kind, a CPU package only where torch picks the same CPU instruction set
(``torch.backends.cpu.get_cpu_capability()``) and a CUDA package only on a GPU of the same compute
capability. The manifest records all four (``versions.torch``, ``device``, ``cpu_capability``,
``gpu``); ``engine_problems`` compares them with this machine, and the registry compares ``device``
with the requested one. The package carries, in its own metadata, the method, window, geometry,
precision and weights id it was compiled from; ``load`` refuses a package whose metadata differs
from its manifest.

Design: the same inductor code is what the torch backend's opt-in ``torch.compile`` produces, but
that compiles at every start (minutes on two cores) and needs a compiler on the machine; a package
is compiled once by ``spike-train export`` and loads in milliseconds. TorchScript and ONNX hold the
network only (unpacking stays in Python / numpy) and run on any torch / ONNX Runtime; a package
covers the whole forward at the price of the tie to one torch build. CPU packages are compiled with
inductor's weight freezing (constant weights, prepacked for oneDNN's convolutions, as torch's
documentation advises for AOTInductor on CPUs) and with kernels that read the thread count at run
time (``cpp.dynamic_threads``), so ``--threads`` applies as for the torch backend; without it
inductor bakes in the exporting machine's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.reconstruction.backends.base import BackendUnavailable, Device, check_windows
from edge.reconstruction.engines import EngineMismatch, gpu_info
from edge.reconstruction.methods import Method
from edge.reconstruction.models import Precision
from edge.reconstruction.torch_forward import PackedForward, check_device_windows
from firmware_io.contract import Geometry

MAX_BATCH = 64  # the largest batch a package takes in one call (its dynamic batch dimension's bound)
EXAMPLE_BATCH = 2  # export traces batch 2: torch.export specialises a dimension traced at size 1


def _require_device(device: Device) -> None:
    if device is Device.CUDA and not torch.cuda.is_available():
        raise BackendUnavailable("a CUDA AOTInductor package needs a CUDA GPU, and torch sees none here")


def _identity(method: Method, geometry: Geometry, window_planes: int, precision: Precision,
              weights_id: str) -> dict[str, str]:
    """What a package was compiled from, as stored in its metadata (strings only) and checked on load."""
    return {"model": method.value, "window_planes": str(window_planes), "height": str(geometry.height),
            "width": str(geometry.width), "precision": precision.value, "weights_id": weights_id}


@dataclass
class AotiReconstructor:
    program: Any  # the loaded package: packed uint8 tensor (B, T, plane_bytes) -> float32 (B, H, W)
    method: Method
    geometry: Geometry
    window_planes: int
    weights_id: str
    device: Device
    precision: Precision
    max_batch: int = MAX_BATCH

    def __post_init__(self) -> None:
        self.backend = f"aoti-{self.device.value}-{self.precision.value}"
        self._torch_device = torch.device(self.device.value)

    def reconstruct(self, packed_windows: np.ndarray) -> np.ndarray:
        windows = check_windows(packed_windows, self.window_planes, self.geometry)
        # torch wants writable memory; windows may be read-only views of a memory-mapped file
        return self._run(torch.from_numpy(np.require(windows, requirements=("C", "W"))).to(self._torch_device))

    def _run(self, packed: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            images = [self.program(part.contiguous()) for part in packed.split(self.max_batch)]
        return torch.cat(images).cpu().numpy()

    # -- windows already on the GPU (``base.GpuReconstructor``: the live worker's CUDA path) --------

    @property
    def window_device(self) -> torch.device | None:
        """The device ``reconstruct_device`` takes windows on (a CUDA package's), or ``None``: host windows only."""
        return self._torch_device if self.device is Device.CUDA else None

    def reconstruct_device(self, windows: torch.Tensor) -> np.ndarray:
        """Packed windows already on ``window_device`` (uint8 ``(B, T, plane_bytes)``, any strides, e.g.
        overlapping views of one uploaded span) -> float32 images ``(B, H, W)`` on the host."""
        return self._run(check_device_windows(windows, self.window_planes, self.geometry, self.window_device))

    def warm_up(self, batch_sizes) -> None:
        """One call of a CUDA package now (its kernels load on the first call; every batch size runs the same
        kernels, so ``batch_sizes`` need no call each); nothing to do on the CPU."""
        if self.device is Device.CUDA:
            self._run(torch.zeros((1, self.window_planes, self.geometry.plane_bytes), dtype=torch.uint8,
                                  device=self._torch_device))


# -- the backend's functions (``base.NetworkBackend``) ---------------------------------------------


def write_artifact(loaded, geometry: Geometry, precision: Precision, device: Device, path: Path, *,
                   opset: int) -> dict[str, Any]:
    """Export and compile ``loaded``'s whole forward for ``device`` into the package ``path`` (``.pt2``);
    ``opset`` is ONNX's and does not apply."""
    _require_device(device)
    whole = PackedForward(loaded.model.eval(), loaded.method, geometry, precision.torch_dtype)
    whole = whole.to(device.value).eval()
    example = torch.zeros((EXAMPLE_BATCH, loaded.window_planes, geometry.plane_bytes), dtype=torch.uint8,
                          device=device.value)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(whole, (example,), dynamic_shapes=({0: batch},))
    metadata = {**_identity(loaded.method, geometry, loaded.window_planes, precision, loaded.weights_id),
                "max_batch": str(MAX_BATCH)}
    configs: dict[str, Any] = {"aot_inductor.metadata": metadata}
    if device is Device.CPU:
        configs.update({"cpp.dynamic_threads": True, "freezing": True})
    from torch._inductor import aoti_compile_and_package

    aoti_compile_and_package(program, package_path=str(path), inductor_configs=configs)
    return {
        "input": {"name": "packed", "shape": [1, loaded.window_planes, geometry.plane_bytes], "dtype": "uint8",
                  "max_batch": MAX_BATCH},
        "device": device.value,
        "cpu_capability": torch.backends.cpu.get_cpu_capability() if device is Device.CPU else None,
    }


def load(artifact: Path, method: Method, geometry: Geometry, window_planes: int, weights_id: str, device: Device,
         precision: Precision) -> AotiReconstructor:
    """The package at ``artifact``, after checking that it holds what its manifest says."""
    from torch._inductor import aoti_load_package

    _require_device(device)
    program = aoti_load_package(str(artifact))
    metadata = program.get_metadata()
    expected = _identity(method, geometry, window_planes, precision, weights_id)
    differences = [f"{key}: manifest {value}, package {metadata.get(key)}" for key, value in expected.items()
                   if metadata.get(key) != value]
    if differences:
        raise EngineMismatch(f"{artifact} does not hold what its manifest says: " + "; ".join(differences))
    return AotiReconstructor(program, method, geometry, window_planes, weights_id, device, precision,
                             max_batch=int(metadata["max_batch"]))


def library_versions() -> dict[str, str | None]:
    return {}  # torch's own version is in every manifest, and is the one this format depends on


def engine_problems(manifest: dict[str, Any]) -> list[str]:
    """The torch build, CPU instruction set or GPU compute capability the package was compiled for, against
    this machine's (a package is native code for exactly those)."""
    problems: list[str] = []
    built_torch = (manifest.get("versions") or {}).get("torch")
    if built_torch != torch.__version__:
        problems.append(f"torch: AOTInductor packages run only on the torch that compiled them; built with "
                        f"{built_torch}, installed {torch.__version__} (export it again here)")
    if manifest.get("device") == Device.CPU.value:
        here = torch.backends.cpu.get_cpu_capability()
        if manifest.get("cpu_capability") != here:
            problems.append(f"cpu capability: package compiled for {manifest.get('cpu_capability')}, this CPU "
                            f"runs {here} (export it again on this kind of CPU)")
    elif manifest.get("device") == Device.CUDA.value:
        built_gpu = manifest.get("gpu") or {}
        here_gpu = gpu_info()
        if here_gpu is None:
            problems.append(f"gpu: package compiled for CUDA on {built_gpu.get('name')} "
                            f"(sm {built_gpu.get('compute_capability')}), torch sees no CUDA GPU here")
        elif here_gpu["compute_capability"] != built_gpu.get("compute_capability"):
            problems.append(f"compute capability: package {built_gpu.get('compute_capability')}, "
                            f"GPU {here_gpu['compute_capability']} ({here_gpu['name']})")
    else:
        problems.append(f"device: the manifest names no device the package was compiled for "
                        f"(got {manifest.get('device')!r}; expected cpu or cuda)")
    return problems


__all__ = ["AotiReconstructor", "MAX_BATCH", "engine_problems", "library_versions", "load", "write_artifact"]
