"""Engine directories: writing deployable artifacts of the networks and loading them back, checked.

An engine directory holds one artifact and ``manifest.json``:

    model.onnx | model.ts | model.ep        the network only (input: the network input, see below)
    manifest.json                           what it is and what it was built for

Manifest fields: ``manifest_version``; ``model`` (lrn|stir) and ``window_planes``; ``format``
(onnx|torchscript|tensorrt) and ``file`` with its ``file_sha256``; ``weights_sha256`` and
``weights_id`` of the checkpoint; ``input`` (name, shape ``[1, C, H, W]``, dtype; LRN takes 50 voxel
channels, STIR the raw planes) and ``geometry`` (height, width); ``precision`` (fp32|fp16);
``opset`` (ONNX); ``versions`` of the libraries involved; ``gpu`` (name, compute capability) for
TensorRT, else null; ``created_utc``.

``load_engine_dir`` refuses a directory whose manifest does not match the request (model, geometry)
or the running environment (TensorRT version, GPU model and compute capability for TensorRT
engines; a CUDA device for fp16 artifacts; an artifact whose bytes changed), saying what differs.
Directories are written atomically: built under a temporary name beside ``out``, then renamed.
Engines are only built by ``export_engine`` (``spike-train export``), never as a side effect.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import warnings
from pathlib import Path
from typing import Any

from edge.reconstruction.backends.base import BackendName, BackendUnavailable, Device
from edge.reconstruction.models import ExportFormat, ModelName, Precision
from firmware_io.atomic import atomic_dir
from firmware_io.contract import Geometry

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_OPSET = 18
ARTIFACT_FILES = {ExportFormat.ONNX: "model.onnx", ExportFormat.TORCHSCRIPT: "model.ts", ExportFormat.TENSORRT: "model.ep"}
FORMAT_BACKEND = {ExportFormat.ONNX: BackendName.ONNX, ExportFormat.TORCHSCRIPT: BackendName.TORCH,
                  ExportFormat.TENSORRT: BackendName.TENSORRT}


class EngineMismatch(ValueError):
    """An engine directory that does not fit the request or this machine (the message lists the differences)."""


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def library_versions(fmt: ExportFormat) -> dict[str, str | None]:
    import torch

    versions: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    if fmt is ExportFormat.ONNX:
        versions.update(onnx=_version("onnx"), onnxruntime=_version("onnxruntime") or _version("onnxruntime-gpu"))
    if fmt is ExportFormat.TENSORRT:
        from edge.reconstruction.backends.tensorrt_backend import tensorrt_version

        versions.update(torch_tensorrt=_version("torch-tensorrt") or _version("torch_tensorrt"), tensorrt=tensorrt_version())
    return versions


def gpu_info() -> dict[str, str] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return {"name": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def export_engine(model: str | ModelName, checkpoint: str | Path | None, fmt: str | ExportFormat, geometry: Geometry,
                  out: str | Path, *, precision: str | Precision = Precision.FP32, opset: int = DEFAULT_OPSET,
                  overwrite: bool = False) -> Path:
    """Build the artifact for ``model`` at ``geometry`` and write an engine directory at ``out``."""
    import torch

    from edge.reconstruction.backends.onnx_backend import export_onnx, network_input_shape
    from edge.reconstruction.models.checkpoints import file_sha256, load_network

    fmt, precision, model = ExportFormat(fmt), Precision(precision), ModelName(model)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose a new --out directory")
    if fmt is ExportFormat.ONNX and opset < 16:
        raise ValueError(f"ONNX export needs opset >= 16 (GridSample), got {opset}")
    if precision is Precision.FP16 and fmt is ExportFormat.TORCHSCRIPT and not torch.cuda.is_available():
        raise ValueError("an fp16 TorchScript artifact is traced on a GPU; none is present")
    loaded = load_network(model, checkpoint)
    shape = network_input_shape(model, loaded.window_planes, geometry)
    with atomic_dir(out) as tmp:
        artifact = tmp / ARTIFACT_FILES[fmt]
        net = loaded.model.eval()
        if fmt is ExportFormat.ONNX:
            if precision is Precision.FP16:
                net = net.half()
            dtype = torch.float16 if precision is Precision.FP16 else torch.float32
            export_onnx(net, torch.zeros(shape, dtype=dtype), artifact, opset=opset, dynamo=True)
        elif fmt is ExportFormat.TORCHSCRIPT:
            device = "cuda" if precision is Precision.FP16 else "cpu"
            dtype = torch.float16 if precision is Precision.FP16 else torch.float32
            net = net.to(device, dtype)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated but still the portable format
                traced = torch.jit.trace(net, torch.zeros(shape, dtype=dtype, device=device), check_trace=False)
                torch.jit.save(traced, str(artifact))
        else:
            from edge.reconstruction.backends.tensorrt_backend import build_engine

            build_engine(net, shape, precision, artifact)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "model": model.value,
            "window_planes": loaded.window_planes,
            "format": fmt.value,
            "file": artifact.name,
            "file_sha256": file_sha256(artifact),
            "weights_sha256": loaded.weights_sha256,
            "weights_id": loaded.weights_id,
            "input": {"name": "x", "shape": list(shape), "dtype": "float16" if precision is Precision.FP16 else "float32"},
            "geometry": {"height": geometry.height, "width": geometry.width},
            "precision": precision.value,
            "opset": opset if fmt is ExportFormat.ONNX else None,
            "versions": library_versions(fmt),
            "gpu": gpu_info() if fmt is ExportFormat.TENSORRT or precision is Precision.FP16 else None,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def read_manifest(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an engine directory: no {MANIFEST_NAME} (make one with spike-train export)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EngineMismatch(f"{path} is not valid JSON: {exc}") from None
    for key in ("manifest_version", "model", "format", "file", "geometry", "precision", "window_planes"):
        if key not in manifest:
            raise EngineMismatch(f"{path} lacks the field {key!r}")
    if manifest["manifest_version"] != MANIFEST_VERSION:
        raise EngineMismatch(f"{path} has manifest version {manifest['manifest_version']}, this build reads {MANIFEST_VERSION}")
    return manifest


def check_manifest(manifest: dict[str, Any], geometry: Geometry, *, model: ModelName | None = None,
                   device: Device = Device.CPU, directory: Path | None = None) -> list[str]:
    """Every way ``manifest`` differs from the request and this environment (empty when it fits)."""
    problems: list[str] = []
    built = manifest["geometry"]
    if (built.get("height"), built.get("width")) != (geometry.height, geometry.width):
        problems.append(f"geometry: engine built for {built.get('height')}x{built.get('width')}, requested {geometry}")
    if model is not None and manifest["model"] != model.value:
        problems.append(f"model: engine is {manifest['model']}, requested {model.value}")
    fmt = ExportFormat(manifest["format"])
    precision = Precision(manifest["precision"])
    if precision is Precision.FP16 and device is not Device.CUDA and fmt is not ExportFormat.ONNX:
        problems.append(f"precision: fp16 {fmt.value} artifacts run on CUDA, requested device {device.value}")
    if fmt is ExportFormat.TENSORRT:
        if device is not Device.CUDA:
            problems.append(f"device: TensorRT engines run on CUDA, requested {device.value}")
        here = gpu_info()
        built_gpu = manifest.get("gpu") or {}
        if here is None:
            problems.append(f"gpu: engine built on {built_gpu.get('name')} (sm {built_gpu.get('compute_capability')}), no CUDA GPU here")
        else:
            if here["name"] != built_gpu.get("name"):
                problems.append(f"gpu: engine built on {built_gpu.get('name')}, running on {here['name']}")
            if here["compute_capability"] != built_gpu.get("compute_capability"):
                problems.append(f"compute capability: engine {built_gpu.get('compute_capability')}, GPU {here['compute_capability']}")
        from edge.reconstruction.backends.tensorrt_backend import tensorrt_version

        built_trt = (manifest.get("versions") or {}).get("tensorrt")
        if tensorrt_version() != built_trt:
            problems.append(f"tensorrt: engine built with {built_trt}, installed {tensorrt_version()}")
    if directory is not None:
        artifact = directory / manifest["file"]
        if not artifact.is_file():
            problems.append(f"file: {artifact} is missing")
        elif manifest.get("file_sha256"):
            from edge.reconstruction.models.checkpoints import file_sha256

            if file_sha256(artifact) != manifest["file_sha256"]:
                problems.append(f"file: {artifact.name} does not match the sha256 in the manifest (modified or corrupt)")
    return problems


def load_engine_dir(directory: str | Path, geometry: Geometry, *, model: ModelName | str | None = None,
                    backend: BackendName | str = BackendName.AUTO, device: Device | str = Device.CPU):
    """A ``Reconstructor`` for the engine directory, after checking its manifest (``EngineMismatch`` if not)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    model = ModelName(model) if model is not None else None
    device, backend = Device(device), BackendName(backend)
    problems = check_manifest(manifest, geometry, model=model, device=device, directory=directory)
    fmt = ExportFormat(manifest["format"])
    wanted = FORMAT_BACKEND[fmt]
    if backend not in (BackendName.AUTO, wanted):
        problems.append(f"backend: a {fmt.value} engine runs on the {wanted.value} backend, requested {backend.value}")
    if problems:
        raise EngineMismatch(f"engine directory {directory} does not fit: " + "; ".join(problems))
    name = ModelName(manifest["model"])
    precision = Precision(manifest["precision"])
    window = int(manifest["window_planes"])
    wid = manifest.get("weights_id") or "unknown"
    artifact = directory / manifest["file"]
    if fmt is ExportFormat.ONNX:
        from edge.reconstruction.backends.onnx_backend import OnnxReconstructor, make_session

        return OnnxReconstructor(make_session(artifact, device), name, geometry, window, wid, device, precision)
    if fmt is ExportFormat.TORCHSCRIPT:
        import torch

        from edge.reconstruction.backends.torch_backend import TorchReconstructor

        target = "cuda" if device is Device.CUDA else "cpu"
        if device is Device.CUDA and not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda was requested but torch sees no CUDA GPU here")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(artifact), map_location=target).eval()
        return TorchReconstructor(module, name, geometry, window, wid, device, precision, channels_last=False,
                                  convert_module=False, label=f"torchscript-{device.value}-{precision.value}")
    from edge.reconstruction.backends.tensorrt_backend import load_engine

    return load_engine(artifact, name, geometry, window, wid, precision)


__all__ = ["EngineMismatch", "check_manifest", "export_engine", "load_engine_dir", "read_manifest"]
