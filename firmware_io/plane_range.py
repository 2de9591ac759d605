"""What every recording reader shares: half-open plane ranges, chunked iteration, context management.

A reader sets ``path`` and ``n_planes`` and implements ``packed(start, stop)``; this base adds range
checking (``_range``), ``iter_packed`` and the context-manager protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np


class PlaneRangeReader:
    path: Path
    n_planes: int

    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        """Resolve ``stop=None`` to the end and check ``[start, stop)`` lies inside the recording."""
        stop = self.n_planes if stop is None else stop
        if not (0 <= start <= stop <= self.n_planes):
            raise IndexError(f"plane range [{start}, {stop}) is outside [0, {self.n_planes}) of {self.path}")
        return start, stop

    def iter_packed(self, chunk_planes: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_plane, packed)`` chunks of at most ``chunk_planes`` planes covering ``[start, stop)``."""
        if chunk_planes <= 0:
            raise ValueError(f"chunk_planes must be positive, got {chunk_planes}")
        start, stop = self._range(start, stop)
        for first in range(start, stop, chunk_planes):
            yield first, self.packed(first, min(first + chunk_planes, stop))

    def __len__(self) -> int:
        return self.n_planes

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
