"""The UHSR ``.npz`` layout (U-CALTECH / U-CIFAR real low-light captures): reader and writer.

Layout: one ``.npz`` per sample with ``spk`` ``uint8 (T, H, W)`` 0/1 planes the right way up,
``label`` (int64) and ``label_name`` (str, e.g. ``'4144_helicopter.jpg'``). The reader offers the
same plane access as ``DatReader`` (packed planes in camera order, upright unpacked planes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from firmware_io.atomic import atomic_path
from firmware_io.bitpack import pack_planes
from firmware_io.plane_range import PlaneRangeReader
from firmware_io.contract import FormatError, Geometry


class NpzReader(PlaneRangeReader):
    """Loads a UHSR sample; planes are packed once on open so plane access matches ``DatReader``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such spike file: {self.path}")
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if "spk" not in data.files:
                    raise FormatError(f"{self.path} has no 'spk' array (found {sorted(data.files)}); not a UHSR sample")
                spk = data["spk"]
                self.label = int(data["label"]) if "label" in data.files else None
                self.label_name = str(data["label_name"]) if "label_name" in data.files else None
        except (ValueError, OSError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"{self.path} is not a readable .npz file: {exc}") from exc
        if spk.ndim != 3 or spk.shape[0] == 0:
            raise FormatError(f"{self.path}: 'spk' must have shape (T, H, W) with T > 0, got {spk.shape}")
        if spk.size and spk.max(initial=0) > 1:
            raise FormatError(f"{self.path}: 'spk' must hold 0/1 values, found {int(spk.max())}")
        self.geometry = Geometry(int(spk.shape[1]), int(spk.shape[2]))
        self.n_planes = int(spk.shape[0])
        self._spk = spk.astype(np.uint8, copy=False)
        self._packed = pack_planes(self._spk)

    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        start, stop = self._range(start, stop)
        return self._packed[start:stop]

    def unpacked(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        start, stop = self._range(start, stop)
        return self._spk[start:stop]


def write_uhsr_npz(path: str | os.PathLike, planes: np.ndarray, label: int, label_name: str) -> Path:
    """Write one UHSR-layout sample atomically."""
    path = Path(path)
    planes = np.asarray(planes, dtype=np.uint8)
    if planes.ndim != 3:
        raise ValueError(f"planes must be (T, H, W), got {planes.shape}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, spk=planes, label=np.int64(label), label_name=np.str_(label_name))
    return path
