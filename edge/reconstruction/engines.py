"""Engine directories: the manifest, writing a directory atomically, reading it back and checking it.

An engine directory holds one artifact and ``manifest.json``:

    model.onnx | model.ts | model.ep        the network only (input: the network input, see below)
    model.pt2                               the whole forward (input: the packed windows)
    manifest.json                           what it is and what it was built for

Manifest fields: ``manifest_version``; ``model`` (lrn|stir) and ``window_planes``; ``format``
(onnx|torchscript|tensorrt|aoti) and ``file`` with its ``file_sha256``; ``weights_sha256`` and
``weights_id`` of the checkpoint; ``input`` (name, shape ``[1, C, H, W]``, dtype; LRN takes 50 voxel
channels, STIR the raw planes; aoti: the packed windows ``[1, T, plane_bytes]`` uint8 and the
largest batch) and ``geometry`` (height, width); ``precision`` (fp32|fp16|bf16); ``opset`` (ONNX);
``versions`` of the libraries involved; ``gpu`` (name, compute capability) for artifacts built for
CUDA and fp16 artifacts, else null; ``created_utc``; and the format's own fields (aoti: ``device``
and, for the CPU, ``cpu_capability``).

This module knows the directory and its manifest, not the formats: which backend writes and loads
each artifact, and what else it checks about this machine (device, fp16, TensorRT's GPU and
version), is the backend registry's (``edge.reconstruction.backends.registry``: ``export_engine``,
``load_engine_dir``), which imports this module, never the reverse. ``check_manifest`` lists how a
manifest differs from the request (model, geometry) and whether the artifact's bytes changed.
Directories are written atomically: built under a temporary name beside ``out``, then renamed.
Engines are only built by ``export_engine`` (``spike-train export``), never as a side effect.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any, Callable

from edge.reconstruction.methods import LEARNED_METHOD_NAMES, Method
from edge.reconstruction.models import EXPORT_FORMATS, PRECISIONS, ExportFormat, Precision
from edge.reconstruction.models.checkpoints import WEIGHTS_ID_HEX, file_sha256
from edge.reconstruction.networks import LoadedNetwork
from firmware_io.atomic import atomic_dir
from firmware_io.contract import Geometry

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_REQUIRED = ("manifest_version", "model", "format", "file", "geometry", "precision", "window_planes")


class EngineMismatch(ValueError):
    """An engine directory that does not fit the request or this machine (the message lists the differences)."""


def distribution_version(*names: str) -> str | None:
    """The installed version of the first of ``names`` (distribution names) that is installed."""
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def gpu_info() -> dict[str, str] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return {"name": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def write_engine_dir(out: Path, loaded: LoadedNetwork, fmt: ExportFormat, artifact_file: str, geometry: Geometry,
                     input_shape: tuple[int, ...], precision: Precision, *, versions: dict[str, str | None],
                     record_gpu: bool, write_artifact: Callable[[Path], dict[str, Any]]) -> Path:
    """Write ``out`` atomically: ``write_artifact(path)`` writes the artifact and returns the format's own
    manifest fields (``opset``); ``versions`` are the backend's libraries. An existing ``out`` is replaced."""
    import torch

    with atomic_dir(out) as tmp:
        artifact = tmp / artifact_file
        own_fields = write_artifact(artifact)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "model": loaded.method.value,
            "window_planes": loaded.window_planes,
            "format": fmt.value,
            "file": artifact.name,
            "file_sha256": file_sha256(artifact),
            "weights_sha256": loaded.weights_sha256,
            "weights_id": loaded.weights_id,
            "input": {"name": "x", "shape": list(input_shape),
                      "dtype": precision.dtype_name},
            "geometry": {"height": geometry.height, "width": geometry.width},
            "precision": precision.value,
            "opset": None,
            "versions": {"python": platform.python_version(), "torch": torch.__version__, **versions},
            "gpu": gpu_info() if record_gpu else None,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        manifest.update(own_fields)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of ``directory``, with its fields present and its closed-set values known."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an engine directory: no {MANIFEST_NAME} (make one with spike-train export)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EngineMismatch(f"{path} is not valid JSON: {exc}") from None
    for key in _REQUIRED:
        if key not in manifest:
            raise EngineMismatch(f"{path} lacks the field {key!r}")
    if manifest["manifest_version"] != MANIFEST_VERSION:
        raise EngineMismatch(f"{path} has manifest version {manifest['manifest_version']}, this build reads {MANIFEST_VERSION}")
    for key, known in (("model", LEARNED_METHOD_NAMES), ("format", EXPORT_FORMATS), ("precision", PRECISIONS)):
        if manifest[key] not in known:
            raise EngineMismatch(f"{path}: {key} {manifest[key]!r} is not one of {', '.join(known)}")
    return manifest


def check_manifest(manifest: dict[str, Any], geometry: Geometry, *, method: Method | None = None,
                   directory: Path | None = None) -> list[str]:
    """Every way ``manifest`` differs from the request (geometry, model), from itself (weights id and hash) and
    from its artifact's recorded bytes (empty when it fits). What the format needs of this machine is the
    registry's check."""
    problems: list[str] = []
    built = manifest["geometry"]
    if (built.get("height"), built.get("width")) != (geometry.height, geometry.width):
        problems.append(f"geometry: engine built for {built.get('height')}x{built.get('width')}, requested {geometry}")
    if method is not None and manifest["model"] != method.value:
        problems.append(f"model: engine is {manifest['model']}, requested {method.value}")
    weights_sha256, weights_id = manifest.get("weights_sha256"), manifest.get("weights_id")
    if weights_sha256 and weights_id != weights_sha256[:WEIGHTS_ID_HEX]:
        problems.append(f"weights: weights_id {weights_id} is not the start of weights_sha256 {weights_sha256} "
                        f"(the manifest was edited)")
    if directory is not None:
        artifact = directory / manifest["file"]
        if not artifact.is_file():
            problems.append(f"file: {artifact} is missing")
        elif manifest.get("file_sha256") and file_sha256(artifact) != manifest["file_sha256"]:
            problems.append(f"file: {artifact.name} does not match the sha256 in the manifest (modified or corrupt)")
    return problems


__all__ = ["EngineMismatch", "MANIFEST_NAME", "MANIFEST_VERSION", "check_manifest", "distribution_version",
           "gpu_info", "read_manifest", "write_engine_dir"]
