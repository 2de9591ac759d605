"""The vendor camera (SpikeLink library through ``firmware_io.spikelink``) as a ``SourceBase``: ``CameraSource``.

Session: ``CreateSpikeLinkInputPython`` -> ``Init(params)`` -> ``SetCallbackPython`` -> ``Open`` ->
``Start``; teardown ``Stop`` -> ``Close`` -> ``Fini``. Every (re)connection gets a fresh input
object. ``params`` are filled as SpikeCV fills them for the camera: pixel format 1-bit grey, the
sensor mode, ``buff_size`` pool frames, ``cusum`` planes per frame (``InitParamsLayout.WRAPPER``;
``HEADER`` leaves it out and takes the library's count), ``picture`` = decode width x height at the
mode's rate, and ``opaque`` -> ``SpikeLinkQSFPInitParams`` (PCIe: device name, channels, read mode)
or ``SpikeLinkDummyInitParams`` (the library replays a file; ``repeat`` = ``loop``). Other links'
structures are not published: ``UnknownAbiError``.

Data path: the library calls ``_on_frame`` on its own thread with one frame. It copies ``data[0]``
out (one ``memmove``), releases the frame at once (also on error: the library's pool has only
``buff_size`` frames and a consumer that keeps them starves it), stamps ``capture_t_ns`` and appends
the raw planes to a bounded queue. It never blocks the library's thread: when the queue is full the
OLDEST entry is dropped and counted (``dropped_blocks``), so a slow consumer sees fresh data and an
explicit gap instead of lag that grows. ``read`` (the consumer's thread) turns raw planes into
contract-order ``SpikeBlock`` s: as they are for ``Layout.DAT``, converted and tag-checked for
``Layout.PCIE1K`` (the 1000x1000 modes' rows; a frame whose tags are wrong is dropped and counted in
``bad_frames``, its planes a gap).

Plane indices: ``first_plane = session_base + pts * cusum`` (the facts: ``pts x cusum`` is a frame's
first plane). A jump in ``pts`` (frames the library lost, e.g. a dry pool) is a jump in plane
indices, counted in ``gaps`` / ``planes_lost``. After a reconnect ``pts`` restarts at 0; the new
``session_base`` is the previous stop plane plus the outage at ``rate_hz``, so indices keep
increasing and track time. A frame of more planes than ``cusum``, or not of whole planes, is an
error naming the ``cusum`` unknown (a library built without it: ``InitParamsLayout.HEADER``).

Failure and recovery use only what the ABI states (``GetState()``'s values are not published: they
are reported in ``status()``, never interpreted): the camera is gone when ``IsOpen()`` turns false,
or hung when no frame has arrived for ``stall_timeout_s``. Queued blocks are still returned; then
``read`` returns ``ERROR`` once with a message saying what happened, and the source reconnects on
later reads with exponential backoff (``backoff_initial_s`` doubling up to ``backoff_max_s``);
reads return ``TIMEOUT`` ("reconnecting ...") until it is back. The dummy link without ``loop``
ends (``END_OF_STREAM``) once the file's last frame (``ceil(planes / cusum) - 1``) has arrived, or
when the library goes quiet while still open (a last frame it lost counts as lost planes).

Design: reconnecting inside ``read`` (on the consumer's thread) rather than on a watchdog thread
keeps a single thread driving the library's control calls, so ``Stop``/``Close`` can never race a
reconnect; the callback thread only copies and queues. Library calls are never made while holding
the queue lock, because ``Stop`` joins the library's thread, which may be waiting for that lock.
Converting PCIe rows on the consumer's side keeps the library's thread to one copy per frame.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import threading
import time

import numpy as np

from firmware_io.contract import FormatError, Read, ReadStatus, SourceBase, SourceError, SpikeBlock, now_ns
from firmware_io.layouts import Layout, decode_width, layout_geometry, packed_from_layout, stored_plane_bytes
from firmware_io.spikelink import (
    DEFAULT_CUSUM,
    FRAME_CALLBACK,
    MAX_FRAME_BYTES,
    INIT_PARAMS_TYPES,
    ChannelMode,
    InitParamsLayout,
    LinkType,
    PixelFormat,
    SensorMode,
    SpikeLinkError,
    SpikeLinkLibrary,
    SpikeLinkVideoFrame,
    SVPicture,
    SVRational,
    dummy_params,
    link_params_type,
    qsfp_params,
    rational,
)

log = logging.getLogger(__name__)

_RUNNING, _RECONNECTING, _CLOSED = "running", "reconnecting", "closed"


class CameraSource(SourceBase):
    """Blocks from a SpikeLink camera (or the library's dummy file link).

    Arguments (all keyword-only except ``library_path``): ``library_path`` (``None`` ->
    ``$SPIKELINK_LIBRARY``; missing -> ``FileNotFoundError`` naming the path and the variable),
    ``link=LinkType.PCIE``, ``mode=SensorMode.M400x250_40K`` (sets ``geometry`` and ``rate_hz``),
    ``cusum=50``, ``buffer_pool_size=16`` (``buff_size``), ``layout=None`` (the mode's:
    ``SensorMode.layout``), ``init_layout=InitParamsLayout.WRAPPER``, ``device_name=""`` and
    ``channels=0`` (PCIe), ``file_path=None`` and ``loop=False`` (dummy link: the file to replay,
    whole planes of the layout), ``replay_rate_hz=0.0`` (dummy link pacing: 0 = the mode's rate,
    < 0 = fps 0/1, which the fake library replays unpaced), ``max_queue_blocks=64`` (drop-oldest
    beyond), ``stall_timeout_s=1.0``, ``backoff_initial_s=0.05``, ``backoff_max_s=5.0``,
    ``wait_for_device=False`` (``True``: a failed first connection is reported by ``read`` and
    retried instead of raised).

    Counters: ``blocks_received``, ``dropped_blocks`` (queue overflow), ``gaps`` and ``planes_lost``
    (pts jumps, bad frames, outages), ``bad_frames``, ``errors``, ``reconnects``; ``stats()`` returns
    them, ``status()`` what the library said.
    """

    def __init__(
        self,
        library_path: str | os.PathLike | None = None,
        *,
        link: LinkType | int = LinkType.PCIE,
        mode: SensorMode | int = SensorMode.M400x250_40K,
        cusum: int = DEFAULT_CUSUM,
        buffer_pool_size: int = 16,
        layout: Layout | None = None,
        init_layout: InitParamsLayout = InitParamsLayout.WRAPPER,
        device_name: str = "",
        channels: int = 0,
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
        link_params_type(self.link)  # UnknownAbiError for a link whose init structure is not published
        self.mode = SensorMode(mode)
        if not self.mode.known:
            raise ValueError(f"sensor mode {self.mode.name} has no published geometry; choose another mode")
        self.layout = self.mode.layout if layout is None else Layout(layout)
        geometry = layout_geometry(self.layout, self.mode.geometry)
        dummy = self.link is LinkType.DUMMY_FILE
        rate = replay_rate_hz if (dummy and replay_rate_hz > 0) else self.mode.rate_hz
        super().__init__(geometry=geometry, rate_hz=float(rate))
        for name, value in (("cusum", cusum), ("buffer_pool_size", buffer_pool_size),
                            ("max_queue_blocks", max_queue_blocks)):
            if isinstance(value, bool) or int(value) != value or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (stall_timeout_s > 0 and backoff_initial_s > 0 and backoff_max_s >= backoff_initial_s):
            raise ValueError(
                f"need stall_timeout_s > 0 and 0 < backoff_initial_s <= backoff_max_s, got "
                f"{stall_timeout_s}, {backoff_initial_s}, {backoff_max_s}"
            )
        self.frame_width = decode_width(self.layout, geometry)
        self.frame_plane_bytes = stored_plane_bytes(self.layout, geometry)
        if cusum * self.frame_plane_bytes > MAX_FRAME_BYTES:
            raise ValueError(f"cusum {cusum} x {self.frame_plane_bytes}-byte planes does not fit a frame's int32 size "
                             f"field ({MAX_FRAME_BYTES} bytes); lower cusum")
        self.file_planes: int | None = None
        if dummy:
            if file_path is None:
                raise ValueError("the dummy file link needs file_path (a raw file to replay)")
            if not os.path.isfile(file_path):
                raise FileNotFoundError(f"dummy-link spike file not found: {file_path}")
            self.file_planes = os.path.getsize(file_path) // self.frame_plane_bytes
            if self.file_planes == 0:
                raise ValueError(f"{file_path} holds no whole {self.frame_plane_bytes}-byte plane of the "
                                 f"{self.layout.value} layout")
        self.cusum = int(cusum)
        self.loop = bool(loop)
        self.device_name = device_name
        self.init_layout = InitParamsLayout(init_layout)
        self.max_queue_blocks = int(max_queue_blocks)
        self.stall_timeout_s = float(stall_timeout_s)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        if dummy:
            fps = rational(replay_rate_hz or self.mode.rate_hz) if replay_rate_hz >= 0 else SVRational(0, 1)
            self._link_params = dummy_params(file_path, fps, self.loop)
        else:
            self._link_params = qsfp_params(device_name, channels, ChannelMode.READ)
        fields = dict(opaque=ctypes.addressof(self._link_params), type=int(self.link), mode=int(self.mode),
                      format=int(PixelFormat.GRAY1), buff_size=int(buffer_pool_size),
                      picture=SVPicture(width=self.frame_width, height=geometry.height, format=int(PixelFormat.GRAY1),
                                        fps=rational(self.mode.rate_hz)))
        if self.init_layout is InitParamsLayout.WRAPPER:
            fields["cusum"] = self.cusum
        self._params = INIT_PARAMS_TYPES[self.init_layout](**fields)
        self.lib = SpikeLinkLibrary(library_path, init_layout=self.init_layout)
        self._input: int | None = None
        self._callback = FRAME_CALLBACK(self._on_frame)  # kept alive for the library
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[int, np.ndarray, int]] = collections.deque()
        self._state = _CLOSED
        self._session_base = 0
        self._expected_pts = 0
        self._frame_planes = self.cusum  # planes per pts step (HEADER layout: learned from the first frame)
        self._frame_planes_known = self.init_layout is InitParamsLayout.WRAPPER
        self._next_plane = 0  # stop plane of the last block received
        self._last_frame_ns = now_ns()
        self._file_done = False  # dummy link without loop: the file's last frame arrived
        self._frame_error: str | None = None
        self._pending_error: str | None = None
        self._backoff_s = self.backoff_initial_s
        self._next_attempt_ns = 0
        self.sdk_state: int | None = None  # GetState()'s last value (not interpreted)
        self.sdk_is_open: bool | None = None
        self.last_error: str | None = None
        self.blocks_received = 0
        self.dropped_blocks = 0
        self.gaps = 0
        self.planes_lost = 0
        self.bad_frames = 0
        self.errors = 0
        self.reconnects = 0
        try:
            self._connect()
        except SpikeLinkError as exc:
            if not wait_for_device:
                raise SourceError(f"cannot start the SpikeLink camera ({self.link.name}, {self.mode.name}): {exc}") from exc
            self._fail(f"camera not available: {exc}")

    # -- the library's thread -----------------------------------------------------------------------
    def _on_frame(self, frame_ptr: int | None) -> None:
        t_ns = now_ns()
        raw = None
        error = None
        pts = -1
        handle = self._input
        try:
            frame = SpikeLinkVideoFrame.from_address(frame_ptr)
            size, plane_bytes = int(frame.size), self.frame_plane_bytes
            n = size // plane_bytes if plane_bytes else 0
            if (frame.width, frame.height) != (self.frame_width, self.geometry.height):
                error = (f"library frame is {frame.width}x{frame.height} (width x height bits), expected "
                         f"{self.frame_width}x{self.geometry.height} for {self.mode.name} in the {self.layout.value} layout")
            elif size <= 0 or size % plane_bytes or not frame.data[0]:
                error = f"library frame of {size} bytes is not whole {plane_bytes}-byte planes"
            elif self._frame_planes_known and n > self._frame_planes:
                error = (f"library frame holds {n} planes, more than the cusum={self._frame_planes} asked for: this "
                         f"library build may lay out SpikeLinkInitParams without cusum (the older header's layout, "
                         f"InitParamsLayout.HEADER, --camera-init-params header); which one it was built with is "
                         f"not published")
            else:
                raw = np.empty((n, plane_bytes), dtype=np.uint8)
                ctypes.memmove(raw.ctypes.data, frame.data[0], size)
            pts = int(frame.pts)
        except Exception as exc:  # never let an exception escape into the library's thread
            error = f"reading a library frame failed: {exc!r}"
        finally:
            self.lib.ReleaseFrame(handle, frame_ptr)
        with self._cond:
            if self._state == _CLOSED:
                return
            self._last_frame_ns = t_ns
            if error is not None or raw is None:
                self._frame_error = error
                self._cond.notify_all()
                return
            if not self._frame_planes_known:  # HEADER layout: the library's own planes per frame
                self._frame_planes, self._frame_planes_known = raw.shape[0], True
            if pts != self._expected_pts:
                if pts > self._expected_pts:
                    self.gaps += 1
                    self.planes_lost += (pts - self._expected_pts) * self._frame_planes
                else:
                    self._frame_error = f"library pts went backwards ({pts} after {self._expected_pts - 1})"
                    self._cond.notify_all()
                    return
            self._expected_pts = pts + 1
            first = self._session_base + pts * self._frame_planes
            self._next_plane = first + raw.shape[0]
            if self.file_planes is not None and not self.loop and pts >= -(-self.file_planes // self._frame_planes) - 1:
                self._file_done = True
            if len(self._queue) >= self.max_queue_blocks:
                self._queue.popleft()
                self.dropped_blocks += 1
            self._queue.append((first, raw, t_ns))
            self.blocks_received += 1
            self._cond.notify_all()

    # -- control (consumer thread) ------------------------------------------------------------------
    def _hint(self, call: str) -> str:
        """What to check when ``call`` failed (the library's codes say nothing published)."""
        hints = []
        if self.link is LinkType.PCIE and call in ("Init", "Open"):
            name = repr(self.device_name) if self.device_name else "empty"
            hints.append(f"is the camera connected, and is its PCIe device name ({name}, --camera-device) right?")
        if call == "Init":
            other = next(layout for layout in InitParamsLayout if layout is not self.init_layout)
            hints.append(f"the parameters were laid out as the {self.init_layout.value}'s SpikeLinkInitParams (which "
                         f"one a library build expects is not published; --camera-init-params {other.value} tries the "
                         f"other)")
        return " ".join(hints) or f"{self.link.name} link, mode {self.mode.name}"

    def _check(self, call: str, code: int) -> None:
        if code != 0:
            self.last_error = f"{call}() returned {code}"
            raise SpikeLinkError(call, code, self._hint(call))

    def _connect(self, session_base: int = 0) -> None:
        """Create / Init / SetCallbackPython / Open / Start; raises ``SpikeLinkError`` (after cleaning up)."""
        lib = self.lib
        handle = lib.CreateSpikeLinkInputPython()
        if not handle:
            self.last_error = "CreateSpikeLinkInputPython() returned NULL"
            raise SpikeLinkError("CreateSpikeLinkInputPython", 0, "it returned NULL")
        self._input = handle
        try:
            self._check("Init", lib.Init(handle, ctypes.byref(self._params)))
            lib.SetCallbackPython(handle, self._callback)
            self._check("Open", lib.Open(handle))
            with self._cond:
                self._state = _RUNNING
                self._session_base = session_base
                self._expected_pts = 0
                self._frame_error = None
                self._file_done = False
                self._last_frame_ns = now_ns()
            self._check("Start", lib.Start(handle))
        except SpikeLinkError:
            with self._cond:
                self._state = _RECONNECTING
            self._teardown()
            raise

    def _teardown(self) -> None:
        handle, lib = self._input, self.lib
        if handle is None:
            return
        lib.Stop(handle)  # joins the library's thread: no callback runs after this
        lib.Close(handle)
        lib.Fini(handle)
        self._input = None

    def _fail(self, message: str) -> None:
        """Record a failure: report it once, then reconnect with backoff."""
        with self._cond:
            self._state = _RECONNECTING
        self._teardown()
        self.errors += 1
        self.last_error = message
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

    def _poll_library(self) -> None:
        """Ask the library how it is (``IsOpen``, ``GetState``); kept for ``status``."""
        if self._input is not None:
            self.sdk_is_open = bool(self.lib.IsOpen(self._input))
            self.sdk_state = int(self.lib.GetState(self._input))

    def _health(self) -> tuple[str, str]:
        """('ok'|'end'|'fail', message) for a running session with an empty queue."""
        self._poll_library()
        with self._cond:
            frame_error, self._frame_error = self._frame_error, None
            silent_s = (now_ns() - self._last_frame_ns) / 1e9
            file_done = self._file_done
        if frame_error:
            return "fail", frame_error
        if file_done:
            return "end", ""
        if not self.sdk_is_open:
            return "fail", f"camera disconnected: IsOpen() returned false (GetState() returned {self.sdk_state})"
        if silent_s > self.stall_timeout_s:
            if self.file_planes is not None and not self.loop:  # the dummy link stopped short of its last frame
                with self._cond:
                    done = max(0, self._next_plane - self._session_base)
                    missing = max(0, self.file_planes - done)
                    self.planes_lost += missing
                    self.gaps += 1 if missing else 0
                    self._file_done = True
                return "end", f"the dummy link went quiet after {done} of {self.file_planes} planes"
            return "fail", (f"no frames from the camera for {silent_s:.2f} s (stall timeout {self.stall_timeout_s} s; "
                            f"IsOpen() true, GetState() returned {self.sdk_state})")
        return "ok", ""

    def _block(self, first: int, raw: np.ndarray, t_ns: int) -> SpikeBlock | None:
        """The contract-order block of queued raw planes; None (counted) for a frame whose tags are wrong."""
        try:
            packed = packed_from_layout(raw, self.layout, self.geometry)
        except FormatError as exc:
            self.bad_frames += 1
            self.gaps += 1
            self.planes_lost += raw.shape[0]
            self.last_error = f"frame at plane {first} dropped: {exc}"
            log.warning("SpikeLink camera: %s", self.last_error)
            return None
        return SpikeBlock(first_plane=first, planes=packed, capture_t_ns=t_ns)

    def read(self, timeout_s: float | None = None) -> Read:
        deadline = None if timeout_s is None else now_ns() + int(max(timeout_s, 0) * 1e9)
        message = ""
        while True:
            with self._cond:
                entry = self._queue.popleft() if self._queue else None
                if entry is None and self.closed:
                    return Read(ReadStatus.END_OF_STREAM)
                state = self._state
            if entry is not None:
                block = self._block(*entry)
                if block is not None:
                    return Read(ReadStatus.OK, block)
                continue
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                return Read(ReadStatus.ERROR, message=error)
            now = now_ns()
            if state == _RUNNING:
                verdict, why = self._health()
                if verdict == "end":
                    with self._cond:
                        if not self._queue:
                            return Read(ReadStatus.END_OF_STREAM, message=why)
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
            "bad_frames": self.bad_frames,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "queue_blocks": depth,
            "queue_policy": "drop-oldest",
            "max_queue_blocks": self.max_queue_blocks,
        }

    def status(self) -> dict:
        """What the library said, as plain values: ``IsOpen()``, ``GetState()`` (its number: the values are not
        published), the last error, and the recovery counters."""
        if not self.closed:
            self._poll_library()
        return {
            "library": str(self.lib.path),
            "link": self.link.name.lower().replace("_", "-"),
            "mode": f"0x{self.mode.value:x}",
            "layout": self.layout.value,
            "init_params": self.init_layout.value,
            "cusum": self._frame_planes if self._frame_planes_known else None,
            "connected": self._state == _RUNNING,
            "sdk_is_open": self.sdk_is_open,
            "sdk_state": self.sdk_state,
            "last_error": self.last_error,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "bad_frames": self.bad_frames,
        }

    def close(self) -> None:
        if self.closed:
            return
        with self._cond:
            self._state = _CLOSED
            self._queue.clear()
        self._teardown()  # Stop joins the library's thread; our callback is still referenced
        super().close()
