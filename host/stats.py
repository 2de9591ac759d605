"""Stream statistics as pure functions on arrays: frame rate and per-stage latency percentiles.

Input is a mapping of per-frame columns (``numpy`` arrays of equal length), the layout
``host.record`` writes: the header timestamps ``capture_t_ns``, ``dequeue_t_ns``,
``infer_start_t_ns``, ``infer_end_t_ns``, ``publish_t_ns`` and the subscriber's ``recv_t_ns``
(all ``time.monotonic_ns()``, one clock per host). Nothing here touches sockets, so a live
stream and a recording are measured the same way.

Warm-up: frames received within ``warmup_s`` of the first frame are excluded (engines,
caches and socket buffers settle first). Percentiles use numpy's default linear interpolation.
"""

from __future__ import annotations

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
