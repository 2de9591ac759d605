"""The numpy backend: TFP and TFI behind the ``Reconstructor`` interface (CPU; the registry's ``numpy`` entry)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.reconstruction.backends.base import check_windows
from edge.reconstruction.classical import tfi, tfp_packed
from edge.reconstruction.methods import Method
from firmware_io.bitpack import unpack_planes
from firmware_io.contract import Geometry


@dataclass(frozen=True)
class ClassicalReconstructor:
    method: Method
    geometry: Geometry
    window_planes: int
    backend: str = "numpy"
    weights_id: str = "none"

    def __post_init__(self) -> None:
        if self.method not in (Method.TFP, Method.TFI):
            raise ValueError(f"{self.method.value} is not a classical method")
        minimum = 2 if self.method is Method.TFI else 1
        if self.window_planes < minimum:
            raise ValueError(f"{self.method.value} needs a window of at least {minimum} planes, got {self.window_planes}")

    def reconstruct(self, packed_windows: np.ndarray) -> np.ndarray:
        windows = check_windows(packed_windows, self.window_planes, self.geometry)
        out = np.empty((len(windows), *self.geometry.shape), dtype=np.float32)
        for i, window in enumerate(windows):
            if self.method is Method.TFP:
                tfp_packed(window, self.geometry, out=out[i])
            else:
                out[i] = tfi(unpack_planes(window, self.geometry))
        return out


def build(method: Method, geometry: Geometry, window_planes: int) -> ClassicalReconstructor:
    return ClassicalReconstructor(method, geometry, window_planes)
