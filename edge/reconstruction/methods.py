"""The closed set of reconstruction methods and their window lengths (one place; CLI choices come from here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Method(str, enum.Enum):
    TFP = "tfp"
    TFI = "tfi"
    LRN = "lrn"
    STIR = "stir"


@dataclass(frozen=True)
class MethodSpec:
    method: Method
    window_planes: int
    learned: bool
    summary: str
    window_fixed: bool  # networks take a fixed window; classical methods accept --window


METHOD_SPECS: dict[Method, MethodSpec] = {
    Method.TFP: MethodSpec(Method.TFP, 41, False, "texture from playback: window mean (firing rate)", False),
    Method.TFI: MethodSpec(Method.TFI, 41, False, "texture from inter-spike interval: 1 / interval at the key", False),
    Method.LRN: MethodSpec(Method.LRN, 200, True, "SpikeCLIP LRN: 200 planes voxelised to 50, five 3x3 convs", True),
    Method.STIR: MethodSpec(Method.STIR, 61, True, "STIR: three 21-plane sub-streams, multi-scale flow + attention", True),
}

METHOD_NAMES: list[str] = [m.value for m in Method]


def method_spec(name: str | Method) -> MethodSpec:
    try:
        return METHOD_SPECS[Method(name)]
    except ValueError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}") from None
