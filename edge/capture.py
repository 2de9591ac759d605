"""The capture side: a process of its own that reads a spike source and writes the plane ring.

The daemon describes the source with a picklable ``SourceSpec`` (replay file + options, simulated
scene, or camera) and starts ``CaptureProcess`` (multiprocessing, *spawn* context: no inherited
threads, sockets or CUDA state). The child opens the source itself, attaches the ring by name and
loops ``read`` -> ``ring.write``. In the ring's ``overwrite`` policy that loop never waits on the
worker; in ``block`` policy (deterministic replay) it waits for space, so nothing is lost.

What the child reports, and where:

- counters in the ring header (timeouts, errors, reconnects, source-gap planes, blocks, writer
  liveness time), read by the daemon at no cost for stats and heartbeats;
- rare events through a ``multiprocessing`` queue (``put`` never blocks the child): ``started``,
  ``error`` (rate-limited), ``reconnect``, ``discontinuity``, ``end-of-stream``, ``fatal``;
- its final state in the header (``ENDED``, ``FAILED``, ``STOPPED``) and its exit code.

Plane indices: the ring is indexed by the source's plane indices. A source that jumps forward
(camera frames lost) leaves a source gap the reader sees explicitly; one that goes back (a camera
whose counter restarted after a reconnect) is rebased to continue after the newest plane, and the
discontinuity is counted and reported.

The child ignores SIGINT (the daemon owns shutdown and tells the child through the ring's stop
flag), stops on SIGTERM, and stops by itself when its parent disappears.
"""

from __future__ import annotations

import enum
import inspect
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from edge.ring import SpikeRing, WriterState
from firmware_io.contract import DEFAULT_GEOMETRY, DEFAULT_RATE_HZ, Geometry, ReadStatus

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05
DEFAULT_SCENE = "shapes"
ERROR_EVENT_MIN_INTERVAL_S = 1.0


class SourceKind(str, enum.Enum):
    REPLAY = "replay"
    SIMULATE = "simulate"
    CAMERA = "camera"


class SourceUnavailable(RuntimeError):
    """The source cannot be opened here (vendor library missing, simulator not installed)."""


