"""What every recording reader shares: half-open plane ranges, missing planes, chunked iteration, context management.

A reader sets ``path`` and ``n_planes`` and implements ``packed(start, stop)``; this base adds range
checking (``_range``), ``iter_packed`` and the context-manager protocol.

Missing planes: a single file holds every plane of ``[0, n_planes)``; a recording folder
(``firmware_io.segments``) may not, when the stream it recorded had gaps. Such a reader lists them
in ``gaps`` (``MissingRange``: a half-open range and its ``MissingCause``), and ``packed`` of a range
touching one raises ``MissingPlanesError``. ``present_runs``, ``gap_in``, ``next_present`` and
``run_stop`` let callers walk around them; ``iter_packed`` yields only planes that are there.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


class MissingCause(str, enum.Enum):
    """Why planes of a recorded stream are not in the recording (the ``cause`` of a sidecar gap)."""

    SOURCE_GAP = "source-gap"  # the source never delivered them (camera frames lost, an outage)
    DROPPED = "dropped"  # captured, but the recorder fell behind and dropped them
    UNKNOWN = "unknown"  # not accounted for (a segment whose sidecar is missing)


@dataclass(frozen=True)
class MissingRange:
    """Planes ``[start, stop)`` that the recording does not hold, and why."""

    start: int
    stop: int
    cause: MissingCause

    @property
    def n_planes(self) -> int:
        return self.stop - self.start


class MissingPlanesError(ValueError):
    """Planes were asked for that the recording does not hold (a gap of the recorded stream)."""


class PlaneRangeReader:
    path: Path
    n_planes: int
    #: Ranges of ``[0, n_planes)`` the recording does not hold, sorted and disjoint (none for a single file).
    gaps: tuple[MissingRange, ...] = ()

    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        """Resolve ``stop=None`` to the end and check ``[start, stop)`` lies inside the recording."""
        stop = self.n_planes if stop is None else stop
        if not (0 <= start <= stop <= self.n_planes):
            raise IndexError(f"plane range [{start}, {stop}) is outside [0, {self.n_planes}) of {self.path}")
        return start, stop

    # -- missing planes -------------------------------------------------------------------------
    @property
    def recorded_planes(self) -> int:
        """Planes the recording holds (``n_planes`` less the gaps)."""
        return self.n_planes - sum(gap.n_planes for gap in self.gaps)

    def gap_in(self, start: int, stop: int) -> MissingRange | None:
        """The first gap overlapping ``[start, stop)``, or None when every plane of it is there."""
        if not self.gaps:
            return None
        cached = self.__dict__.get("_gap_stops")
        if cached is None or cached[0] is not self.gaps:
            cached = self.__dict__["_gap_stops"] = (self.gaps, [gap.stop for gap in self.gaps])
        i = bisect.bisect_right(cached[1], start)
        if i < len(self.gaps) and self.gaps[i].start < stop:
            return self.gaps[i]
        return None

    def next_present(self, plane: int) -> int:
        """The first plane at or after ``plane`` that the recording holds (``n_planes`` if none)."""
        while plane < self.n_planes and (gap := self.gap_in(plane, plane + 1)) is not None:
            plane = gap.stop  # gaps of different causes may touch
        return min(plane, self.n_planes)

    def run_stop(self, plane: int) -> int:
        """The end of the stored piece holding ``plane``: ``packed(plane, s)`` for ``s <= run_stop(plane)``
        touches no gap (and, where the reader can, is a zero-copy view). A single file: ``n_planes``."""
        gap = self.gap_in(plane, self.n_planes)
        return self.n_planes if gap is None else gap.start

    def present_runs(self, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
        """The ranges of ``[start, stop)`` that the recording holds, in order."""
        start, stop = self._range(start, stop)
        runs, pos = [], start
        for gap in self.gaps:
            if gap.stop <= pos:
                continue
            if gap.start >= stop:
                break
            if gap.start > pos:
                runs.append((pos, gap.start))
            pos = gap.stop
        if pos < stop:
            runs.append((pos, stop))
        return runs

    def iter_packed(self, chunk_planes: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_plane, packed)`` chunks of at most ``chunk_planes`` planes covering the planes of
        ``[start, stop)`` that the recording holds (gaps are stepped over)."""
        if chunk_planes <= 0:
            raise ValueError(f"chunk_planes must be positive, got {chunk_planes}")
        for run_start, run_stop in self.present_runs(start, stop):
            for first in range(run_start, run_stop, chunk_planes):
                yield first, self.packed(first, min(first + chunk_planes, run_stop))

    def __len__(self) -> int:
        return self.n_planes

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
