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

Live sources:

- camera (``firmware_io.camera.CameraSource``): link type and sensor mode are the enums of
  ``firmware_io.spikelink``; the mode fixes geometry and rate. The dummy-file link replays a ``.dat``
  at ``rate_hz`` (its replay rate; the mode's rate by default). When the camera vanishes,
  ``CameraSource`` reports ``ERROR`` once and reconnects with backoff; here that becomes an
  ``error`` event and the ``errors`` counter, then a ``reconnect`` event and the ``reconnects`` /
  ``discontinuities`` counters. The outage's planes (its length at ``rate_hz``) are a forward jump
  of the plane index: the ring counts them in ``source_gap_planes`` and the worker flags the next
  frame as a discontinuity. Blocks the camera queue dropped (drop-oldest) are mirrored in
  ``dropped_blocks`` (their planes are a source gap too).
- simulated camera (``firmware_io.sim_source.source_from_scene``, ``realtime=True``): paced against
  an absolute schedule at ``rate_hz``. It never skips planes: the simulated stream is the same on
  every machine. When the simulator cannot keep up (it makes roughly 5-10k planes/s at 250x400 on
  one core), blocks come late: ``late_blocks`` counts them, ``behind_us`` says how far the stream
  is behind its schedule, and a ``behind`` event (rate-limited) says so in the log. That is why
  ``spike-edge run --simulate`` defaults to ``SIMULATE_DEFAULT_RATE_HZ`` (2 kHz) rather than the
  camera's 40 kHz: about 2.5x headroom at 250x400 on an idle core (5.1k planes/s measured alone);
  on a saturated machine it can still fall behind, which the counters then show.

Design: counters rather than events for everything that can happen often (the daemon reads the
header for every stats reply and heartbeat); the alternative, the source's own ``stats()``
shipped through the event queue, would add pickling in the capture loop and a second, delayed
view of the same numbers.

The child ignores SIGINT (the daemon owns shutdown and tells the child through the ring's stop
flag), stops on SIGTERM, and stops by itself when its parent disappears.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from edge.live.ring import SpikeRing, WriterState
from firmware_io.contract import DEFAULT_GEOMETRY, DEFAULT_RATE_HZ, Geometry, ReadStatus
from firmware_io.spikelink import LIBRARY_ENV, LinkType, SensorMode

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05
DEFAULT_SCENE = "shapes"
ERROR_EVENT_MIN_INTERVAL_S = 1.0
BEHIND_EVENT_AFTER_S = 1.0  # a live simulator this far behind its schedule is reported ...
BEHIND_EVENT_MIN_INTERVAL_S = 10.0  # ... at most this often
SIMULATE_DEFAULT_RATE_HZ = 2_000.0  # the simulator makes ~5k planes/s at 250x400 on an idle core
DEFAULT_CAMERA_BUFFER_POOL = 16  # SDK frames
DEFAULT_CAMERA_MODE = SensorMode.M400x250_40K


def link_name(link: LinkType) -> str:
    """The CLI spelling of a link type: ``DUMMY_FILE`` -> ``dummy-file``."""
    return link.name.lower().replace("_", "-")


def mode_name(mode: SensorMode) -> str:
    """The CLI spelling of a sensor mode (width x height, as the SDK names it): ``400x250-40k``."""
    return mode.name.removeprefix("M").lower().replace("_", "-")


#: CLI choices, generated from the enums of ``firmware_io.spikelink``.
LINK_NAMES: dict[str, LinkType] = {link_name(link): link for link in LinkType}
MODE_NAMES: dict[str, SensorMode] = {mode_name(mode): mode for mode in SensorMode}


class SourceKind(str, enum.Enum):
    REPLAY = "replay"
    SIMULATE = "simulate"
    CAMERA = "camera"


class SourceUnavailable(RuntimeError):
    """The source cannot be opened here (vendor library missing, simulator not installed)."""


@dataclass(frozen=True)
class SourceSpec:
    """Everything needed to open a source in another process (plain, picklable values).

    Camera fields: ``camera_library`` (None: ``$SPIKELINK_LIBRARY``), ``camera_link``,
    ``camera_mode`` (fixes ``height``/``width``/``rate_hz``: a spec that disagrees is a
    ``ValueError``), ``camera_file`` (the ``.dat`` the dummy-file link replays; only with that
    link), ``camera_buffer_pool`` (SDK frames); ``block_planes`` is the SDK's planes per block and
    ``loop`` loops the dummy file. For the dummy-file link ``rate_hz`` is the replay rate (any
    positive rate); for a real link it must be the mode's rate.
    """

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
    camera_link: LinkType = LinkType.PCIE
    camera_mode: SensorMode = DEFAULT_CAMERA_MODE
    camera_file: str | None = None
    camera_buffer_pool: int = DEFAULT_CAMERA_BUFFER_POOL
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.camera_link, LinkType) or not isinstance(self.camera_mode, SensorMode):
            raise ValueError(f"camera_link must be a LinkType and camera_mode a SensorMode, got "
                             f"{self.camera_link!r} and {self.camera_mode!r}")
        if isinstance(self.block_planes, bool) or not isinstance(self.block_planes, int) or self.block_planes < 1:
            raise ValueError(f"block_planes must be a positive integer, got {self.block_planes!r}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz!r}")
        if self.kind is SourceKind.SIMULATE and self.scene is not None:
            from firmware_io.scenes import SceneName

            if self.scene not in {s.value for s in SceneName}:
                raise ValueError(f"unknown scene {self.scene!r}; choose one of {', '.join(s.value for s in SceneName)}")
        if self.kind is not SourceKind.CAMERA:
            return
        mode, dummy = self.camera_mode, self.camera_link is LinkType.DUMMY_FILE
        if (self.height, self.width) != mode.geometry.shape:
            raise ValueError(f"camera mode {mode_name(mode)} is {mode.geometry} (HxW), not {self.height}x{self.width}")
        if not dummy and self.rate_hz != mode.rate_hz:
            raise ValueError(f"camera mode {mode_name(mode)} runs at {mode.rate_hz:.0f} Hz, not {self.rate_hz:g} Hz")
        if dummy != (self.camera_file is not None):
            raise ValueError("the dummy-file link needs camera_file (a .dat to replay), and only that link takes one")
        if self.loop and not dummy:
            raise ValueError(f"loop applies to the dummy-file link, not {link_name(self.camera_link)}")
        if isinstance(self.camera_buffer_pool, bool) or not isinstance(self.camera_buffer_pool, int) \
                or self.camera_buffer_pool < 1:
            raise ValueError(f"camera_buffer_pool must be a positive integer, got {self.camera_buffer_pool!r}")

    @property
    def live(self) -> bool:
        """A source that runs on its own clock (camera, simulator, real-time replay)."""
        return self.kind is not SourceKind.REPLAY or self.realtime

    def label(self) -> str:
        """A short description for logs: the file, the scene, or the camera's link and mode."""
        if self.kind is SourceKind.REPLAY:
            return str(self.path)
        if self.kind is SourceKind.SIMULATE:
            return self.scene or DEFAULT_SCENE
        where = f" {self.camera_file}" if self.camera_file else ""
        return f"{link_name(self.camera_link)} {mode_name(self.camera_mode)}{where} (library {self.library_path()})"

    def library_path(self) -> str | None:
        """The camera library to load: ``camera_library``, else ``$SPIKELINK_LIBRARY`` (None: neither)."""
        return self.camera_library or os.environ.get(LIBRARY_ENV) or None

    def preflight(self) -> None:
        """Check, without opening it, that the source can be opened here.

        Raises ``SourceUnavailable`` when the camera library is missing (the message names the
        path and ``$SPIKELINK_LIBRARY``); bad inputs are ``ValueError``/``FileNotFoundError`` from
        ``geometry``.
        """
        if self.kind is not SourceKind.CAMERA:
            return
        path = self.library_path()
        if path is None:
            raise SourceUnavailable(f"no SpikeLink camera library: give --camera-library PATH or set {LIBRARY_ENV} "
                                    f"to the SDK's shared library")
        if not os.path.isfile(path):
            origin = "--camera-library" if self.camera_library else f"${LIBRARY_ENV}"
            raise SourceUnavailable(f"SpikeLink camera library not found: {path} (from {origin}); give "
                                    f"--camera-library PATH or set {LIBRARY_ENV} to the SDK's shared library")

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
        if self.kind is SourceKind.CAMERA:
            geometry = self.camera_mode.geometry
            if self.camera_file is not None:  # the dummy link replays raw planes of the mode's size
                if not os.path.isfile(self.camera_file):
                    raise FileNotFoundError(f"dummy-link spike file not found: {self.camera_file}")
                size = os.path.getsize(self.camera_file)
                if size == 0 or size % geometry.plane_bytes:
                    raise ValueError(f"{self.camera_file} is {size} bytes, not a whole number of "
                                     f"{geometry.plane_bytes}-byte planes of camera mode {mode_name(self.camera_mode)}")
            return geometry
        return Geometry(self.height, self.width)

    def describe(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["kind"] = self.kind.value
        if self.kind is SourceKind.CAMERA:
            d["camera_link"], d["camera_mode"] = link_name(self.camera_link), mode_name(self.camera_mode)
        else:
            for key in ("camera_link", "camera_mode", "camera_buffer_pool"):
                d.pop(key, None)
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
                from firmware_io.scenes import SceneName
                from firmware_io.sim_source import source_from_scene
            except ImportError as exc:
                raise SourceUnavailable(f"the simulated camera is not available: {exc}") from exc
            # the simulator's own ``speed`` is scene motion, not playback speed: the camera clock is rate_hz
            return source_from_scene(SceneName(self.scene or DEFAULT_SCENE), Geometry(self.height, self.width),
                                     seed=self.seed, block_planes=self.block_planes, n_planes=self.planes,
                                     realtime=True, rate_hz=self.rate_hz)
        try:
            from firmware_io.camera import CameraSource
        except ImportError as exc:
            raise SourceUnavailable(f"the SpikeLink camera support is not available: {exc}") from exc
        dummy = self.camera_link is LinkType.DUMMY_FILE
        return CameraSource(self.library_path(), link=self.camera_link, mode=self.camera_mode,
                            planes_per_block=self.block_planes, buffer_pool_size=self.camera_buffer_pool,
                            file_path=self.camera_file, loop=self.loop,
                            replay_rate_hz=self.rate_hz if dummy else 0.0)


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
    last_behind_event = 0.0
    seen_reconnects = 0
    schedule_t0_ns: int | None = None  # live simulator: when plane 0 was due (from its first block)
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
            if spec.kind is SourceKind.SIMULATE:
                # the simulator's schedule: plane p is due at t0 + p / rate (its own plane counter)
                period_ns = 1e9 / spec.rate_hz
                if schedule_t0_ns is None:
                    schedule_t0_ns = block.capture_t_ns - int(block.stop_plane * period_ns)
                behind_ns = max(0, block.capture_t_ns - schedule_t0_ns - int(block.stop_plane * period_ns))
                ring.set("behind_us", behind_ns // 1000)
                if behind_ns > BEHIND_EVENT_AFTER_S * 1e9 and now - last_behind_event >= BEHIND_EVENT_MIN_INTERVAL_S:
                    last_behind_event = now
                    made_hz = block.stop_plane * 1e9 / max(1, block.capture_t_ns - schedule_t0_ns)
                    events.put(("behind", f"the simulated camera is {behind_ns / 1e9:.1f} s behind its "
                                          f"{spec.rate_hz:.0f} Hz schedule (it makes about {made_hz:.0f} planes/s "
                                          f"here; no planes are skipped): lower --rate-hz or the geometry"))
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
