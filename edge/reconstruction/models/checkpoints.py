"""Reading network weights and loading them strictly: one path for every consumer, for any network.

- ``read_state_dict(path)``: a state_dict from a ``.pt``/``.pth`` file, unwrapped from
  ``{'state_dict': ...}`` / ``{'model': ...}`` and with a DataParallel ``module.`` prefix removed.
  Only tensors and plain containers are loaded (``weights_only``); a file with other Python objects
  (a training state, a whole pickled model) is refused with a message naming what it is and how to
  get the weights, found by walking its pickle without importing or running anything.
- ``load_strict(model, state_dict, source)``: strict loading; any missing or unexpected key, or a
  shape mismatch, raises ``CheckpointError`` (a ``ValueError``) that names them.
- ``weights_id(path)``: the first 12 hex digits of the file's sha256, carried in frame headers and
  export manifests.

Which network a method builds, and its packaged default weights, are ``edge.reconstruction.networks``'
business (``load_network``), which uses these.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

WEIGHTS_ID_HEX = 12
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the network (names the keys)."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_id(path: str | Path) -> str:
    """First 12 hex digits of the sha256 of the weights file."""
    return file_sha256(path)[:WEIGHTS_ID_HEX]


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict:
    """Strip ``{'state_dict'|'model': ...}`` wrappers and a ``module.`` prefix."""
    import torch

    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise CheckpointError(
                f"{source} holds no tensors and no {'/'.join(_WRAPPER_KEYS)} entry; top-level keys: "
                f"{sorted(map(str, obj))[:10]}"
            )
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} is a {type(obj).__name__}, not a state_dict")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / non-torch files
        top = _pickled_top_level(path)
        if top is None:
            raise CheckpointError(f"cannot read {path} as a torch checkpoint: {exc}") from exc
        raise CheckpointError(_not_plain_weights(path, top)) from None
    return unwrap_state_dict(obj, str(path))


class _Opaque(dict):
    """Stands in for every class a pickle names, so it can be walked without importing or running anything."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Opaque":
        return dict.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


class _PeekUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        return _Opaque  # never import: the file is not trusted

    def persistent_load(self, pid: Any) -> None:
        return None  # tensor storages are not read


def _pickled_top_level(path: Path) -> list[str] | _Opaque | None:
    """What a torch zip checkpoint that holds more than tensors has at its top, found without loading
    it: its keys (sorted) when it is a map, an ``_Opaque`` when it is some other object (a whole
    pickled model), ``None`` when it is no such file."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            if name is None:
                return None
            with archive.open(name) as f:
                top = _PeekUnpickler(f).load()
    except Exception:  # not a zip, or a pickle this walk cannot follow: the caller reports torch's own error
        return None
    if isinstance(top, _Opaque):
        return top
    return sorted(map(str, top)) if isinstance(top, dict) else None


def _not_plain_weights(path: Path, top: list[str] | _Opaque) -> str:
    """Why a torch file with Python objects besides tensors is refused, and how to get its weights."""
    if isinstance(top, _Opaque):
        return (f"{path} holds a pickled Python object (a whole model saved with torch.save(model)?), not a "
                "state_dict, and is not loaded from a checkpoint for safety; save the weights alone "
                "(torch.save(model.state_dict(), 'weights.pt')) and give that file")
    keys = top
    inner = next((k for k in _WRAPPER_KEYS if k in keys), None)
    what = (f"a training state (keys: {', '.join(keys[:10])}; `spike-train fit` writes one as train_state.pt)"
            if inner is not None and len(keys) > 1 else f"a torch file with keys {keys[:10]}")
    how = (f"use best.pt or last.pt from the same run folder (plain weights), or extract the weights from a file you "
           f"trust: python -c \"import torch; torch.save(torch.load('{path}', weights_only=False)['{inner}'], "
           f"'weights.pt')\"" if inner is not None else
           "save the model's state_dict() alone (torch.save(model.state_dict(), 'weights.pt')) and give that file")
    return (f"{path} is {what}, not a weights file: besides tensors it holds Python objects, which are not loaded "
            f"from a checkpoint for safety; {how}")


def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_strict(model, state: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` strictly; raise ``CheckpointError`` naming every mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} (model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_describe(shapes)}")
        fitting = len(expected) - len(missing) - len(shapes)
        raise CheckpointError(f"{source} does not fit {type(model).__name__} ({fitting} of the {len(expected)} tensors "
                              f"it needs match by name and shape): " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


__all__ = ["CheckpointError", "WEIGHTS_ID_HEX", "file_sha256", "load_strict", "read_state_dict", "unwrap_state_dict",
           "weights_id"]
