"""Stream statistics as pure functions on arrays: frame rate and per-stage latency percentiles.

Input is a mapping of per-frame columns (``numpy`` arrays of equal length), the layout
``host.record`` writes: the header timestamps ``capture_t_ns``, ``dequeue_t_ns``,
``infer_start_t_ns``, ``infer_end_t_ns``, ``publish_t_ns`` and the subscriber's ``recv_t_ns``
(all ``time.monotonic_ns()``, one clock per host). Nothing here touches sockets, so a live
stream and a recording are measured the same way.

Warm-up: frames received within ``warmup_s`` of the first frame are excluded (engines,
caches and socket buffers settle first). Percentiles use numpy's default linear interpolation.

A live measurement of any length uses ``StreamAccumulator`` instead of columns: frames are folded
in one at a time and memory stays fixed. Counts, min, max, mean and fps are exact; percentiles come
from a uniform fixed-size sample of each stage (``Reservoir``, Vitter's algorithm R with a seeded
generator), so they equal the column functions' while the frames fit the sample (65,536 by default)
and estimate them beyond that.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RECV_FIELD = "recv_t_ns"


@dataclass(frozen=True)
class Stage:
    name: str
    start: str  # column name of the stage's start timestamp
    stop: str


STAGES: tuple[Stage, ...] = (
    Stage("capture_to_dequeue", "capture_t_ns", "dequeue_t_ns"),
    Stage("dequeue_to_infer_start", "dequeue_t_ns", "infer_start_t_ns"),
    Stage("inference", "infer_start_t_ns", "infer_end_t_ns"),
    Stage("infer_end_to_publish", "infer_end_t_ns", "publish_t_ns"),
    Stage("publish_to_receive", "publish_t_ns", RECV_FIELD),
    Stage("capture_to_receive", "capture_t_ns", RECV_FIELD),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
TIMESTAMP_FIELDS = ("capture_t_ns", "dequeue_t_ns", "infer_start_t_ns", "infer_end_t_ns", "publish_t_ns", RECV_FIELD)


@dataclass(frozen=True)
class LatencySummary:
    """Latency of one stage in milliseconds over ``n`` frames (all None when ``n`` is 0)."""

    n: int
    min_ms: float | None = None
    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _column(columns: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in columns:
        raise KeyError(f"column {name!r} missing; have {sorted(columns)}")
    return np.asarray(columns[name], dtype=np.int64)


def warmup_mask(recv_t_ns: np.ndarray, warmup_s: float) -> np.ndarray:
    """True for frames received at least ``warmup_s`` after the first one."""
    if warmup_s < 0:
        raise ValueError(f"warmup_s must be >= 0, got {warmup_s}")
    recv = np.asarray(recv_t_ns, dtype=np.int64)
    if recv.size == 0:
        return np.zeros(0, dtype=bool)
    return recv - recv.min() >= int(round(warmup_s * 1e9))


def fps(recv_t_ns: np.ndarray) -> float | None:
    """Frames per second over the span of the given receive times (None for fewer than 2 frames)."""
    recv = np.asarray(recv_t_ns, dtype=np.int64)
    if recv.size < 2:
        return None
    span_ns = int(recv.max() - recv.min())
    return None if span_ns <= 0 else (recv.size - 1) * 1e9 / span_ns


def stage_latencies_ns(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-frame duration of every stage in ``STAGES`` (int64 nanoseconds)."""
    return {s.name: _column(columns, s.stop) - _column(columns, s.start) for s in STAGES}


