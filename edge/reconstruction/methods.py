"""The reconstruction methods: the closed set, and the one table of everything the rest needs of each.

``METHOD_SPECS`` has one entry per ``Method``: its window, a summary, and for the learned methods a
``NetworkSpec``: the network's module under ``edge.reconstruction.models`` (``build(window_planes,
state)``: a fresh network, of the variant asked for or read off a checkpoint), how packed windows
become its input on the host and on a torch device (``edge.reconstruction.inputs``), the input
shape, the packaged default weights file and how ONNX Runtime exports it in memory. Adding a network
is its module plus one entry here; the backends, the export code, ``spike-edge models`` and the CLI
choices (``METHOD_NAMES``, ``LEARNED_METHOD_NAMES``) follow from the table.

This module imports no torch: a network's module is imported when it is first built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Mapping

import numpy as np

from edge.reconstruction import inputs
from firmware_io.contract import Geometry


class Method(str, enum.Enum):
    TFP = "tfp"
    TFI = "tfi"
    LRN = "lrn"
    STIR = "stir"


@dataclass(frozen=True)
class NetworkSpec:
    """What the backends, the export code and the weights loader need of one network."""

    module: Callable[[], ModuleType]  # imports the network's module (torch), which provides ``build``
    planes_per_channel: int  # planes summed into one input channel: LRN 4 (voxels), STIR 1 (raw planes)
    prepare_numpy: Callable[[np.ndarray, Geometry], np.ndarray]  # packed windows -> input, on the host
    prepare_torch: Callable[..., Any]  # (packed uint8 tensor, geometry, dtype=float32) -> input of dtype, on its device
    weights_file: str  # the packaged default weights, in ``edge.reconstruction.networks.WEIGHTS_DIR``
    onnx_dynamo: bool  # in-memory ONNX export: the dynamo exporter (else the TorchScript-based one)

    def build(self, window_planes: int | None = None, state: Mapping[str, Any] | None = None):
        """A fresh (randomly initialised) network: the ``window_planes`` variant, else the one ``state`` fits."""
        return self.module().build(window_planes, state)

    def input_shape(self, window_planes: int, geometry: Geometry, batch: int = 1) -> tuple[int, int, int, int]:
        """The network input's shape ``(B, C, H, W)`` for a window of ``window_planes`` planes."""
        if window_planes <= 0 or window_planes % self.planes_per_channel:
            raise ValueError(f"a {window_planes}-plane window does not split into input channels of "
                             f"{self.planes_per_channel} planes")
        return (batch, window_planes // self.planes_per_channel, geometry.height, geometry.width)


@dataclass(frozen=True)
class MethodSpec:
    method: Method
    window_planes: int  # networks: the default variant's window (fixed); classical methods: the default --window
    summary: str
    network: NetworkSpec | None = None  # the learned methods' network; None for the classical ones

    @property
    def learned(self) -> bool:
        return self.network is not None


def _lrn() -> ModuleType:
    from edge.reconstruction.models import lrn

    return lrn


def _stir() -> ModuleType:
    from edge.reconstruction.models import stir

    return stir


METHOD_SPECS: dict[Method, MethodSpec] = {
    Method.TFP: MethodSpec(Method.TFP, 41, "texture from playback: window mean (firing rate)"),
    Method.TFI: MethodSpec(Method.TFI, 41, "texture from inter-spike interval: 1 / interval at the key"),
    Method.LRN: MethodSpec(
        Method.LRN, 200, "SpikeCLIP LRN: 200 planes voxelised to 50, five 3x3 convs",
        NetworkSpec(_lrn, inputs.LRN_PLANES_PER_BIN, inputs.voxels_numpy, inputs.voxels_torch, "lrn_default.pt",
                    onnx_dynamo=False),  # the TorchScript-based exporter: under a second, as fast a graph
    ),
    Method.STIR: MethodSpec(
        Method.STIR, 61, "STIR: three 21-plane sub-streams, multi-scale flow + attention",
        NetworkSpec(_stir, 1, inputs.planes_numpy, inputs.planes_torch, "stir_default.pt",
                    onnx_dynamo=True),  # the dynamo graph runs about twice as fast in ONNX Runtime
    ),
}

METHOD_NAMES: list[str] = [m.value for m in Method]
LEARNED_METHODS: tuple[Method, ...] = tuple(m for m, spec in METHOD_SPECS.items() if spec.learned)
LEARNED_METHOD_NAMES: list[str] = [m.value for m in LEARNED_METHODS]


def method_spec(name: str | Method) -> MethodSpec:
    try:
        return METHOD_SPECS[Method(name)]
    except ValueError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}") from None


def learned_spec(name: str | Method) -> MethodSpec:
    """The entry of a learned method (its ``network`` is set); a ``ValueError`` for any other name."""
    value = name.value if isinstance(name, Method) else str(name)
    spec = METHOD_SPECS.get(Method(value)) if value in METHOD_NAMES else None
    if spec is None or spec.network is None:
        raise ValueError(f"{value!r} is not a learned method; choose one of {', '.join(LEARNED_METHOD_NAMES)}")
    return spec


__all__ = ["LEARNED_METHODS", "LEARNED_METHOD_NAMES", "METHOD_NAMES", "METHOD_SPECS", "Method", "MethodSpec",
           "NetworkSpec", "learned_spec", "method_spec"]
