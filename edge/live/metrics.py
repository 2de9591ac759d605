"""The daemon's Prometheus metrics (``spike-edge run --metrics HOST:PORT``), served by prometheus_client.

What it costs the daemon's loop: per published frame, ``observe`` appends one tuple of the five
stage timestamps the wire header carries anyway to a list; every heartbeat (0.5 s) the daemon hands
``update`` the ``stats`` it has just computed for the heartbeat and its ``describe``, and the
pending timestamps are folded into the stage histograms with numpy (one ``searchsorted`` and
``bincount`` per stage). A scrape runs in prometheus_client's HTTP thread and reads only that
snapshot, under a lock: it never touches the ring, the worker or a socket. Values are therefore at
most a heartbeat old; ``spike_edge_snapshot_age_seconds`` (computed at scrape time) grows when the
loop stalls, since the HTTP thread keeps answering with the old snapshot.

Metrics (prefix ``spike_edge_``; the sources of the numbers are the daemon's ``stats`` keys, see
``edge.live.daemon``):

- counters: ``frames_total`` (published), ``windows_total``, ``planes_captured_total``,
  ``ring_overrun_planes_total`` (planes the worker lost to the ring's writer),
  ``ring_overwritten_unread_planes_total``, ``worker_skipped_windows_total`` (``latest`` policy),
  ``lost_windows_total``, ``source_gap_planes_total``, ``capture_gap_planes_total``,
  ``source_timeouts_total``, ``source_errors_total``, ``camera_reconnects_total``,
  ``discontinuities_total``, ``source_late_blocks_total``, ``source_dropped_blocks_total``,
  ``ring_writer_waits_total``, ``publish_waits_total``, ``control_requests_total``,
  ``control_errors_total``;
- gauges: ``frames_per_second``, ``subscribers``, ``ring_fill_planes``, ``ring_capacity_planes``,
  ``ring_fill_ratio``, ``source_behind_seconds``, ``capture_alive``, ``snapshot_age_seconds``;
- ``state`` (a state set: one series per daemon state, 1 for the current one) and ``stream_info``
  (stream id, source kind, method, backend, window, hop, policy, dtype as labels);
- ``stage_latency_seconds{stage=...}``: histograms per frame of ``capture_to_dequeue``,
  ``dequeue_to_infer_start``, ``inference``, ``infer_end_to_publish`` and ``capture_to_publish``;
- prometheus_client's own ``process_*`` (CPU seconds, resident memory, open files) and
  ``python_info``.

The daemon has no recorder of its own (recording is ``spike-host record``, a client), so there is
no recorder state to export here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from edge.live.sockets import BindError
from edge.protocol.endpoints import HttpAddress

log = logging.getLogger(__name__)

PREFIX = "spike_edge_"

#: ``stats`` key -> (counter name without ``_total``, help).
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("frames", "frames", "Frames published."),
    ("windows", "windows", "Windows reconstructed."),
    ("planes_captured", "planes_captured", "Planes the capture process wrote into the ring."),
    ("ring_overrun_planes", "ring_overrun_planes", "Planes the worker lost because the ring's writer overwrote them."),
    ("ring_overwritten_unread", "ring_overwritten_unread_planes", "Planes the writer overwrote before the worker released them."),
    ("worker_skipped_windows", "worker_skipped_windows", "Windows the worker skipped to stay on the newest (policy latest)."),
    ("lost_windows", "lost_windows", "Windows not produced because their planes were lost."),
    ("source_gap_planes", "source_gap_planes", "Planes the worker gave windows up for because the source never delivered them."),
    ("capture_gap_planes", "capture_gap_planes", "Planes the source skipped (an outage at its rate, blocks the camera dropped)."),
    ("source_timeouts", "source_timeouts", "Source reads that timed out."),
    ("source_errors", "source_errors", "Source errors."),
    ("camera_reconnects", "camera_reconnects", "Times the camera vanished and came back."),
    ("discontinuities", "discontinuities", "Source discontinuities (reconnects, index resets)."),
    ("source_late_blocks", "source_late_blocks", "Blocks a live simulator handed over after their due time."),
    ("source_dropped_blocks", "source_dropped_blocks", "Blocks the camera queue dropped (drop-oldest)."),
    ("writer_waits", "ring_writer_waits", "Times the ring's block-policy writer waited for space (deterministic replay)."),
    ("publish_waits", "publish_waits", "Times a lossless send waited for a slow subscriber."),
    ("control_requests", "control_requests", "Control requests served."),
    ("control_errors", "control_errors", "Control requests answered with an error."),
)

#: (stage label, start field index, stop field index) over ``observe``'s timestamp tuple.
TIMESTAMPS = ("capture_t_ns", "dequeue_t_ns", "infer_start_t_ns", "infer_end_t_ns", "publish_t_ns")
STAGES: tuple[tuple[str, int, int], ...] = (
    ("capture_to_dequeue", 0, 1),
    ("dequeue_to_infer_start", 1, 2),
    ("inference", 2, 3),
    ("infer_end_to_publish", 3, 4),
    ("capture_to_publish", 0, 4),
)
#: Histogram bucket bounds in seconds: 50 us (TFP stages) to 10 s (a network on a slow CPU).
BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
             2.5, 5.0, 10.0)
INFO_KEYS = ("stream_id", "method", "backend", "window", "hop", "policy", "dtype")
MAX_PENDING_FRAMES = 65_536  # fold early rather than let the list grow when updates are late


class StageHistograms:
    """Cumulative bucket counts and sums of the per-stage latencies (filled by ``fold``)."""

    def __init__(self) -> None:
        self.bounds_s = np.array(BUCKETS_S)
        self.counts = np.zeros((len(STAGES), len(BUCKETS_S) + 1), dtype=np.int64)  # last: above every bound
        self.sums_s = np.zeros(len(STAGES))

    def fold(self, stamps: list[tuple[int, int, int, int, int]]) -> None:
        """Add the stage durations of frames given as timestamp tuples (``TIMESTAMPS``, monotonic ns)."""
        if not stamps:
            return
        t = np.array(stamps, dtype=np.int64)
        for i, (_, start, stop) in enumerate(STAGES):
            seconds = np.maximum(t[:, stop] - t[:, start], 0) / 1e9
            # bucket i counts bounds[i-1] < v <= bounds[i] (Prometheus buckets are "less or equal")
            self.counts[i] += np.bincount(np.searchsorted(self.bounds_s, seconds, side="left"),
                                          minlength=len(BUCKETS_S) + 1)
            self.sums_s[i] += float(seconds.sum())

    def families(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(PREFIX + "stage_latency_seconds",
                                       "Per-frame latency of each pipeline stage (one monotonic clock).", labels=["stage"])
        for i, (stage, _, _) in enumerate(STAGES):
            cumulative = np.cumsum(self.counts[i])
            buckets = [(repr(bound), int(n)) for bound, n in zip(BUCKETS_S, cumulative)]
            buckets.append(("+Inf", int(cumulative[-1])))
            family.add_metric([stage], buckets, float(self.sums_s[i]))
        return family


class DaemonMetrics(Collector):
    """The daemon's metrics: fed by its loop (``observe``, ``update``), read by scrapes (``collect``)."""

    def __init__(self, *, ring_capacity_planes: int, states: Iterable[str]) -> None:
        self.ring_capacity_planes = ring_capacity_planes
        self.states = tuple(states)
        self._pending: list[tuple[int, int, int, int, int]] = []
        self._lock = threading.Lock()
        self._histograms = StageHistograms()
        self._stats: dict[str, Any] = {}
        self._info: dict[str, str] = {}
        self._updated_t: float | None = None
        self.registry = CollectorRegistry()
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._server = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- the daemon's side ------------------------------------------------------------------------
    def observe(self, capture_t_ns: int, dequeue_t_ns: int, infer_start_t_ns: int, infer_end_t_ns: int,
                publish_t_ns: int) -> None:
        """One published frame's stage timestamps (a list append; folded at the next ``update``)."""
        self._pending.append((capture_t_ns, dequeue_t_ns, infer_start_t_ns, infer_end_t_ns, publish_t_ns))
        if len(self._pending) >= MAX_PENDING_FRAMES:
            self._fold()

    def update(self, stats: Mapping[str, Any], describe: Mapping[str, Any]) -> None:
        """A new snapshot: the daemon's ``stats`` and ``describe`` (called every heartbeat)."""
        info = {key: str(describe.get(key, "")) for key in INFO_KEYS}
        info["source"] = str((describe.get("source") or {}).get("kind", ""))
        with self._lock:
            self._stats = dict(stats)
            self._info = info
            self._updated_t = time.monotonic()
        self._fold()

    def _fold(self) -> None:
        pending, self._pending = self._pending, []
        with self._lock:
            self._histograms.fold(pending)

    # -- the scrape's side ------------------------------------------------------------------------
    def collect(self):
        with self._lock:
            stats, info, updated_t = self._stats, self._info, self._updated_t
            histograms = self._histograms.families()
        if updated_t is None:  # nothing yet: only what is known before the first heartbeat
            yield GaugeMetricFamily(PREFIX + "ring_capacity_planes", "Ring capacity in planes.",
                                    value=self.ring_capacity_planes)
            return
        for key, name, help_text in COUNTERS:
            if stats.get(key) is not None:
                yield CounterMetricFamily(PREFIX + name, help_text, value=stats[key])
        fill = stats.get("ring_fill_planes") or 0
        gauges = (
            ("frames_per_second", "Published frames per second (recent frames).", stats.get("fps", 0.0)),
            ("subscribers", "Connected frame subscribers.", stats.get("subscribers", 0)),
            ("ring_fill_planes", "Planes in the ring the worker has not released yet.", fill),
            ("ring_capacity_planes", "Ring capacity in planes.", self.ring_capacity_planes),
            ("ring_fill_ratio", "Ring fill over its capacity (0..1).", min(1.0, fill / self.ring_capacity_planes)),
            ("source_behind_seconds", "How far a live simulator is behind its schedule.",
             (stats.get("source_behind_ms") or 0.0) / 1000),
            ("capture_alive", "1 while the capture process is alive.", 1 if stats.get("capture_alive") else 0),
            ("snapshot_age_seconds", "Seconds since the daemon's loop last refreshed these metrics "
                                     "(grows when the loop stalls).", time.monotonic() - updated_t),
        )
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(PREFIX + name, help_text, value=value)
        yield StateSetMetricFamily(PREFIX + "state", "The daemon's state.",
                                   value={state: state == stats.get("state") for state in self.states})
        yield InfoMetricFamily(PREFIX + "stream", "What the daemon runs.", value=info)
        yield histograms

    # -- the HTTP server --------------------------------------------------------------------------
    def serve(self, address: HttpAddress) -> str:
        """Serve ``/metrics`` on ``address`` from a background thread; returns its URL (``BindError``)."""
        try:
            self._server, self._thread = start_http_server(address.port, address.host, registry=self.registry)
        except OSError as exc:
            raise BindError(f"cannot serve metrics on {address}: {exc}") from exc
        self.port = self._server.server_port
        url = address.url(self.port) + "/metrics"
        if not address.loopback:
            log.warning("metrics on %s are not loopback and have no authentication (--insecure): any host that "
                        "reaches this port can read them", url)
        return url

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
