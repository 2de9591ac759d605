"""The capture side: a process of its own that reads a spike source and writes the plane ring.

The daemon describes the source with a picklable source configuration (``edge.live.sources``:
replay file + options, simulated scene, or camera) and starts ``CaptureProcess``
(multiprocessing, *spawn* context: no inherited threads, sockets or CUDA state). The child opens
the source itself, attaches the ring by name and loops ``read`` -> ``ring.write``. In the ring's
``overwrite`` policy that loop never waits on the worker; in ``block`` policy (deterministic
replay) it waits for space, so nothing is lost.

What the child reports, and where:

- counters in the ring header (timeouts, errors, reconnects, source-gap planes, blocks, writer
  liveness time), read by the daemon at no cost for stats and heartbeats;
- rare events through a ``multiprocessing`` queue (``put`` never blocks the child): ``started``,
  ``error`` (rate-limited), ``reconnect``, ``discontinuity``, ``behind``, ``end-of-stream``,
  ``fatal``;
- its final state in the header (``ENDED``, ``FAILED``, ``STOPPED``) and its exit code;
- what the opened source's own ``status()`` says (a camera: its library's state, last error and
  reconnects), where it has one, as a ``source-status`` event when it changes (checked every
  ``STATUS_PERIOD_S``).
- progress: ``writer_t_ns`` in the header is stamped on every pass of the loop (and while a
  ``block`` writer waits for space), so a child that stops making progress (SIGSTOP, a read that
  hangs in the vendor SDK) shows as a stale stamp; the daemon calls that a stall;
- new data: after every block written (and once more at its end) the child writes one byte
  to a pipe (``CaptureProcess.wake_fd``; a full pipe drops the byte, the daemon drains it), so the
  daemon sleeps in ``poll`` on that pipe and its sockets instead of waking on a timer.

Plane indices: the ring is indexed by the source's plane indices. A source that jumps forward
(camera frames lost) leaves a source gap the reader sees explicitly; one that goes back (a camera
whose counter restarted after a reconnect) is rebased to continue after the newest plane, and the
discontinuity is counted and reported.

What differs between sources is asked of the source configuration, never of its kind:

- read errors: a source with ``recoverable_errors`` (the camera, which reconnects by itself) gets an
  ``error`` event and the ``errors`` counter, then a ``reconnect`` event and the ``reconnects`` /
  ``discontinuities`` counters, and reading goes on; for any other source an error is fatal (exit 3).
  An outage's planes (its length at ``rate_hz``) are a forward jump of the plane index: the ring
  counts them in ``source_gap_planes`` and the worker flags the next frame as a discontinuity;
- running behind: a source with a ``schedule`` (the simulated camera, which never skips planes)
  has ``behind_us`` kept in the header and a rate-limited ``behind`` event when it is late;
- the opened source's own loss counters, where it keeps them: ``late_blocks`` (blocks made after
  their due time), ``dropped_blocks`` (the camera queue's drop-oldest; their planes are a source
  gap too) are mirrored into the header.

Design: counters rather than events for everything that can happen often (the daemon reads the
header for every stats reply and heartbeat); the alternative, the source's own ``stats()``
shipped through the event queue, would add pickling in the capture loop and a second, delayed
view of the same numbers.

Raw recording (``--record``, ``edge.live.recorder``): the daemon also hands over the name of the
record ring; each block written to the plane ring is then copied into it too (same indices, same
writer policy, so a live capture never waits for the recorder), until the recorder raises that ring's
stop flag (it stopped or failed). The plane ring's final state is copied to it when the loop ends, so
the recorder knows when it has everything.

The child ignores SIGINT (the daemon owns shutdown and tells the child through the ring's stop
flag), stops on SIGTERM, and stops by itself when its parent disappears.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from typing import Any

from edge.live.ring import SpikeRing, WriterState
from edge.live.sources import SourceConfig, kind_of
from firmware_io.contract import ReadStatus

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05
ERROR_EVENT_MIN_INTERVAL_S = 1.0
BEHIND_EVENT_AFTER_S = 1.0  # a source this far behind its schedule is reported ...
BEHIND_EVENT_MIN_INTERVAL_S = 10.0  # ... at most this often
STATUS_PERIOD_S = 0.5


# -- the child process ----------------------------------------------------------------------------
class _Notifier:
    """The child's end of the wake pipe: one byte per notification, never blocking (a full pipe already wakes)."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self._fd = conn.fileno()
        os.set_blocking(self._fd, False)

    def __call__(self) -> None:
        try:
            os.write(self._fd, b"\x01")
        except (BlockingIOError, BrokenPipeError):
            pass


