"""Raw recording while streaming (``spike-edge run --record DIR``): the recorder process and the daemon's handle on it.

Every plane the capture received goes, bit for bit, into a recording folder
(``firmware_io.segments``: rotating ``.dat`` segments, a JSON sidecar each). Where it runs:

- the capture process copies each block it puts in the plane ring into a second ring, the *record
  ring* (``edge.live.ring.SpikeRing``, ``--record-buffer-mb`` of shared memory, same writer policy as
  the plane ring), one ``memcpy`` per block;
- this process, started by the daemon beside the capture process, is the record ring's one reader:
  it copies spans out through ``RingReader`` and hands them to ``SegmentedWriter`` (write, sha256,
  rotation; closed segments are fsynced in the background).

So disk I/O, hashing and fsync never run in the capture process or the daemon's loop, and the
recorder runs at a lower CPU priority (``RECORDER_NICE``): when the CPUs are short, the stream keeps
them and the recorder falls behind, which it reports, rather than the other way round. In live modes
(camera, simulator, ``--realtime``) the record ring overwrites: the capture never waits for the
recorder, and a recorder that falls more than its buffer behind finds its planes overwritten. It
then *drops*: it skips ahead to half a buffer behind the newest plane (room to catch up), records the
skipped planes as a ``dropped`` gap in the sidecar, counts them (``record_dropped_planes``,
``record_drops``) and reports a ``record-dropped`` event (at most one a second). Planes the source
never delivered are ``source-gap`` gaps and ``record_source_gap_planes``, never drops: the record
ring's count of skipped planes keeps them apart even when an outage is longer than the buffer. In a
deterministic replay the record ring blocks like the plane ring: the replay waits for the recorder
too, and the recording holds every plane.

Limits are checked before every write (``SegmentedWriter``): ``--record-max-mb`` (a quota) and
``--record-min-free-mb`` (free space to leave on the file system; ENOSPC/EDQUOT count the same).
Reaching one *stops* the recording: the planes that fit are written, the last segment is closed,
the state becomes ``stopped``, a ``record-stopped`` event says why, and the recorder asks the
capture (the record ring's stop flag) to feed it no more, so the stream goes on unaffected. An I/O
error does the same with state ``failed``.

What the daemon reports (``RecorderProcess.stats``, in ``stats`` and every heartbeat):
``record_state`` (``RecordState``), ``record_planes``, ``record_bytes``, ``record_segments``,
``record_dropped_planes``, ``record_drops``, ``record_source_gap_planes`` (planes the source never
delivered, recorded as ``source-gap`` gaps) and ``record_behind_planes`` (planes captured but not yet
written). ``health`` adds ``record_state``, ``record_alive``, ``record_pid`` and ``record_stop_reason``.
The counters live in a small shared array that only this process writes, so reading them costs the
daemon nothing.

Ending: when the capture has finished (the record ring's state), the recorder writes what is left in
its buffer and closes the last segment; the daemon waits for that (``finish``), then SIGTERM (stop
now, close the segment), then SIGKILL. Like the capture process it ignores SIGINT and finishes by
itself when the daemon disappears. After a SIGKILL the last segment is ``open`` and readable up to
its last whole plane (``firmware_io.segments``).

Design: alternatives considered were writing from the capture process (a disk stall or an fsync
would stall the capture), a ``multiprocessing.Queue`` of blocks to a recorder (pickling 500 MB/s,
unbounded memory), and the recorder as a second reader of the plane ring (no extra copy, but its
slack would be the plane ring's 100 ms, and the ring's ``block`` policy would need a second release
mark). The record ring costs one ``memcpy`` per block in the capture (about 0.1 s of CPU per GB here)
and gives the recorder a buffer of its own size, so a recording can ride out disk hiccups that the
plane ring, sized for latency, could not.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.live.ring import OPEN, Gap, GapCause, RingReader, SpikeRing
from firmware_io.contract import Geometry
from firmware_io.plane_range import MissingCause
from firmware_io.segments import RecordingFull, SegmentedWriter

log = logging.getLogger(__name__)

MB = 1_000_000  # the option's unit: --record-*-mb are megabytes of 10^6 bytes
DEFAULT_SEGMENT_MB = 1024
DEFAULT_BUFFER_MB = 512
DEFAULT_MIN_FREE_MB = 1024
CHUNK_BYTES = 8 * MB  # most planes copied out and written at once (and at most a quarter of the buffer)
MIN_BUFFER_PLANES = 64
POLL_S = 0.001
DROP_EVENT_MIN_INTERVAL_S = 1.0
PARENT_CHECK_S = 0.5
FINISH_TIMEOUT_S = 60.0  # the daemon waits this long for the buffer to be written and the segment closed
RECORDER_NICE = 10  # added to the recorder process's nice value: the stream comes first


class RecordState(enum.IntEnum):
    """The recorder's state; ``name.lower()`` is what ``stats`` and ``health`` send as ``record_state``."""

    OFF = 0  # no --record
    STARTING = 1
    RECORDING = 2
    STOPPED = 3  # a limit (quota, free space) stopped it; the stream goes on
    FAILED = 4  # it could not write (I/O error, cannot create the folder) or died
    ENDED = 5  # the capture finished and every plane it delivered is written

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class RecordSettings:
    """What ``--record DIR`` and its options say (sizes in bytes; ``max_bytes`` None: no quota)."""

    folder: str
    segment_bytes: int = DEFAULT_SEGMENT_MB * MB
    buffer_bytes: int = DEFAULT_BUFFER_MB * MB
    max_bytes: int | None = None
    min_free_bytes: int = DEFAULT_MIN_FREE_MB * MB

    def buffer_planes(self, geometry: Geometry) -> int:
        """The record ring's capacity: ``buffer_bytes`` of planes (at least ``MIN_BUFFER_PLANES``)."""
        return max(self.buffer_bytes // geometry.plane_bytes, MIN_BUFFER_PLANES)

    def describe(self) -> dict[str, Any]:
        return {"folder": self.folder, "segment_bytes": self.segment_bytes, "buffer_bytes": self.buffer_bytes,
                "max_bytes": self.max_bytes, "min_free_bytes": self.min_free_bytes}


# The shared counters: int64 slots, written by the recorder process only.
_C = {name: i for i, name in enumerate(("state", "planes", "bytes", "segments", "dropped_planes", "drops",
                                        "source_gap_planes", "cursor"))}


class _Counters:
    def __init__(self, array) -> None:
        self.array = array

    def get(self, name: str) -> int:
        return int(self.array[_C[name]])

    def set(self, name: str, value: int) -> None:
        self.array[_C[name]] = int(value)

    def add(self, name: str, n: int = 1) -> None:
        self.array[_C[name]] += int(n)


# -- the child process ----------------------------------------------------------------------------
def recorder_main(settings: RecordSettings, meta: dict[str, Any], ring_name: str, counters_array, events,
                  parent_pid: int) -> None:
    """Entry point of the recorder process (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_now = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop_now.__setitem__("flag", True))
    os.nice(RECORDER_NICE)
    counters = _Counters(counters_array)
    ring = SpikeRing.attach(ring_name)
    try:
        geometry = Geometry(ring.get("height"), ring.get("width"))
        try:
            writer = SegmentedWriter(settings.folder, geometry, ring.get("rate_mhz") / 1000,
                                     segment_bytes=settings.segment_bytes, max_bytes=settings.max_bytes,
                                     min_free_bytes=settings.min_free_bytes, meta=meta)
        except (ValueError, OSError) as exc:
            _give_up(ring, counters, events, RecordState.FAILED, f"cannot record into {settings.folder}: {exc}")
            return
        counters.set("state", RecordState.RECORDING)
        events.put(("record-started", f"recording into {settings.folder}"))
        _Recording(ring, writer, counters, events, stop_now, parent_pid).run()
    finally:
        ring.close()


def _give_up(ring: SpikeRing, counters: _Counters, events, state: RecordState, message: str) -> None:
    """Stop recording for good: the state, one event, and the capture told to feed no more."""
    counters.set("state", state)
    ring.request_stop()
    events.put(("record-stopped" if state is RecordState.STOPPED else "record-failed", message))


class _Recording:
    """The recorder's loop: record ring -> ``SegmentedWriter``, gaps and drops accounted."""

    def __init__(self, ring: SpikeRing, writer: SegmentedWriter, counters: _Counters, events, stop_now: dict,
                 parent_pid: int) -> None:
        self.ring, self.writer, self.counters, self.events = ring, writer, counters, events
        self.stop_now, self.parent_pid = stop_now, parent_pid
        self.reader = RingReader(ring)
        self.chunk_planes = max(1, min(CHUNK_BYTES // ring.plane_bytes, ring.capacity // 4))
        self.last_drop_event = 0.0
        self.dropped_since_event = 0
        self.source_gap_seen = 0  # of the writer's skipped planes (its source_gap_planes), those behind the cursor

    def run(self) -> None:
        ring, counters = self.ring, self.counters
        cursor: int | None = None
        limit: int | None = None  # read no further than this (the intact planes before a gap)
        finishing = False  # the daemon is gone: write what is committed, then end
        check_parent_at = time.monotonic()
        try:
            while not self.stop_now["flag"]:
                now = time.monotonic()
                if now >= check_parent_at:
                    check_parent_at = now + PARENT_CHECK_S
                    finishing = finishing or os.getppid() != self.parent_pid
                finished = ring.finished or finishing  # read before committed: nothing arrives after both
                first, committed = ring.get("first_plane"), ring.committed
                if cursor is None and first >= 0:
                    cursor = first
                if cursor is None or cursor >= committed:
                    if finished:
                        break
                    time.sleep(POLL_S)
                    continue
                stop = min(committed, cursor + self.chunk_planes, limit if limit is not None else committed)
                got = self.reader.read(cursor, stop)
                if isinstance(got, Gap):
                    if got.first_plane > cursor:
                        limit = got.first_plane  # the planes before the gap first
                        continue
                    cursor = self._skip(cursor, got)
                else:
                    unix_ns = time.time_ns() - (time.monotonic_ns() - int(got.t_ns[0]))
                    try:
                        self.writer.write(cursor, got.planes, unix_ns)
                    except RecordingFull as exc:
                        self._count_written()
                        self.writer.close()
                        _give_up(ring, counters, self.events, RecordState.STOPPED, str(exc))
                        return
                    self._count_written()
                    cursor = stop
                if limit is not None and cursor >= limit:
                    limit = None
                counters.set("cursor", cursor)
                self.reader.release(cursor)
            self._flush_drop_event()
            self.writer.close()
            self._count_written()
            left = ring.committed - cursor if cursor is not None else 0
            if left > 0:  # SIGTERM: stopped before the buffer was written
                _give_up(ring, counters, self.events, RecordState.STOPPED,
                         f"stopped by the daemon with {left} captured planes not written")
                return
            counters.set("state", RecordState.ENDED)
            self.events.put(("record-ended", f"{self.writer.planes_written} planes in {self.writer.segments} "
                                             f"segment(s) in {self.writer.folder}"))
        except OSError as exc:
            try:
                self.writer.close()
            except OSError:
                pass  # the segment stays open: readable up to its last whole plane
            _give_up(ring, counters, self.events, RecordState.FAILED, f"writing {self.writer.folder}: {exc}")

    def _count_written(self) -> None:
        self.counters.set("planes", self.writer.planes_written)
        self.counters.set("bytes", self.writer.bytes_written)
        self.counters.set("segments", self.writer.segments)

    def _skip(self, cursor: int, gap: Gap) -> int:
        """Step over the missing planes starting at ``cursor``; the new cursor."""
        if gap.cause is GapCause.SOURCE_GAP:
            end = _source_gap_end(self.ring, cursor, gap.stop_plane)
            self._count_source_gap(end - cursor)
            self.writer.gap(cursor, end, MissingCause.SOURCE_GAP)
            return end
        # Overrun: planes we had not read were overwritten, or the writer moved more than the buffer past the
        # cursor because the source skipped planes (an outage longer than the buffer). Resume half a buffer
        # behind the newest plane (room to catch up); of the planes skipped, the writer's count of planes the
        # source never delivered tells how many were not ours to lose (their positions it does not tell).
        committed = self.ring.committed
        skipped_by_source = self.ring.get("source_gap_planes") - self.source_gap_seen
        resume = max(gap.stop_plane, committed - self.ring.capacity // 2)
        index = np.arange(resume, committed, dtype=np.int64)
        stamps = self.ring.stamps[index % self.ring.capacity]
        later = int(np.count_nonzero((stamps != index) & (stamps != OPEN)))  # source-gap planes after resume
        undelivered = min(max(skipped_by_source - later, 0), resume - cursor)
        dropped = resume - cursor - undelivered
        self._count_source_gap(undelivered)
        self.writer.gap(cursor, resume, MissingCause.DROPPED if dropped else MissingCause.SOURCE_GAP)
        if dropped:
            self.counters.add("dropped_planes", dropped)
            self.counters.add("drops")
            self.dropped_since_event += dropped
            if time.monotonic() - self.last_drop_event >= DROP_EVENT_MIN_INTERVAL_S:
                self._flush_drop_event()
        return resume

    def _count_source_gap(self, n: int) -> None:
        self.source_gap_seen += n
        self.counters.add("source_gap_planes", n)

    def _flush_drop_event(self) -> None:
        if self.dropped_since_event:
            self.last_drop_event = time.monotonic()
            self.events.put(("record-dropped", f"the recorder fell behind and dropped {self.dropped_since_event} "
                                               f"planes ({self.counters.get('dropped_planes')} so far); the sidecar "
                                               f"lists them as 'dropped' gaps"))
            self.dropped_since_event = 0


def _source_gap_end(ring: SpikeRing, start: int, stop: int) -> int:
    """The first plane of ``[start, stop)`` that the ring holds (``stop`` if none): where a source gap ends.

    Only locates; the planes from there are read (and checked) through ``RingReader`` like any others.
    """
    index = np.arange(start, stop, dtype=np.int64)
    present = np.flatnonzero(ring.stamps[index % ring.capacity] == index)
    return start + int(present[0]) if len(present) else stop


# -- the daemon's handle ----------------------------------------------------------------------------
def record_stats_off() -> dict[str, Any]:
    """The ``record_*`` keys of ``stats`` when the daemon does not record."""
    return {"record_state": RecordState.OFF.label, "record_planes": 0, "record_bytes": 0, "record_segments": 0,
            "record_dropped_planes": 0, "record_drops": 0, "record_source_gap_planes": 0, "record_behind_planes": 0}


def record_health_off() -> dict[str, Any]:
    """The ``record_*`` keys of ``health`` when the daemon does not record."""
    return {"record_state": RecordState.OFF.label, "record_alive": False, "record_pid": None, "record_stop_reason": None}


class RecorderProcess:
    """The record ring (owned here) and the recorder process: start, watch, report, finish."""

    def __init__(self, settings: RecordSettings, ring: SpikeRing, meta: dict[str, Any]) -> None:
        self.settings = settings
        self.ring = ring
        ctx = mp.get_context("spawn")
        self.events = ctx.Queue()
        self.counters = _Counters(ctx.Array("q", len(_C), lock=False))
        self.counters.set("state", RecordState.STARTING)
        self.stop_reason: str | None = None
        self.process = ctx.Process(target=recorder_main, name="spike-recorder", daemon=True,
                                   args=(settings, meta, ring.name, self.counters.array, self.events, os.getpid()))

    def start(self, ready_timeout_s: float = 30.0) -> bool:
        """Start the process and wait until it records (or gave up); False if it never got going."""
        self.process.start()
        deadline = time.monotonic() + ready_timeout_s
        while self.state is RecordState.STARTING and self.process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.state is RecordState.RECORDING

    @property
    def state(self) -> RecordState:
        return RecordState(self.counters.get("state"))

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def poll_events(self) -> list[tuple[str, Any]]:
        out = []
        while True:
            try:
                kind, text = self.events.get_nowait()
            except (queue.Empty, EOFError, OSError):
                break
            if kind in ("record-stopped", "record-failed"):
                self.stop_reason = text
            out.append((kind, text))
        if self.state in (RecordState.STARTING, RecordState.RECORDING) and self.process.exitcode is not None:
            self.counters.set("state", RecordState.FAILED)  # died without saying why
            self.ring.request_stop()  # the capture must not wait for it (block policy)
            self.stop_reason = f"the recorder process exited (code {self.process.exitcode})"
            out.append(("record-failed", self.stop_reason))
        return out

    def stats(self) -> dict[str, Any]:
        c = self.counters
        behind = 0
        if self.state is RecordState.RECORDING and self.ring.get("first_plane") >= 0:
            behind = max(0, self.ring.committed - max(c.get("cursor"), self.ring.get("first_plane")))
        return {"record_state": self.state.label, "record_planes": c.get("planes"), "record_bytes": c.get("bytes"),
                "record_segments": c.get("segments"), "record_dropped_planes": c.get("dropped_planes"),
                "record_drops": c.get("drops"), "record_source_gap_planes": c.get("source_gap_planes"),
                "record_behind_planes": behind}

    def health(self) -> dict[str, Any]:
        return {"record_state": self.state.label, "record_alive": self.alive, "record_pid": self.process.pid,
                "record_stop_reason": self.stop_reason}

    def finish(self, writer_state: int, timeout_s: float = FINISH_TIMEOUT_S) -> int | None:
        """After the capture has stopped: let the recorder write its buffer and close, then SIGTERM, then
        SIGKILL. ``writer_state``: the ``WriterState`` to leave in the record ring if the capture did not."""
        if self.process.pid is None:
            return None
        if not self.ring.finished:
            self.ring.set("state", writer_state)  # the capture died without finishing its side
        self.process.join(timeout_s)
        if self.process.is_alive():
            log.warning("the recorder did not finish within %.0f s; stopping it (the last segment stays open)",
                        timeout_s)
            self.process.terminate()
            self.process.join(5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(1.0)
        self.events.cancel_join_thread()
        return self.process.exitcode

    def close(self) -> None:
        self.ring.close()
