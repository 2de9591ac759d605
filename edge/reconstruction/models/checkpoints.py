"""Building the networks and loading their weights: one strict path for every consumer.

- ``read_state_dict(path)``: a state_dict from a ``.pt``/``.pth`` file, unwrapped from
  ``{'state_dict': ...}`` / ``{'model': ...}`` and with a DataParallel ``module.`` prefix removed.
- ``load_strict(model, state_dict, source)``: strict loading; any missing or unexpected key, or a
  shape mismatch, raises ``CheckpointError`` (a ``ValueError``) that names them.
- ``weights_id(path)``: the first 12 hex digits of the file's sha256, carried in frame headers and
  export manifests.
- ``resolve_checkpoint(model, checkpoint)``: the given path, else the packaged default
  ``edge/models/weights/<model>_default.pt`` when it exists, else a ``CheckpointError`` saying that
  ``--checkpoint`` is required.
- ``load_network(model, checkpoint)``: all of the above, returning the model in eval mode.

The STIR variant (61 or 41 planes) is read off the checkpoint (the embedding block's input channels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from edge.reconstruction.models import ModelName

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_ID_HEX = 12
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the network (names the keys)."""


def default_weights_path(model: str | ModelName) -> Path:
    return WEIGHTS_DIR / f"{ModelName(model).value}_default.pt"


def has_default_weights(model: str | ModelName) -> bool:
    return default_weights_path(model).is_file()


def resolve_checkpoint(model: str | ModelName, checkpoint: str | Path | None) -> Path:
    """The checkpoint to use: the given one (must exist) or the packaged default."""
    model = ModelName(model)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return path
    default = default_weights_path(model)
    if default.is_file():
        return default
    raise CheckpointError(
        f"no default weights are packaged for {model.value} (expected {default}); "
        f"--checkpoint PATH is required"
    )


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


def build_network(model: str | ModelName, state: Mapping[str, Any] | None = None, window_planes: int | None = None):
    """A fresh (randomly initialised) network; for STIR the variant follows ``state`` or ``window_planes``."""
    model = ModelName(model)
    if model is ModelName.LRN:
        from edge.reconstruction.models.lrn import LRN

        return LRN()
    from edge.reconstruction.models.stir import STIR, STIR_VARIANTS

    if window_planes is None and state is not None and "resnet.conv1.weight" in state:
        sub = int(state["resnet.conv1.weight"].shape[1])
        window_planes = next((w for w, v in STIR_VARIANTS.items() if v.substream_planes == sub), None)
        if window_planes is None:
            raise CheckpointError(f"STIR checkpoint has {sub}-plane sub-streams; known variants: "
                                  f"{ {w: v.substream_planes for w, v in STIR_VARIANTS.items()} }")
    return STIR(window_planes or 61)


@dataclass(frozen=True)
class LoadedNetwork:
    model: Any  # torch.nn.Module, eval mode, on the CPU
    name: ModelName
    weights_path: Path | None
    weights_sha256: str  # "" for random weights
    weights_id: str  # "random" for random weights

    @property
    def window_planes(self) -> int:
        return int(self.model.window_planes)


def load_network(model: str | ModelName, checkpoint: str | Path | None, *, allow_random: bool = False) -> LoadedNetwork:
    """Build ``model`` and load its weights strictly (``checkpoint`` or the packaged default).

    With ``allow_random`` and no weights available, returns a randomly initialised network (for
    benchmarks); its ``weights_id`` is ``"random"``.
    """
    model = ModelName(model)
    try:
        path = resolve_checkpoint(model, checkpoint)
    except CheckpointError:
        if not allow_random:
            raise
        net = build_network(model).eval()
        return LoadedNetwork(net, model, None, "", "random")
    state = read_state_dict(path)
    net = build_network(model, state)
    load_strict(net, state, str(path))
    sha = file_sha256(path)
    return LoadedNetwork(net.eval(), model, path, sha, sha[:WEIGHTS_ID_HEX])


__all__ = ["CheckpointError", "LoadedNetwork", "build_network", "default_weights_path", "file_sha256",
           "has_default_weights", "load_network", "load_strict", "read_state_dict", "resolve_checkpoint",
           "unwrap_state_dict", "weights_id"]
