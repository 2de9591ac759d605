"""A learned method's network with its weights: built from the method table, loaded strictly.

- ``build_network(model, state, window_planes)``: a fresh network through the table
  (``edge.reconstruction.methods.METHOD_SPECS``); for STIR the variant follows ``window_planes``, else
  ``state``.
- ``resolve_checkpoint(model, checkpoint)``: the given path, else the packaged default
  ``edge/reconstruction/models/weights/<file named in the table>`` when it exists, else a
  ``CheckpointError`` saying that ``--checkpoint`` is required.
- ``load_network(model, checkpoint)``: all of the above with ``edge.reconstruction.models.checkpoints``'
  strict loading, returning the network in eval mode with the identity of its weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from edge.reconstruction.methods import Method, NetworkSpec, learned_spec
from edge.reconstruction.models.checkpoints import (
    WEIGHTS_ID_HEX,
    CheckpointError,
    file_sha256,
    load_strict,
    read_state_dict,
)

WEIGHTS_DIR = Path(__file__).resolve().parent / "models" / "weights"


def default_weights_path(model: str | Method) -> Path:
    return WEIGHTS_DIR / learned_spec(model).network.weights_file


def has_default_weights(model: str | Method) -> bool:
    return default_weights_path(model).is_file()


def resolve_checkpoint(model: str | Method, checkpoint: str | Path | None) -> Path:
    """The checkpoint to use: the given one (must exist) or the packaged default."""
    method = learned_spec(model).method
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return path
    default = default_weights_path(method)
    if default.is_file():
        return default
    raise CheckpointError(
        f"no default weights are packaged for {method.value} (expected {default}); "
        f"--checkpoint PATH is required"
    )


def build_network(model: str | Method, state: Mapping[str, Any] | None = None, window_planes: int | None = None):
    """A fresh (randomly initialised) network; for STIR the variant follows ``window_planes``, else ``state``."""
    return learned_spec(model).network.build(window_planes, state)


@dataclass(frozen=True)
class LoadedNetwork:
    model: Any  # torch.nn.Module, eval mode, on the CPU
    method: Method
    weights_path: Path | None
    weights_sha256: str  # "" for random weights
    weights_id: str  # "random" for random weights

    @property
    def window_planes(self) -> int:
        return int(self.model.window_planes)

    @property
    def network(self) -> NetworkSpec:
        return learned_spec(self.method).network


def load_network(model: str | Method, checkpoint: str | Path | None, *, allow_random: bool = False) -> LoadedNetwork:
    """Build ``model`` and load its weights strictly (``checkpoint`` or the packaged default).

    With ``allow_random`` and no weights available, returns a randomly initialised network (for
    benchmarks); its ``weights_id`` is ``"random"``.
    """
    method = learned_spec(model).method
    try:
        path = resolve_checkpoint(method, checkpoint)
    except CheckpointError:
        if not allow_random:
            raise
        return LoadedNetwork(build_network(method).eval(), method, None, "", "random")
    state = read_state_dict(path)
    net = build_network(method, state)
    load_strict(net, state, str(path))
    sha = file_sha256(path)
    return LoadedNetwork(net.eval(), method, path, sha, sha[:WEIGHTS_ID_HEX])


__all__ = ["LoadedNetwork", "WEIGHTS_DIR", "build_network", "default_weights_path", "has_default_weights",
           "load_network", "resolve_checkpoint"]
