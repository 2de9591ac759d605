"""The backend registry: one entry per backend, the one place where a backend is chosen, built or loaded.

Each ``BackendEntry`` says what its backend needs (the modules that must import and the extra that
installs them, the devices it runs on), whether it runs the classical methods or the networks,
whether it runs prebuilt engine directories only, which artifact format it writes and loads, and
where ``auto`` puts it. Its module (``implementation``, imported on first use) does the work: the
classical one ``build(method, geometry, window_planes)``; a network one the functions of
``base.NetworkBackend`` (build from loaded weights, load an artifact, write one). Adding a backend is
its module plus one entry here (with its name in ``BackendName`` and, if it has an artifact format,
that format in ``ExportFormat``; the tests check that every name has its entry).

``auto`` takes the first entry, in table order, that runs the networks from weights and is installed
here, except that an entry measured fastest for a (method, device) pair (``auto_first_for``) goes
first there. The table order and that exception come from measurements on the project's machines
(``spike-edge bench reconstruct`` reproduces them): on CUDA torch fp16 with CUDA graphs; on the CPU
ONNX Runtime for LRN (222 ms per 250x400 frame against 277 ms for torch channels_last and 495 ms
eager, idle 2-core machine) and torch channels_last for STIR (756 ms, against 846 ms ONNX Runtime and
1,157 ms eager); the other one when the first is not installed.

A precision asked for (``build_backend(precision=...)``) narrows ``auto`` to the entries that run it
from weights (``weight_precisions``: fp16 and bf16 are the torch backend's); ``precision="auto"`` is
resolved by ``edge.reconstruction.backends.precision`` (for ``auto`` backends first, then the entry).

- ``build_classical`` / ``build_backend``: a reconstructor for a classical method / loaded weights.
- ``load_engine_dir``: a reconstructor for an engine directory, after checking its manifest
  (``edge.reconstruction.engines``) against the request and against what the format's entry and
  module need of this machine; ``EngineMismatch`` lists every difference.
- ``export_engine``: an engine directory written by the format's backend (``spike-train export``), built
  for a device (``export_device``: the CPU where the format's artifacts run there at that precision,
  else CUDA); formats compiled for one device kind record it in the manifest (``device``) and
  ``load_engine_dir`` refuses them elsewhere.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from edge.reconstruction.backends.base import BackendName, BackendUnavailable, Device, Reconstructor
from edge.reconstruction.backends.precision import resolve_precision
from edge.reconstruction.engines import EngineMismatch, check_manifest, read_manifest, write_engine_dir
from edge.reconstruction.methods import Method, learned_spec
from edge.reconstruction.models import ONNX_OPSET, ExportFormat, Precision, PrecisionSetting
from edge.reconstruction.networks import LoadedNetwork, load_network
from firmware_io.contract import Geometry

log = logging.getLogger(__name__)


def _names(items) -> str:
    return ", ".join(item.value for item in items)


@dataclass(frozen=True)
class BackendEntry:
    name: BackendName
    summary: str
    learned: bool  # runs the networks (else the classical methods)
    requires: tuple[str, ...]  # modules that must import here
    extra: str | None  # the pip extra that installs them (None: core dependencies only)
    devices: tuple[Device, ...]  # where it runs
    implementation: Callable[[], ModuleType]  # imports the backend's module
    artifact: ExportFormat | None = None  # the engine-directory format it writes and loads
    artifact_file: str | None = None  # that artifact's file name in the directory
    fp16_devices: tuple[Device, ...] = ()  # where its fp16 artifacts run
    bf16_devices: tuple[Device, ...] = ()  # where its bf16 artifacts run (none: it writes no bf16 artifact)
    weight_precisions: tuple[Precision, ...] = (Precision.FP32,)  # what it runs when built from weights
    needs_engine: bool = False  # runs prebuilt engine directories only, never weights
    auto_first_for: frozenset[tuple[Method, Device]] = frozenset()  # measured fastest there: auto's first choice

    def missing_modules(self) -> list[str]:
        return [name for name in self.requires if importlib.util.find_spec(name) is None]

    def missing(self, device: Device) -> str | None:
        """Why this backend cannot run on ``device`` here (a library or the device), or None when it can."""
        absent = self.missing_modules()
        if absent:
            return (f"the {self.name.value} backend needs {', '.join(absent)}, not installed here: "
                    f"pip install '{self.extra}'")
        if device not in self.devices:
            return f"the {self.name.value} backend runs on {_names(self.devices)}, not {device.value}"
        return None

    def precision_devices(self, precision: Precision) -> tuple[Device, ...]:
        """Where its artifacts of ``precision`` run."""
        return {Precision.FP32: self.devices, Precision.FP16: self.fp16_devices,
                Precision.BF16: self.bf16_devices}[precision]

    def artifact_precisions(self) -> tuple[Precision, ...]:
        """The precisions of the artifacts it writes: fp32, and fp16 / bf16 where some device runs them."""
        return tuple(p for p in Precision if self.precision_devices(p))

    def require(self, device: Device) -> None:
        reason = self.missing(device)
        if reason is not None:
            raise BackendUnavailable(reason)


def _numpy() -> ModuleType:
    from edge.reconstruction.backends import classical

    return classical


def _torch() -> ModuleType:
    from edge.reconstruction.backends import torch_backend

    return torch_backend


def _onnx() -> ModuleType:
    from edge.reconstruction.backends import onnx_backend

    return onnx_backend


def _tensorrt() -> ModuleType:
    from edge.reconstruction.backends import tensorrt_backend

    return tensorrt_backend


def _aoti() -> ModuleType:
    from edge.reconstruction.backends import aoti_backend

    return aoti_backend


BACKENDS: tuple[BackendEntry, ...] = (
    BackendEntry(BackendName.NUMPY, "TFP and TFI with numpy on the host (whatever --device says)", learned=False,
                 requires=(), extra=None, devices=(Device.CPU,), implementation=_numpy),
    BackendEntry(BackendName.TORCH, "the networks on torch: CPU fp32/bf16 channels_last, CUDA fp16/bf16 with CUDA "
                 "graphs", learned=True, requires=("torch",), extra="spike-edge[torch]",
                 devices=(Device.CPU, Device.CUDA), implementation=_torch, artifact=ExportFormat.TORCHSCRIPT,
                 artifact_file="model.ts", fp16_devices=(Device.CUDA,), bf16_devices=(Device.CPU,),
                 weight_precisions=tuple(Precision)),
    BackendEntry(BackendName.ONNX, "the networks on ONNX Runtime (its CUDA provider with --device cuda)",
                 learned=True, requires=("onnxruntime", "onnx"), extra="spike-edge[onnx]",
                 devices=(Device.CPU, Device.CUDA), implementation=_onnx, artifact=ExportFormat.ONNX,
                 artifact_file="model.onnx", fp16_devices=(Device.CPU, Device.CUDA),
                 auto_first_for=frozenset({(Method.LRN, Device.CPU)})),
    BackendEntry(BackendName.TENSORRT, "prebuilt TensorRT engines through Torch-TensorRT, on CUDA", learned=True,
                 requires=("torch", "torch_tensorrt"), extra="spike-edge[gpu]", devices=(Device.CUDA,),
                 implementation=_tensorrt, artifact=ExportFormat.TENSORRT, artifact_file="model.ep",
                 fp16_devices=(Device.CUDA,), needs_engine=True),
    BackendEntry(BackendName.AOTI, "prebuilt AOTInductor packages of the whole forward (unpacking included), "
                 "CPU or CUDA, tied to the torch that compiled them", learned=True, requires=("torch",),
                 extra="spike-edge[torch]", devices=(Device.CPU, Device.CUDA), implementation=_aoti,
                 artifact=ExportFormat.AOTI, artifact_file="model.pt2", fp16_devices=(Device.CUDA,),
                 bf16_devices=(Device.CPU, Device.CUDA), needs_engine=True),
)


def backend_entry(name: str | BackendName) -> BackendEntry:
    name = BackendName(name)
    entry = next((e for e in BACKENDS if e.name is name), None)
    if entry is None:
        raise ValueError(f"{name.value!r} names no backend entry (auto is a choice among them: auto_entry)")
    return entry


def format_entry(fmt: str | ExportFormat) -> BackendEntry:
    """The entry of the backend that writes and loads ``fmt`` artifacts."""
    fmt = ExportFormat(fmt)
    return next(e for e in BACKENDS if e.artifact is fmt)


def check_device(device: str | Device) -> None:
    if Device(device) is Device.CUDA:
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda was requested but torch sees no CUDA GPU here; use --device cpu")


def available_backends(device: str | Device, entries: tuple[BackendEntry, ...] = BACKENDS) -> list[BackendName]:
    """Network backends whose libraries import here and that run on ``device`` (TensorRT: CUDA only)."""
    return [e.name for e in entries if e.learned and e.missing(Device(device)) is None]


def auto_entry(method: Method, device: Device, entries: tuple[BackendEntry, ...] = BACKENDS, *,
               precision: Precision | None = None) -> BackendEntry:
    """The backend ``auto`` runs ``method`` on, on ``device`` (in ``precision``, when given): see the module
    docstring."""
    candidates = [e for e in entries if e.learned and not e.needs_engine
                  and (precision is None or precision in e.weight_precisions)]
    usable = [e for e in candidates if e.missing(device) is None]
    if not usable:
        raise BackendUnavailable("no network backend is installed: pip install "
                                 + " or ".join(f"'{e.extra}'" for e in candidates))
    return sorted(usable, key=lambda e: (method, device) not in e.auto_first_for)[0]


def build_classical(method: Method, geometry: Geometry, window_planes: int,
                    backend: str | BackendName = BackendName.AUTO) -> Reconstructor:
    backend = BackendName(backend)
    classical = [e for e in BACKENDS if not e.learned]
    entry = classical[0] if backend is BackendName.AUTO else backend_entry(backend)
    if entry.learned:
        raise BackendUnavailable(f"{method.value} runs on the {_names(e.name for e in classical)} backend only, "
                                 f"not {backend.value}")
    return entry.implementation().build(method, geometry, window_planes)


def build_backend(loaded: LoadedNetwork, geometry: Geometry, backend: str | BackendName = BackendName.AUTO,
                  device: str | Device = Device.CPU, *, precision: str | Precision | PrecisionSetting | None = None,
                  compile: bool = False) -> Reconstructor:
    """A reconstructor running ``loaded`` on ``backend`` in ``precision`` (None: the backend's default; ``auto``:
    see the module docstring)."""
    backend, device = BackendName(backend), Device(device)
    check_device(device)
    if precision is not None and PrecisionSetting(precision) is PrecisionSetting.AUTO:
        allowed = tuple(Precision) if backend is BackendName.AUTO else backend_entry(backend).weight_precisions
        precision, why = resolve_precision(loaded.method, device, allowed=allowed)
        log.info("precision auto for %s on %s: %s (%s)", loaded.method.value, device.value, precision.value, why)
    precision = None if precision is None else Precision(PrecisionSetting(precision).value)
    entry = (auto_entry(loaded.method, device, precision=precision) if backend is BackendName.AUTO
             else backend_entry(backend))
    if not entry.learned:
        raise BackendUnavailable(f"the networks do not run on the {entry.name.value} backend")
    if entry.needs_engine:
        raise BackendUnavailable(
            f"the {entry.name.value} backend runs prebuilt engines only: build one with `spike-train export "
            f"--format {entry.artifact.value} --model M --checkpoint P --height H --width W --out DIR` and pass "
            f"--engine DIR")
    entry.require(device)
    return entry.implementation().build(loaded, geometry, device, precision=precision, compile=compile)


def load_engine_dir(directory: str | Path, geometry: Geometry, *, model: str | Method | None = None,
                    backend: str | BackendName = BackendName.AUTO, device: str | Device = Device.CPU) -> Reconstructor:
    """A ``Reconstructor`` for the engine directory, after checking its manifest (``EngineMismatch`` if not)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    method = learned_spec(model).method if model is not None else None
    backend, device = BackendName(backend), Device(device)
    entry = format_entry(manifest["format"])
    fmt, precision = entry.artifact, Precision(manifest["precision"])
    problems = check_manifest(manifest, geometry, method=method, directory=directory)
    if device not in entry.devices:
        problems.append(f"device: {fmt.value} engines run on {_names(entry.devices)}, requested {device.value}")
    if manifest.get("device") not in (None, device.value):  # formats compiled for one device kind record it
        problems.append(f"device: engine compiled for {manifest['device']}, requested {device.value}")
    runs_on = entry.precision_devices(precision)
    if device not in runs_on:
        problems.append(f"precision: {precision.value} {fmt.value} artifacts run on {_names(runs_on) or 'no device'}, "
                        f"requested device {device.value}")
    if not entry.missing_modules():
        problems += entry.implementation().engine_problems(manifest)
    if backend not in (BackendName.AUTO, entry.name):
        problems.append(f"backend: a {fmt.value} engine runs on the {entry.name.value} backend, requested {backend.value}")
    if problems:
        raise EngineMismatch(f"engine directory {directory} does not fit: " + "; ".join(problems))
    entry.require(device)
    return entry.implementation().load(directory / manifest["file"], Method(manifest["model"]), geometry,
                                       int(manifest["window_planes"]), manifest.get("weights_id") or "unknown",
                                       device, precision)