def summarize_ns(values_ns: np.ndarray) -> LatencySummary:
    """min/mean/p50/p90/p99/max of durations given in nanoseconds, reported in milliseconds."""
    v = np.asarray(values_ns, dtype=np.float64) / 1e6
    if v.size == 0:
        return LatencySummary(n=0)
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return LatencySummary(
        n=int(v.size),
        min_ms=float(v.min()),
        mean_ms=float(v.mean()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        max_ms=float(v.max()),
    )


def latency_report(columns: Mapping[str, np.ndarray], warmup_s: float = 0.0) -> dict[str, LatencySummary]:
    """``summarize_ns`` of every stage over the frames after the warm-up."""
    keep = warmup_mask(_column(columns, RECV_FIELD), warmup_s)
    return {name: summarize_ns(values[keep]) for name, values in stage_latencies_ns(columns).items()}


def stream_report(columns: Mapping[str, np.ndarray], warmup_s: float = 0.0) -> dict[str, Any]:
    """Frames, measured frames, fps and per-stage latency (ms) as plain JSON-ready values."""
    recv = _column(columns, RECV_FIELD)
    keep = warmup_mask(recv, warmup_s)
    return {
        "frames": int(recv.size),
        "frames_measured": int(keep.sum()),
        "warmup_s": float(warmup_s),
        "fps": fps(recv[keep]),
        "latency_ms": {name: s.as_dict() for name, s in latency_report(columns, warmup_s).items()},
    }


DEFAULT_RESERVOIR = 65_536  # latency samples kept per stage (512 KiB each)


class Reservoir:
    """A uniform sample of at most ``capacity`` int64 values of a stream, with its exact count, min, max and sum."""

    def __init__(self, capacity: int = DEFAULT_RESERVOIR, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._values = np.empty(self.capacity, dtype=np.int64)
        self._rng = random.Random(seed)
        self.n = 0
        self.min: int | None = None
        self.max: int | None = None
        self._sum = 0

    def add(self, value: int) -> None:
        value = int(value)
        if self.n < self.capacity:
            self._values[self.n] = value
        else:
            slot = self._rng.randrange(self.n + 1)
            if slot < self.capacity:
                self._values[slot] = value
        self.n += 1
        self._sum += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    @property
    def sample(self) -> np.ndarray:
        """The values kept (all of them while ``n <= capacity``)."""
        return self._values[: min(self.n, self.capacity)]

    def summary(self) -> LatencySummary:
        """Like ``summarize_ns`` of every value added: exact n/min/mean/max, percentiles of the sample."""
        if self.n == 0:
            return LatencySummary(n=0)
        s = summarize_ns(self.sample)
        return LatencySummary(n=self.n, min_ms=self.min / 1e6, mean_ms=self._sum / self.n / 1e6, p50_ms=s.p50_ms,
                              p90_ms=s.p90_ms, p99_ms=s.p99_ms, max_ms=self.max / 1e6)


class StreamAccumulator:
    """``stream_report`` computed frame by frame in fixed memory (one ``Reservoir`` per stage).

    ``add`` takes one frame's timestamps (a mapping with every name in ``TIMESTAMP_FIELDS``, e.g. a
    ``host.record.frame_row``); ``report`` returns the same keys as ``stream_report``.
    """

    def __init__(self, warmup_s: float = 0.0, *, capacity: int = DEFAULT_RESERVOIR, seed: int = 0) -> None:
        if warmup_s < 0:
            raise ValueError(f"warmup_s must be >= 0, got {warmup_s}")
        self.warmup_s = float(warmup_s)
        self._warmup_ns = int(round(warmup_s * 1e9))
        self.frames = 0
        self.frames_measured = 0
        self._first_recv: int | None = None
        self._recv_min: int | None = None
        self._recv_max: int | None = None
        self.stages = {stage.name: Reservoir(capacity, seed + i) for i, stage in enumerate(STAGES)}

    def add(self, timestamps: Mapping[str, int]) -> None:
        recv = int(timestamps[RECV_FIELD])
        self.frames += 1
        if self._first_recv is None:
            self._first_recv = recv
        if recv - self._first_recv < self._warmup_ns:
            return
        self.frames_measured += 1
        self._recv_min = recv if self._recv_min is None else min(self._recv_min, recv)
        self._recv_max = recv if self._recv_max is None else max(self._recv_max, recv)
        for stage in STAGES:
            self.stages[stage.name].add(int(timestamps[stage.stop]) - int(timestamps[stage.start]))

    def fps(self) -> float | None:
        if self.frames_measured < 2 or self._recv_max <= self._recv_min:
            return None
        return (self.frames_measured - 1) * 1e9 / (self._recv_max - self._recv_min)

    def report(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "frames_measured": self.frames_measured,
            "warmup_s": self.warmup_s,
            "fps": self.fps(),
            "latency_ms": {name: r.summary().as_dict() for name, r in self.stages.items()},
        }
