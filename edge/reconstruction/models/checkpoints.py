"""Reading network weights and loading them strictly: one path for every consumer, for any network.

- ``read_state_dict(path)``: a state_dict from a ``.pt``/``.pth`` file, unwrapped from
  ``{'state_dict': ...}`` / ``{'model': ...}`` and with a DataParallel ``module.`` prefix removed.
- ``load_strict(model, state_dict, source)``: strict loading; any missing or unexpected key, or a
  shape mismatch, raises ``CheckpointError`` (a ``ValueError``) that names them.
- ``weights_id(path)``: the first 12 hex digits of the file's sha256, carried in frame headers and
  export manifests.

Which network a method builds, and its packaged default weights, are ``edge.reconstruction.networks``'
business (``load_network``), which uses these.
"""

from __future__ import annotations

import hashlib
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
        raise CheckpointError(f"cannot read {path} as a torch checkpoint: {exc}") from exc
    return unwrap_state_dict(obj, str(path))


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
        parts = [f"{source} does not fit {type(model).__name__}:"]
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_describe(shapes)}")
        raise CheckpointError("; ".join(parts))
    model.load_state_dict(state, strict=True)


__all__ = ["CheckpointError", "WEIGHTS_ID_HEX", "file_sha256", "load_strict", "read_state_dict", "unwrap_state_dict",
           "weights_id"]