def capture_main(spec: SourceConfig, ring_name: str, events, parent_pid: int,
                 record_ring_name: str | None = None, wake=None) -> None:
    """Entry point of the capture process. Exit code 0 (end-of-stream or stopped) or 3 (failure)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    ring = SpikeRing.attach(ring_name)
    ring.set("writer_pid", os.getpid())
    record = SpikeRing.attach(record_ring_name) if record_ring_name else None
    notify = _Notifier(wake) if wake is not None else (lambda: None)
    code = 0
    try:
        try:
            source = spec.open()
        except Exception as exc:  # any failure to open is reported, then the process ends
            ring.set("state", int(WriterState.FAILED))
            events.put(("fatal", f"cannot open the {kind_of(spec).value} source: {type(exc).__name__}: {exc}"))
            code = 3
        else:
            with source:
                ring.set("writer_t_ns", time.monotonic_ns())
                ring.set("state", int(WriterState.RUNNING))
                events.put(("started", {"geometry": str(source.geometry), "rate_hz": float(source.rate_hz)}))
                code = _capture_loop(source, ring, events, spec, stop, parent_pid, record, notify)
    finally:
        if record is not None:  # nothing more comes: the recorder writes what it has, then ends
            record.set("state", ring.get("state") if ring.finished else int(WriterState.STOPPED))
            record.close()
        notify()  # the final state is in the header
        ring.close()
    if code:
        sys.exit(code)  # multiprocessing turns this into the exit code (after flushing the queue)


def _capture_loop(source, ring: SpikeRing, events, spec: SourceConfig, stop: dict, parent_pid: int,
                  record: SpikeRing | None = None, notify=lambda: None) -> int:
    kind = kind_of(spec).value
    offset = 0  # rebase for sources whose plane counter goes back (camera restart)
    last_error_event = 0.0
    last_behind_event = 0.0
    seen_reconnects = 0
    schedule = spec.schedule()  # None: the source keeps no schedule we report it behind against
    status_of = getattr(source, "status", None)  # a source's own report (the camera's library), if it has one
    next_status_at, last_status = 0.0, None
    check_parent_at = time.monotonic()
    # (the parent check also frees a writer waiting for ring space when the daemon was killed)
    should_stop = lambda: stop["flag"] or ring.stop_requested or os.getppid() != parent_pid  # noqa: E731
    while True:
        if should_stop():
            ring.set("state", int(WriterState.STOPPED))
            return 0
        now = time.monotonic()
        ring.set("writer_t_ns", time.monotonic_ns())  # progress: the daemon watches this stamp
        if now >= check_parent_at:
            check_parent_at = now + 0.5
            if os.getppid() != parent_pid:  # the daemon died without telling us
                ring.set("state", int(WriterState.STOPPED))
                return 0
        if status_of is not None and now >= next_status_at:
            next_status_at = now + STATUS_PERIOD_S
            status = status_of()
            if status != last_status:
                last_status = status
                events.put(("source-status", status))
        result = source.read(timeout_s=READ_TIMEOUT_S)
        reconnects = int(getattr(source, "reconnects", 0) or 0)
        if reconnects != seen_reconnects:
            ring.add("reconnects", reconnects - seen_reconnects)
            ring.add("discontinuities", reconnects - seen_reconnects)
            seen_reconnects = reconnects
            events.put(("reconnect", f"the {kind} source reconnected ({reconnects} so far)"))
        _mirror_source_counters(source, ring)
        status = result.status
        if status is ReadStatus.OK:
            block = result.block
            first = block.first_plane + offset
            committed = ring.committed
            if ring.get("first_plane") >= 0 and first < committed:
                offset += committed - first
                first = committed
                ring.add("discontinuities")
                events.put(("discontinuity", f"source plane index went back to {block.first_plane}; rebased to {first}"))
            ring.write(first, block.planes, block.capture_t_ns, should_stop=should_stop)
            if record is not None and record.stop_requested:
                record = None  # the recorder stopped or failed: feed it no more
            if record is not None:  # the raw recording's copy
                record.write(first, block.planes, block.capture_t_ns, should_stop=should_stop)
            notify()
            if schedule is not None:
                behind_ns = schedule.behind_ns(block)
                ring.set("behind_us", behind_ns // 1000)
                if behind_ns > BEHIND_EVENT_AFTER_S * 1e9 and now - last_behind_event >= BEHIND_EVENT_MIN_INTERVAL_S:
                    last_behind_event = now
                    events.put(("behind", schedule.behind_message(block, behind_ns)))
        elif status is ReadStatus.TIMEOUT:
            ring.add("timeouts")
            ring.set("writer_t_ns", time.monotonic_ns())
        elif status is ReadStatus.END_OF_STREAM:
            ring.set("state", int(WriterState.ENDED))
            events.put(("end-of-stream", result.message or "end of stream"))
            return 0
        else:
            ring.add("errors")
            ring.set("writer_t_ns", time.monotonic_ns())
            if not spec.recoverable_errors:
                ring.set("state", int(WriterState.FAILED))
                events.put(("fatal", result.message or f"{kind} source error"))
                return 3
            # the source recovers by itself (a camera reconnects): report and keep reading
            if now - last_error_event >= ERROR_EVENT_MIN_INTERVAL_S:
                last_error_event = now
                events.put(("error", result.message or f"{kind} source error"))


def _mirror_source_counters(source, ring: SpikeRing) -> None:
    """Copy the source's own loss counters into the ring header (sources that keep them).

    ``late_blocks``: the live simulator's blocks made after their due time; ``dropped_blocks``:
    blocks the camera's queue dropped (drop-oldest). Both only grow; the ring's fields have one
    writer, this process.
    """
    for field in ("late_blocks", "dropped_blocks"):
        value = getattr(source, field, None)
        if value is not None and value != ring.get(field):
            ring.set(field, int(value))


# -- the daemon's handle ----------------------------------------------------------------------------
class CaptureProcess:
    """Starts, watches and stops the capture child."""

    def __init__(self, spec: SourceConfig, ring: SpikeRing, record_ring: SpikeRing | None = None) -> None:
        self.spec = spec
        self.ring = ring
        ctx = mp.get_context("spawn")
        self.events = ctx.Queue()
        self._wake_r, wake_w = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=capture_main, name="spike-capture", daemon=True,
                                   args=(spec, ring.name, self.events, os.getpid(),
                                         record_ring.name if record_ring is not None else None, wake_w))
        self._wake_w = wake_w
        self.wake_fd = self._wake_r.fileno()  # readable when the child wrote planes (poll it, then ``drain``)
        os.set_blocking(self.wake_fd, False)

    def start(self) -> None:
        self.process.start()
        self._wake_w.close()  # the child holds its own copy

    def drain(self) -> bool:
        """Empty the wake pipe (call after ``poll`` said it is readable, before looking at the ring).

        False once the child has closed its end (it exited): the pipe then stays readable, so stop polling it.
        """
        try:
            while True:
                data = os.read(self.wake_fd, 4096)
                if not data:
                    return False
                if len(data) < 4096:
                    return True
        except BlockingIOError:
            return True
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def poll_events(self) -> list[tuple[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except (queue.Empty, EOFError, OSError):
                return out

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def stop(self, timeout_s: float = 0.5) -> int | None:
        """Ask the child to stop (ring flag), then SIGTERM, then SIGKILL; returns its exit code."""
        self.ring.request_stop()
        if self.process.pid is None:
            return None
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(0.2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(0.2)
        self.events.cancel_join_thread()
        self._wake_r.close()
        return self.process.exitcode