@dataclass(frozen=True)
class SourceSpec:
    """Everything needed to open a source in another process (plain, picklable values)."""

    kind: SourceKind
    path: str | None = None  # replay file
    block_planes: int = 40
    realtime: bool = False
    rate_hz: float = DEFAULT_RATE_HZ
    speed: float = 1.0
    loop: bool = False
    with_head: bool = False
    scene: str | None = None  # simulate
    planes: int | None = None  # simulate length; None = endless
    height: int = DEFAULT_GEOMETRY.height
    width: int = DEFAULT_GEOMETRY.width
    camera_library: str | None = None
    seed: int = 0

    @property
    def live(self) -> bool:
        """A source that runs on its own clock (camera, simulator, real-time replay)."""
        return self.kind is not SourceKind.REPLAY or self.realtime

    def geometry(self) -> Geometry:
        """The plane geometry, without starting the source (replay reads only the file's size/header)."""
        if self.kind is SourceKind.REPLAY:
            from firmware_io.recording import open_recording

            requested = Geometry(self.height, self.width)
            path = str(self.path)
            geometry = None if path.lower().endswith(".npz") else requested
            with open_recording(path, geometry, with_head=self.with_head) as rec:
                if rec.n_planes <= 0:
                    raise ValueError(f"{path} holds no planes")
                return rec.geometry
        return Geometry(self.height, self.width)

    def describe(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["kind"] = self.kind.value
        return d

    def open(self):
        """Open the source (in the capture process)."""
        if self.kind is SourceKind.REPLAY:
            from firmware_io.replay import ReplaySource

            geometry = None if str(self.path).lower().endswith(".npz") else Geometry(self.height, self.width)
            return ReplaySource(self.path, geometry, block_planes=self.block_planes, realtime=self.realtime,
                                rate_hz=self.rate_hz, speed=self.speed, loop=self.loop, with_head=self.with_head)
        if self.kind is SourceKind.SIMULATE:
            try:
                from firmware_io.sim_source import source_from_scene
            except ImportError as exc:
                raise SourceUnavailable(f"the simulated camera is not available: {exc}") from exc
            # the simulator's own ``speed`` is scene motion, not playback speed: the camera clock is rate_hz
            options = dict(block_planes=self.block_planes, rate_hz=self.rate_hz, realtime=True,
                           n_planes=self.planes, seed=self.seed)
            return _call_with_accepted(source_from_scene, self.scene or DEFAULT_SCENE,
                                       Geometry(self.height, self.width), **options)
        try:
            from firmware_io.camera import CameraSource
        except ImportError as exc:
            raise SourceUnavailable(f"the SpikeLink camera support is not available: {exc}") from exc
        # the camera mode fixes geometry and rate (default mode 250x400 at 40 kHz = the default --height/--width)
        return _call_with_accepted(CameraSource, library_path=self.camera_library, planes_per_block=self.block_planes)


def _call_with_accepted(factory, *args, **options):
    """Call ``factory`` with the options its signature accepts (None values left out)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        params = {}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in options.items() if v is not None and (accepts_any or k in params)}
    return factory(*args, **kwargs)


# -- the child process ----------------------------------------------------------------------------
def capture_main(spec: SourceSpec, ring_name: str, events, parent_pid: int) -> None:
    """Entry point of the capture process. Exit code 0 (end-of-stream or stopped) or 3 (failure)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    ring = SpikeRing.attach(ring_name)
    ring.set("writer_pid", os.getpid())
    code = 0
    try:
        try:
            source = spec.open()
        except Exception as exc:  # any failure to open is reported, then the process ends
            ring.set("state", int(WriterState.FAILED))
            events.put(("fatal", f"cannot open the {spec.kind.value} source: {type(exc).__name__}: {exc}"))
            code = 3
        else:
            with source:
                ring.set("state", int(WriterState.RUNNING))
                events.put(("started", {"geometry": str(source.geometry), "rate_hz": float(source.rate_hz)}))
                code = _capture_loop(source, ring, events, spec, stop, parent_pid)
    finally:
        ring.close()
    if code:
        sys.exit(code)  # multiprocessing turns this into the exit code (after flushing the queue)


def _capture_loop(source, ring: SpikeRing, events, spec: SourceSpec, stop: dict, parent_pid: int) -> int:
    offset = 0  # rebase for sources whose plane counter goes back (camera restart)
    last_error_event = 0.0
    seen_reconnects = 0
    check_parent_at = time.monotonic()
    should_stop = lambda: stop["flag"] or ring.stop_requested  # noqa: E731
    while True:
        if should_stop():
            ring.set("state", int(WriterState.STOPPED))
            return 0
        now = time.monotonic()
        if now >= check_parent_at:
            check_parent_at = now + 0.5
            if os.getppid() != parent_pid:  # the daemon died without telling us
                ring.set("state", int(WriterState.STOPPED))
                return 0
        result = source.read(timeout_s=READ_TIMEOUT_S)
        reconnects = int(getattr(source, "reconnects", 0) or 0)
        if reconnects != seen_reconnects:
            ring.add("reconnects", reconnects - seen_reconnects)
            ring.add("discontinuities", reconnects - seen_reconnects)
            seen_reconnects = reconnects
            events.put(("reconnect", f"the {spec.kind.value} source reconnected ({reconnects} so far)"))
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
            if spec.kind is not SourceKind.CAMERA:
                ring.set("state", int(WriterState.FAILED))
                events.put(("fatal", result.message or "source error"))
                return 3
            # A camera error: the CameraSource reconnects by itself; report and keep reading.
            if now - last_error_event >= ERROR_EVENT_MIN_INTERVAL_S:
                last_error_event = now
                events.put(("error", result.message or "camera error"))


# -- the daemon's handle ----------------------------------------------------------------------------
class CaptureProcess:
    """Starts, watches and stops the capture child."""

    def __init__(self, spec: SourceSpec, ring: SpikeRing) -> None:
        self.spec = spec
        self.ring = ring
        ctx = mp.get_context("spawn")
        self.events = ctx.Queue()
        self.process = ctx.Process(target=capture_main, args=(spec, ring.name, self.events, os.getpid()),
                                   name="spike-capture", daemon=True)

    def start(self) -> None:
        self.process.start()

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
        return self.process.exitcode
