"""The vendor camera (SpikeLink SDK through ctypes) as a ``SourceBase``: ``CameraSource``.

Data path: the SDK calls our callback on its own thread with a frame of ``cusum`` planes. The
callback copies the planes (one ``memmove`` into a numpy array), releases the frame at once (also
on error), stamps ``capture_t_ns`` and appends a ``SpikeBlock`` to a bounded queue. It never
blocks the SDK thread: when the queue is full the OLDEST block is dropped and counted
(``dropped_blocks``), so a slow consumer sees fresh data and an explicit gap instead of lag that
grows. Plane data are assumed to arrive in the same camera order as ``.dat`` files (LSB-first
pixels, rows bottom-up), which is what ``SpikeBlock`` carries.

Plane indices: ``first_plane = session_base + pts * planes_per_block``. A jump in ``pts`` (the SDK
lost blocks) therefore shows up as a jump in plane indices, counted in ``gaps`` /
``planes_lost``. After a reconnect the SDK's ``pts`` restarts at 0; the new ``session_base`` is
the previous stop plane plus the outage's length in planes at ``rate_hz``, so indices keep
increasing and keep tracking time.

Failure and recovery: the device is considered gone when ``getState()`` says DISCONNECTED (or any
state other than RUNNING / END_OF_FILE), or when no frame has arrived for ``stall_timeout_s``
while RUNNING (a hung link). Blocks already queued are still returned; then ``read`` returns
``ERROR`` once with a message saying what happened, and the source reconnects (stop, close, init,
setcallback, open, start) on later reads with exponential backoff (``backoff_initial_s`` doubling
up to ``backoff_max_s``); reads return ``TIMEOUT`` (message "reconnecting ...") until it is back.
With the dummy-file link and ``loop=False`` the end of the file gives ``END_OF_STREAM``.

Design: reconnecting inside ``read`` (on the consumer's thread) rather than on a watchdog thread
keeps a single thread driving the SDK's control calls, so ``stop``/``close`` can never race a
reconnect; the callback thread only copies and queues. SDK calls are never made while holding
the queue lock, because ``stop`` joins the SDK thread, which may be waiting for that lock.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import threading
import time

import numpy as np

from firmware_io.contract import Read, ReadStatus, SourceBase, SourceError, SpikeBlock, now_ns
from firmware_io.spikelink import (
    FRAME_CALLBACK,
    DeviceState,
    InitParams,
    LinkType,
    PixelFormat,
    SensorMode,
    SpikeLinkError,
    SpikeLinkLibrary,
)

log = logging.getLogger(__name__)

_RUNNING, _RECONNECTING, _CLOSED = "running", "reconnecting", "closed"


class CameraSource(SourceBase):
    """Blocks from a SpikeLink camera (or the fake SDK's dummy-file link).

    Arguments (all keyword-only except ``library_path``):
    ``library_path`` (the SDK shared library; ``None`` -> ``$SPIKELINK_LIBRARY``; missing ->
    ``FileNotFoundError`` naming the path and the variable), ``link=LinkType.PCIE``,
    ``mode=SensorMode.M400x250_40K`` (sets ``geometry`` and ``rate_hz``), ``planes_per_block=100``,
    ``buffer_pool_size=16`` (SDK frames), ``file_path=None`` (dummy link: the ``.dat`` to replay),
    ``loop=False`` (dummy link), ``replay_rate_hz=0.0`` (dummy link pacing: 0 = the mode's rate,
    < 0 = as fast as possible), ``max_queue_blocks=64`` (drop-oldest beyond), ``stall_timeout_s=1.0``,
    ``backoff_initial_s=0.05``, ``backoff_max_s=5.0``, ``wait_for_device=False`` (``True``: a
    failed first connection is reported by ``read`` and retried instead of raised).

    Counters: ``blocks_received``, ``dropped_blocks`` (queue overflow), ``gaps`` and
    ``planes_lost`` (pts jumps and outages), ``errors``, ``reconnects``; ``stats()`` returns them.
    """

    def __init__(
        self,
        library_path: str | os.PathLike | None = None,
        *,
        link: LinkType | int = LinkType.PCIE,
        mode: SensorMode | int = SensorMode.M400x250_40K,
        planes_per_block: int = 100,
        buffer_pool_size: int = 16,
        file_path: str | os.PathLike | None = None,
        loop: bool = False,
        replay_rate_hz: float = 0.0,
        max_queue_blocks: int = 64,
        stall_timeout_s: float = 1.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 5.0,
        wait_for_device: bool = False,
    ) -> None:
        self.link = LinkType(link)
        self.mode = SensorMode(mode)
        rate = replay_rate_hz if (self.link is LinkType.DUMMY_FILE and replay_rate_hz > 0) else self.mode.rate_hz
        super().__init__(geometry=self.mode.geometry, rate_hz=float(rate))
        for name, value in (("planes_per_block", planes_per_block), ("buffer_pool_size", buffer_pool_size),
                            ("max_queue_blocks", max_queue_blocks)):
            if isinstance(value, bool) or int(value) != value or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (stall_timeout_s > 0 and backoff_initial_s > 0 and backoff_max_s >= backoff_initial_s):
            raise ValueError(
                f"need stall_timeout_s > 0 and 0 < backoff_initial_s <= backoff_max_s, got "
                f"{stall_timeout_s}, {backoff_initial_s}, {backoff_max_s}"
            )
        if self.link is LinkType.DUMMY_FILE:
            if file_path is None:
                raise ValueError("the dummy-file link needs file_path (a .dat file to replay)")
            if not os.path.isfile(file_path):
                raise FileNotFoundError(f"dummy-link spike file not found: {file_path}")
        self.planes_per_block = int(planes_per_block)
        self.max_queue_blocks = int(max_queue_blocks)
        self.stall_timeout_s = float(stall_timeout_s)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.lib = SpikeLinkLibrary(library_path)
        self._path_bytes = os.fsencode(file_path) if file_path is not None else None
        self._params = InitParams(
            link_type=int(self.link),
            mode=int(self.mode),
            format=int(PixelFormat.GRAY1),
            buffer_pool_size=int(buffer_pool_size),
            planes_per_block=self.planes_per_block,
            loop=1 if loop else 0,
            rate_hz=float(replay_rate_hz),
            file_path=self._path_bytes,
        )
        self._callback = FRAME_CALLBACK(self._on_frame)  # kept alive for the SDK
        self._cond = threading.Condition()
        self._queue: collections.deque[SpikeBlock] = collections.deque()
        self._state = _CLOSED
        self._session_base = 0
        self._expected_pts = 0
        self._next_plane = 0  # stop plane of the last block received
        self._last_frame_ns = now_ns()
        self._frame_error: str | None = None
        self._pending_error: str | None = None
        self._backoff_s = self.backoff_initial_s
        self._next_attempt_ns = 0
        self.blocks_received = 0
        self.dropped_blocks = 0
        self.gaps = 0
        self.planes_lost = 0
        self.errors = 0
        self.reconnects = 0
        try:
            self._connect()
        except SpikeLinkError as exc:
            if not wait_for_device:
                raise SourceError(f"cannot start the SpikeLink camera ({self.link.name}, {self.mode.name}): {exc}") from exc
            self._fail(f"camera not available: {exc}")

    # -- SDK thread -------------------------------------------------------------------------------
    def _on_frame(self, frame_ptr) -> None:
        t_ns = now_ns()
        block_planes = None
        error = None
        try:
            frame = frame_ptr.contents
            plane_bytes = self.geometry.plane_bytes
            cusum = int(frame.cusum)
            if (frame.width, frame.height) != (self.geometry.width, self.geometry.height):
                error = f"SDK frame is {frame.width}x{frame.height} (WxH), expected {self.mode.name}"
            elif cusum <= 0 or frame.size != cusum * plane_bytes or not frame.data[0]:
                error = f"SDK frame has size {frame.size} for {cusum} planes of {plane_bytes} bytes"
            else:
                block_planes = np.empty((cusum, plane_bytes), dtype=np.uint8)
                ctypes.memmove(block_planes.ctypes.data, frame.data[0], frame.size)
            pts = int(frame.pts)
        except Exception as exc:  # never let an exception escape into the SDK thread
            error = f"reading an SDK frame failed: {exc!r}"
            pts = -1
        finally:
            self.lib.releaseFrame(frame_ptr)
        with self._cond:
            if self._state == _CLOSED:
                return
            self._last_frame_ns = t_ns
            if error is not None or block_planes is None:
                self._frame_error = error
                self._cond.notify_all()
                return
            if pts != self._expected_pts:
                if pts > self._expected_pts:
                    self.gaps += 1
                    self.planes_lost += (pts - self._expected_pts) * self.planes_per_block
                else:
                    self._frame_error = f"SDK pts went backwards ({pts} after {self._expected_pts - 1})"
                    self._cond.notify_all()
                    return
            self._expected_pts = pts + 1
            first = self._session_base + pts * self.planes_per_block
            block = SpikeBlock(first_plane=first, planes=block_planes, capture_t_ns=t_ns)
            self._next_plane = block.stop_plane
            if len(self._queue) >= self.max_queue_blocks:
                self._queue.popleft()
                self.dropped_blocks += 1
            self._queue.append(block)
            self.blocks_received += 1
            self._cond.notify_all()

    # -- control (consumer thread) ----------------------------------------------------------------
    def _connect(self, session_base: int = 0) -> None:
        """init / setcallback / open / start; raises ``SpikeLinkError`` (after cleaning up)."""
        lib = self.lib
        try:
            lib.check("init", lib.init(self._params))
            lib.check("setcallback", lib.setcallback(self._callback))
            lib.check("open", lib.open())
            with self._cond:
                self._state = _RUNNING
                self._session_base = session_base
                self._expected_pts = 0
                self._frame_error = None
                self._last_frame_ns = now_ns()
            lib.check("start", lib.start())
        except SpikeLinkError:
            with self._cond:
                self._state = _RECONNECTING
            lib.stop()
            lib.close()
            raise

    def _teardown(self) -> None:
        self.lib.stop()
        self.lib.close()

    def _fail(self, message: str) -> None:
        """Record a failure: report it once, then reconnect with backoff."""
        with self._cond:
            self._state = _RECONNECTING
        self._teardown()
        self.errors += 1
        self._pending_error = message
        self._backoff_s = self.backoff_initial_s
        self._next_attempt_ns = now_ns() + int(self._backoff_s * 1e9)
        log.warning("SpikeLink camera: %s; reconnecting", message)

    def _try_reconnect(self) -> str | None:
        with self._cond:
            outage_ns = now_ns() - self._last_frame_ns
            lost = max(0, int(round(outage_ns * self.rate_hz / 1e9))) if self.blocks_received else 0
            base = self._next_plane + lost
        try:
            self._connect(base)
        except SpikeLinkError as exc:
            self._backoff_s = min(self._backoff_s * 2, self.backoff_max_s)
            self._next_attempt_ns = now_ns() + int(self._backoff_s * 1e9)
            return f"reconnecting: {exc}; next attempt in {self._backoff_s:.2f} s"
        with self._cond:
            if lost:
                self.gaps += 1
                self.planes_lost += lost
        self.reconnects += 1
        self._backoff_s = self.backoff_initial_s
        log.info("SpikeLink camera reconnected (attempt after %.2f s outage)", outage_ns / 1e9)
        return None

    def _health(self) -> tuple[str, str]:
        """('ok'|'end'|'fail', message) for a RUNNING session with an empty queue."""
        state = self.lib.state()
        with self._cond:
            frame_error, self._frame_error = self._frame_error, None
            silent_s = (now_ns() - self._last_frame_ns) / 1e9
        if frame_error:
            return "fail", frame_error
        if state == DeviceState.END_OF_FILE:
            return "end", ""
        if state == DeviceState.DISCONNECTED:
            return "fail", "camera disconnected (SDK state DISCONNECTED)"
        if state != DeviceState.RUNNING:
            name = state.name if isinstance(state, DeviceState) else str(state)
            return "fail", f"camera stopped unexpectedly (SDK state {name})"
        if silent_s > self.stall_timeout_s:
            return "fail", f"no frames from the camera for {silent_s:.2f} s (stall timeout {self.stall_timeout_s} s)"
        return "ok", ""

    def read(self, timeout_s: float | None = None) -> Read:
        deadline = None if timeout_s is None else now_ns() + int(max(timeout_s, 0) * 1e9)
        message = ""
        while True:
            with self._cond:
                if self._queue:
                    return Read(ReadStatus.OK, self._queue.popleft())
                if self.closed:
                    return Read(ReadStatus.END_OF_STREAM)
                state = self._state
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                return Read(ReadStatus.ERROR, message=error)
            now = now_ns()
            if state == _RUNNING:
                verdict, why = self._health()
                if verdict == "end":
                    with self._cond:
                        if not self._queue:
                            return Read(ReadStatus.END_OF_STREAM)
                    continue
                if verdict == "fail":
                    with self._cond:
                        if self._queue:  # deliver what arrived before reporting
                            continue
                    self._fail(why)
                    continue
                wait_ns = 50_000_000 if deadline is None else min(50_000_000, deadline - now)
                if wait_ns <= 0:
                    return Read(ReadStatus.TIMEOUT)
                with self._cond:
                    if not self._queue:
                        self._cond.wait(wait_ns / 1e9)
                continue
            # reconnecting
            if now >= self._next_attempt_ns:
                message = self._try_reconnect() or ""
                if not message:
                    continue
            if deadline is not None and now_ns() >= deadline:
                return Read(ReadStatus.TIMEOUT, message=message or "reconnecting")
            wake = self._next_attempt_ns if deadline is None else min(self._next_attempt_ns, deadline)
            time.sleep(max(0.0, (wake - now_ns()) / 1e9))

    def stats(self) -> dict:
        with self._cond:
            depth = len(self._queue)
        return {
            "blocks_received": self.blocks_received,
            "dropped_blocks": self.dropped_blocks,
            "gaps": self.gaps,
            "planes_lost": self.planes_lost,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "queue_blocks": depth,
            "queue_policy": "drop-oldest",
            "max_queue_blocks": self.max_queue_blocks,
        }

    def close(self) -> None:
        if self.closed:
            return
        with self._cond:
            self._state = _CLOSED
            self._queue.clear()
        self._teardown()  # stop joins the SDK thread; our callback is still referenced
        super().close()