def export_device(entry: BackendEntry, precision: Precision, device: str | Device | None = None) -> Device:
    """The device an artifact of ``entry``'s format is built for: ``device`` when its artifacts run there at
    ``precision``; by default the CPU where they do, else CUDA."""
    fits = [d for d in entry.devices if d in entry.precision_devices(precision)]
    if device is None:
        return Device.CPU if Device.CPU in fits else Device.CUDA
    device = Device(device)
    if device not in fits:
        raise ValueError(f"{precision.value} {entry.artifact.value} artifacts are built for {_names(fits)}, "
                         f"not {device.value}")
    return device


def export_engine(model: str | Method, checkpoint: str | Path | None, fmt: str | ExportFormat, geometry: Geometry,
                  out: str | Path, *, precision: str | Precision = Precision.FP32, opset: int = ONNX_OPSET,
                  device: str | Device | None = None, overwrite: bool = False) -> Path:
    """Build the artifact for ``model`` at ``geometry`` with ``fmt``'s backend, for ``device`` (default:
    ``export_device``), and write an engine directory at ``out`` (``opset`` applies to ONNX)."""
    spec, entry, precision = learned_spec(model), format_entry(fmt), Precision(precision)
    if precision not in entry.artifact_precisions():
        raise ValueError(f"{entry.artifact.value} artifacts are {_names(entry.artifact_precisions())}, not "
                         f"{precision.value}")
    device = export_device(entry, precision, device)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose a new --out directory")
    implementation = entry.implementation()
    loaded = load_network(spec.method, checkpoint)
    shape = spec.network.input_shape(loaded.window_planes, geometry)
    return write_engine_dir(
        out, loaded, entry.artifact, entry.artifact_file, geometry, shape, precision,
        versions=implementation.library_versions(),
        record_gpu=precision is Precision.FP16 or device is Device.CUDA,
        write_artifact=lambda path: implementation.write_artifact(loaded, geometry, precision, device, path,
                                                                  opset=opset))


__all__ = ["BACKENDS", "BackendEntry", "auto_entry", "available_backends", "backend_entry", "build_backend",
           "build_classical", "check_device", "export_device", "export_engine", "format_entry", "load_engine_dir"]
