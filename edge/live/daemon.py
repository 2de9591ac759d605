"""The live pipeline daemon: capture process -> plane ring -> worker -> publisher, plus control.

Processes and threads: the capture side runs in its own process (``edge.live.capture``), so reading
the camera never competes with inference for the GIL; everything else runs on the daemon's main
thread in one loop, between windows: run one worker step, publish its frames, and at most every
``SERVICE_PERIOD_S`` (2 ms) serve control requests, read subscription changes and capture events,
watch the capture's progress and send a heartbeat when due (every 0.5 s). Servicing on every pass
cost as much CPU as TFP at 1,000 frames/s; 2 ms is well below any control or monitoring latency
anyone notices. One thread owns every ZeroMQ socket (sockets are not thread-safe), and ``set``
requests are applied between windows by construction.

Waking: when no window is ready the loop sleeps in one ``zmq.Poller.poll`` on the control socket,
the publisher (subscriptions) and the capture's wake pipe (a byte per block written,
``edge.live.capture``), with a timeout of at most ``IDLE_WAIT_MAX_S`` (50 ms: the heartbeat and
the stall watch). A new block wakes it at once, so a window is reconstructed as soon as its last
plane is in the ring, and an idle daemon costs nothing between blocks. (It used to sleep 0.2 ms
at a time and look again: a 1 ms frame period then often found two windows ready at once, which
``latest`` took for falling behind.)

Changing the method or window (``set``) needs a new reconstructor: it is built, and run once on
an empty window, on a background thread while the old one keeps streaming; the loop swaps them
between windows when it is ready (``_PendingSet``). The reply says ``pending``; ``describe``
shows ``pending_set`` until it is applied, and the swap (or a failure) is an event and a log
line. What the thread cannot hide is the first load of torch (and of ONNX, which torch's exporter
imports) into the process: loading those extension libraries holds the GIL, 0.2-0.5 s each on a
quiet 2-core machine and seconds on a loaded one (measured); later builds pause the stream for
well under 0.1 s. Only building in another process would hide that (not done: a network runs in
the daemon's process).

Capture progress: the capture stamps ``writer_t_ns`` in the ring header on every pass of its loop.
A stamp older than ``STALL_DETECT_S`` (0.5 s) while the source is running is a stall (a SIGSTOPped
child, a read hung in the vendor SDK): state ``degraded``, an event, a log line and
``capture_stalled`` in the heartbeats; progress again clears it. A stall longer than
``--capture-stall-s`` is a source failure (exit 3).

Modes:

- deterministic replay (``--replay`` without ``--realtime``; policy ``all``): ring writer policy
  ``block`` and a lossless publisher, so every window of the file is published exactly once, in
  order, whatever the speed of the machine or the subscribers. By default it waits for one frame
  subscriber before streaming (``--wait-subscribers``; with 0 it warns at the start, and at the
  end says how many frames were published with no subscriber connected).
- live (camera, simulator, ``--realtime`` replay; policy ``latest``): ring ``overwrite`` (the
  capture never waits), worker ``latest`` (skips to the newest window, counted, once the oldest
  ready window is older than ``--latency-budget-ms``), publisher drops at the HWM for a stalled
  subscriber.

Shutdown: SIGINT/SIGTERM set a flag; the loop stops the capture (ring stop flag, then SIGTERM),
sends end-of-stream, closes the sockets (LINGER 0) and removes the ring, well within a second.

Source losses are counters in ``stats`` (so in every heartbeat too), never silent:
``source_errors``, ``camera_reconnects`` and ``source_discontinuities`` (a camera that vanished and
came back; each event is also a log line), ``capture_gap_planes`` (planes the source never
delivered: an outage at the source's rate, blocks the camera dropped), ``source_gap_planes``
(planes the worker had to give up a window for), ``source_dropped_blocks`` (the camera queue's
drop-oldest), ``source_late_blocks`` and ``source_behind_ms`` (a live simulator that cannot keep up
with its rate). The first frame after any loss carries ``discontinuity``, and
``discontinuity_frames`` counts the frames published with it: each follows skipped windows
(``worker_skipped_windows``), lost windows (``lost_windows``: their planes were overwritten,
``ring_overrun_planes``, or never delivered, ``source_gap_planes``) or a source discontinuity.
Every key is listed with its unit in ``docs/wire-format.md`` (a test holds the two equal).

Raw recording (``--record DIR``, ``edge.live.recorder``): a recorder process beside the capture
writes every captured plane into DIR through its own buffer; it never holds up the capture in live
modes, and what it drops or why it stopped is in ``stats`` (``record_*``), ``health`` and the log.

State (``DaemonState``, the ``state`` of ``health`` and ``stats``): ``starting`` until the capture
has started, ``running`` (``degraded`` while the capture makes no progress), then ``ended`` (a
finite source ended), ``failed`` or ``stopping``.

Setup refuses what cannot work before anything starts (exit 2): a finite source shorter than one
window (a short replay: no frame could ever be published), and a ring over ``--max-ring-mb`` or
over the free space of ``/dev/shm``. Before sizing its ring it removes the ring segments of daemons
that were killed without cleaning up (``edge.live.ring.sweep_stale_rings``, each one logged).

Watching it: ``--metrics HOST:PORT`` serves Prometheus metrics (``edge.live.metrics``: the loop appends
each frame's timestamps and hands over the heartbeat's stats; scrapes never touch the loop), and under
systemd (``$NOTIFY_SOCKET``) the loop sends READY once the source has started, a STATUS line with the
heartbeat and WATCHDOG kicks from ``_service`` (``edge.live.service``), so a stuck loop gets restarted.

Settings arrive typed (``edge.live.config.DaemonConfig``); ``set`` requests go through the same
parse functions as the command line before anything changes.

Security (``edge.live.security``): with CURVE, the authenticator thread starts before either socket
is bound and stops before the context terminates, and the allow-list folder is re-read when it
changes; without it, exposed addresses (``--insecure``) are logged as warnings. ``stream_id`` is
random (no host name or PID on the wire); ``describe`` adds the host name and PID, and full source
paths, only for authenticated (CURVE) clients.

Exit codes (``ExitCode``): 0 clean (end of a finite replay, or a signal), 2 bad arguments or
input, 3 source failure (cannot open, died, camera library missing), 4 backend unavailable,
5 cannot bind an address, 1 anything unexpected.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import zmq

from edge.reconstruction.backends import BackendUnavailable, make_reconstructor
from edge.live.capture import CaptureProcess
from edge.live.recorder import RecorderProcess, RecordSettings, record_health_off, record_stats_off
from edge.live.config import DaemonConfig, parse_hop, parse_method, parse_policy, parse_window, resolve_device
from edge.live.control import ControlServer
from edge.live.metrics import DaemonMetrics
from edge.live.publisher import Publisher
from edge.live.security import CurveServer, redact_source, warn_exposed
from edge.live.sockets import IO_THREADS, BindError
from edge.live.sources import SourceUnavailable, kind_of
from edge.protocol.control import ControlRequestError
from edge.live.ring import RingTooLarge, SpikeRing, WriterPolicy, WriterState, sweep_stale_rings
from edge.live.service import ServiceNotifier, status_line
from edge.protocol.wire import WIRE_VERSION, EndOfStream, FrameHeader, Heartbeat, PayloadDtype, encode_eos, encode_frame, encode_heartbeat
from edge.live.worker import Worker
from edge.reconstruction.backends.base import Device, GpuReconstructor
from edge.reconstruction.methods import Method, method_spec
from firmware_io.contract import now_ns
from firmware_io.segments import prepare_folder
from firmware_io.exits import ExitCode

log = logging.getLogger("edge.live.daemon")

HEARTBEAT_PERIOD_S = 0.5
SERVICE_PERIOD_S = 0.002
IDLE_WAIT_MAX_S = 0.05  # the longest poll while idle: bounds heartbeat jitter and the stall watch
STALL_DETECT_S = 0.5  # capture progress older than this: a stall (health degraded, event, heartbeat flag)
WAIT_REMINDER_S = 10.0  # while waiting for subscribers, say so again this often
EOS_REPEATS = 3
EOS_SPACING_S = 0.05
END_FLUSH_S = 2.0  # lossless mode: bounded time to flush the queue after a natural end
LATENCY_HISTORY = 2048
SETTABLE = ("method", "window", "hop", "policy")  # what ``set`` may change


class DaemonState(str, enum.Enum):
    """The daemon's state; the values are what ``health`` and ``stats`` send."""

    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"  # running, but the capture process has made no progress for STALL_DETECT_S
    ENDED = "ended"
    FAILED = "failed"
    STOPPING = "stopping"


class DaemonError(RuntimeError):
    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _PendingSet:
    """A ``set`` of method/window whose reconstructor is being built on a background thread."""

    method: Method
    window: int | None
    hop: int | None  # None: unchanged
    policy: Any  # WorkerPolicy, or None: unchanged
    requested: dict[str, Any]  # what the reply and describe show
    started_ns: int = field(default_factory=now_ns)
    reconstructor: Any = None
    error: str | None = None
    finished: bool = False  # set last by the thread (after reconstructor/error)


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.stream_id = secrets.token_hex(8)
        self._stop_reason: str | None = None
        self._fatal: DaemonError | None = None
        self.seq = 0
        self.started_ns = now_ns()
        self.last_frame_ns: int | None = None
        self.latency_publish_ns: deque[int] = deque(maxlen=LATENCY_HISTORY)
        self.frame_times: deque[int] = deque(maxlen=LATENCY_HISTORY)
        self.events_log: deque[str] = deque(maxlen=20)
        self.source_status: dict[str, Any] | None = None  # the source's own report (a camera's library)
        self.discontinuity_frames = 0  # frames published with the discontinuity flag
        self.frames_without_subscriber = 0  # frames published while no frame subscriber was connected
        self.capture_stalled = False
        self.capture_stalls = 0  # stall episodes so far
        self._stall_since_ns = 0
        self._pending: _PendingSet | None = None
        self.state = DaemonState.STARTING
        self.ring: SpikeRing | None = None
        self.capture: CaptureProcess | None = None
        self.publisher: Publisher | None = None
        self.control: ControlServer | None = None
        self.context: zmq.Context | None = None
        self.recorder: RecorderProcess | None = None
        self.curve: CurveServer | None = None
        self.metrics: DaemonMetrics | None = None  # --metrics: Prometheus (edge.live.metrics)
        self.notifier = ServiceNotifier.from_environment()  # sd_notify (edge.live.service)

    # -- setup ------------------------------------------------------------------------------------
    def _build_reconstructor(self, method: Method, window: int | None):
        cfg = self.config
        device = resolve_device(cfg.device, method)
        try:
            rec = make_reconstructor(method, self.geometry, backend=cfg.backend, device=device,
                                     window_planes=window, checkpoint=cfg.checkpoint, precision=cfg.precision,
                                     engine=cfg.engine)
            if isinstance(rec, GpuReconstructor):  # capture every batch size the worker can use now, not mid-stream
                rec.warm_up(range(1, cfg.max_batch + 1))
            return rec
        except BackendUnavailable as exc:
            raise DaemonError(ExitCode.BACKEND_UNAVAILABLE, f"backend unavailable for {method.value}: {exc}") from exc
        except (ValueError, FileNotFoundError) as exc:
            raise DaemonError(ExitCode.BAD_INPUT, f"cannot build the {method.value} reconstructor: {exc}") from exc

    def _check_source_length(self, kind: str) -> None:
        """A source that ends before one window is complete could never publish a frame: bad input, like
        ``spike-edge reconstruct`` on the same file."""
        cfg, window = self.config, self.reconstructor.window_planes
        try:
            n_planes = cfg.source.finite_planes()
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise DaemonError(ExitCode.BAD_INPUT, f"cannot use the {kind} source: {exc}") from exc
        if n_planes is not None and n_planes < window:
            raise DaemonError(ExitCode.BAD_INPUT,
                              f"{cfg.source.label()} has {n_planes} planes, fewer than one {window}-plane window "
                              f"({cfg.method.value}): there is no frame to publish")

    def setup(self) -> None:
        cfg = self.config
        kind = kind_of(cfg.source).value
        try:
            cfg.source.preflight()
        except SourceUnavailable as exc:
            raise DaemonError(ExitCode.SOURCE_FAILED, f"cannot use the {kind} source: {exc}") from exc
        try:
            self.geometry = cfg.source.geometry()
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise DaemonError(ExitCode.BAD_INPUT, f"cannot use the {kind} source: {exc}") from exc
        self.reconstructor = self._build_reconstructor(cfg.method, cfg.window)
        self._check_source_length(kind)
        policy = cfg.effective_policy
        writer_policy = WriterPolicy.OVERWRITE if cfg.source.live else WriterPolicy.BLOCK
        sweep_stale_rings()  # a killed daemon's leftover segments would count against the free space
        try:
            self.ring = SpikeRing.create(cfg.ring_planes, self.geometry, policy=writer_policy, rate_hz=cfg.source.rate_hz,
                                         max_bytes=cfg.max_ring_mb * 10**6)
        except RingTooLarge as exc:
            raise DaemonError(ExitCode.BAD_INPUT, f"{exc}: lower --ring-planes ({cfg.ring_planes} planes of "
                                                  f"{self.geometry}) or raise --max-ring-mb ({cfg.max_ring_mb})") from exc
        except ValueError as exc:
            raise DaemonError(ExitCode.BAD_INPUT, str(exc)) from exc
        try:
            self.worker = Worker(self.ring, self.reconstructor, hop_planes=cfg.hop, policy=policy,
                                 max_batch=cfg.max_batch, latency_budget_ns=int(cfg.latency_budget_ms * 1e6))
        except ValueError as exc:
            raise DaemonError(ExitCode.BAD_INPUT, str(exc)) from exc
        if resolve_device(cfg.device, cfg.method) is Device.CUDA:
            how = self.ring.register_cuda()
            log.info("ring pinned for CUDA: %s", how or "no (pageable memory)")
        self.context = zmq.Context(io_threads=IO_THREADS)  # frames and control apart (edge.live.sockets)
        if cfg.curve:
            self.curve = CurveServer(cfg.curve_secret, cfg.curve_clients, self.context).start()
        else:
            warn_exposed({"publisher": cfg.bind, "control": cfg.control})
        try:
            self.publisher = Publisher(cfg.bind, lossless=cfg.deterministic, context=self.context, curve=self.curve)
            self.control = ControlServer(cfg.control, self.handle_control, context=self.context, curve=self.curve)
            if cfg.metrics is not None:
                self.metrics = DaemonMetrics(ring_capacity_planes=self.ring.capacity,
                                             states=[state.value for state in DaemonState])
                log.info("metrics on %s", self.metrics.serve(cfg.metrics))
        except BindError as exc:
            raise DaemonError(ExitCode.BIND_FAILED, str(exc)) from exc
        if cfg.recording is not None:
            self._start_recorder(cfg.recording, writer_policy)
        self.capture = CaptureProcess(cfg.source, self.ring, self.recorder.ring if self.recorder else None)
        self.capture.start()
        rate = cfg.source.rate_hz
        log.info(
            "spike-edge run: source %s %s | geometry %s | %s | method %s window %d | backend %s | "
            "hop %d planes (%.1f frames/s at %.0f Hz) | policy %s | ring %d planes (%.1f MB, writer %s) | "
            "%s | publishing on %s, control on %s (%s) | stream %s",
            kind, cfg.source.label(), self.geometry,
            "real time" if cfg.source.live else "deterministic", cfg.method.value, self.reconstructor.window_planes,
            self.reconstructor.backend, cfg.hop, rate / cfg.hop, rate, policy.value, self.ring.capacity,
            self.ring.nbytes / 1e6, writer_policy.value,
            "lossless (subscribers flow-control the replay)" if cfg.deterministic else "live (drops at HWM)",
            self.publisher.endpoint, self.control.endpoint, "CURVE" if self.curve else "no authentication",
            self.stream_id)

    def _start_recorder(self, settings: RecordSettings, writer_policy: WriterPolicy) -> None:
        """The record ring and the recorder process, recording before the capture starts."""
        try:
            prepare_folder(settings.folder)
            ring = SpikeRing.create(settings.buffer_planes(self.geometry), self.geometry, policy=writer_policy,
                                    rate_hz=self.config.source.rate_hz)
        except (ValueError, OSError) as exc:
            raise DaemonError(ExitCode.BAD_INPUT, f"cannot record: {exc}") from exc
        source = self.config.source
        self.recorder = RecorderProcess(settings, ring, meta={"stream_id": self.stream_id,
                                                              "source": f"{kind_of(source).value} {source.label()}"})
        started = self.recorder.start()
        self._poll_recorder()
        if not started:
            raise DaemonError(ExitCode.BAD_INPUT,
                              f"cannot record: {self.recorder.stop_reason or 'the recorder did not start'}")
        log.info("recording into %s: segments of %g MB, buffer %d planes (%g MB, writer %s)", settings.folder,
                 settings.segment_bytes / 1e6, ring.capacity, round(ring.nbytes / 1e6, 1), writer_policy.value)

    def _on_record_event(self, kind: str, text: str) -> None:
        self.events_log.append(f"{kind}: {text}")
        if kind in ("record-dropped", "record-stopped", "record-failed"):
            log.warning("%s: %s", kind, text)
        else:
            log.info("%s: %s", kind, text)

    def _poll_recorder(self) -> None:
        if self.recorder is not None:
            for kind, text in self.recorder.poll_events():
                self._on_record_event(kind, text)

    # -- signals ----------------------------------------------------------------------------------
    def request_stop(self, reason: str = "stopped") -> None:
        if self._stop_reason is None:
            self._stop_reason = reason

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            self.request_stop(f"stopped by {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> ExitCode:
        code = ExitCode.OK
        try:
            self.setup()
            code = self._loop()
        except DaemonError as exc:
            log.error("%s", exc)
            code = exc.code
        finally:
            self.shutdown(code)
        return code

    def _service(self) -> None:
        """Everything but the worker: control, subscriptions, capture events and progress, heartbeat,
        service watchdog."""
        self.notifier.kick()
        self.control.serve()
        self.publisher.poll_subscriptions()
        for kind, payload in self.capture.poll_events():
            self._on_capture_event(kind, payload)
        self._poll_recorder()
        if self.curve is not None:
            self.curve.refresh()
        now = now_ns()
        self._watch_progress(now)
        if now >= self._next_heartbeat_ns:
            self._send_heartbeat()

    def _on_capture_event(self, kind: str, payload: Any) -> None:
        if kind == "source-status":  # kept for health and describe, not an event of its own
            self.source_status = payload
            return
        text = payload if isinstance(payload, str) else repr(payload)
        self._event(kind, text)
        if kind == "fatal":
            log.error("capture: %s", text)
            self._fatal = DaemonError(ExitCode.SOURCE_FAILED, f"source failed: {text}")
            self.request_stop("source failed")
        elif kind in ("error", "reconnect", "discontinuity", "behind"):
            log.warning("capture %s: %s", kind, text)
        elif kind == "started":
            log.info("capture started: %s", text)
            if self.state is DaemonState.STARTING:
                self.state = DaemonState.RUNNING
                self.notifier.ready(status_line(self.stats()))
        else:
            log.info("capture %s: %s", kind, text)

    def _event(self, kind: str, text: str) -> None:
        """One line of ``health``'s ``recent_events``."""
        self.events_log.append(f"{kind}: {text}")

    def _watch_progress(self, now: int) -> None:
        """A running capture whose progress stamp is stale is stalled (degraded), and failed after
        ``--capture-stall-s``; a fresh stamp again clears the stall."""
        if self._stop_reason is not None or self.ring.state is not WriterState.RUNNING:
            return
        stamp = self.ring.get("writer_t_ns")
        age_s = (now - stamp) / 1e9 if stamp else 0.0
        limit_s = self.config.capture_stall_s
        pid = self.capture.pid
        if age_s >= min(STALL_DETECT_S, limit_s):
            if not self.capture_stalled:
                self.capture_stalled = True
                self.capture_stalls += 1
                self._stall_since_ns = stamp
                text = (f"the capture process (pid {pid}) has made no progress for {age_s:.1f} s; "
                        f"it counts as failed after {limit_s:g} s (--capture-stall-s)")
                self._event("stalled", text)
                log.warning("capture stalled: %s", text)
                if self.state is DaemonState.RUNNING:
                    self.state = DaemonState.DEGRADED
                self._next_heartbeat_ns = 0  # tell the subscribers now
            if age_s >= limit_s:
                text = f"the capture process (pid {pid}) made no progress for {age_s:.1f} s (--capture-stall-s {limit_s:g})"
                self._event("fatal", text)
                self._fatal = DaemonError(ExitCode.SOURCE_FAILED, f"source failed: {text}")
                self.state = DaemonState.FAILED
                self.request_stop("source failed")
        elif self.capture_stalled:
            self.capture_stalled = False
            text = f"the capture process (pid {pid}) makes progress again after {(stamp - self._stall_since_ns) / 1e9:.1f} s"
            self._event("resumed", text)
            log.warning("capture resumed: %s", text)
            if self.state is DaemonState.DEGRADED:
                self.state = DaemonState.RUNNING
            self._next_heartbeat_ns = 0

    def _loop(self) -> ExitCode:
        cfg = self.config
        self._next_heartbeat_ns = 0
        wait_for = cfg.effective_wait_subscribers
        waiting = wait_for > 0
        if waiting:
            how = ("deterministic replay: lossless to its subscribers; --wait-subscribers 0 streams at once"
                   if cfg.wait_subscribers is None else "--wait-subscribers")
            log.info("waiting for %d frame subscriber(s) on %s before streaming (%s)", wait_for,
                     self.publisher.endpoint, how)
            remind_ns = now_ns() + int(WAIT_REMINDER_S * 1e9)
        elif cfg.deterministic:
            log.warning("deterministic replay with --wait-subscribers 0: frames published while no subscriber is "
                        "connected go nowhere (how many is said at the end)")
        poller = zmq.Poller()
        poller.register(self.control.sock, zmq.POLLIN)
        poller.register(self.publisher.sock, zmq.POLLIN)
        poller.register(self.capture.wake_fd, zmq.POLLIN)
        service_period_ns = int(SERVICE_PERIOD_S * 1e9)
        next_service_ns = 0
        while self._stop_reason is None:
            if now_ns() >= next_service_ns:
                self._service()
                self._check_capture()
                next_service_ns = now_ns() + service_period_ns
                continue  # the service may have stopped the loop
            if self._pending is not None and self._pending.finished:
                self._apply_pending()
            if waiting:
                if self.publisher.frame_subscribers >= wait_for:
                    waiting = False
                    log.info("%d frame subscriber(s) connected; streaming", self.publisher.frame_subscribers)
                else:
                    if now_ns() >= remind_ns:
                        remind_ns = now_ns() + int(WAIT_REMINDER_S * 1e9)
                        log.info("still waiting for %d frame subscriber(s) on %s (%d connected)", wait_for,
                                 self.publisher.endpoint, self.publisher.frame_subscribers)
                    next_service_ns = self._idle(poller, next_service_ns)
                    continue
            lost_before = self.worker.lost_windows
            frames = self.worker.step()
            if frames is None:  # the source ended (or failed) and no further window can complete
                if self.ring.state is WriterState.FAILED:
                    self.capture.process.join(1.0)  # let its last events arrive
                    for kind, payload in self.capture.poll_events():
                        self._on_capture_event(kind, payload)
                    if self._fatal is None:
                        self._fatal = DaemonError(ExitCode.SOURCE_FAILED, "the source failed (see the log above)")
                    self.state = DaemonState.FAILED
                    break
                self._check_capture(ended_ok=True)
                if self._fatal is None:
                    self.state = DaemonState.ENDED
                    self.request_stop("end-of-stream")
                break
            if not frames:
                if self.worker.lost_windows == lost_before:  # else it resumed past a loss: look again at once
                    next_service_ns = self._idle(poller, next_service_ns)
                continue
            for frame in frames:
                if not self._publish(frame):
                    break
        if self._fatal is not None:
            raise self._fatal
        return ExitCode.OK

    def _idle(self, poller: zmq.Poller, next_service_ns: int) -> int:
        """Sleep until new planes, a request or subscription, or the next timer; returns the next service time."""
        now = now_ns()
        until_ns = min(self._next_heartbeat_ns, now + int(IDLE_WAIT_MAX_S * 1e9))
        timeout_ms = max(1, math.ceil((until_ns - now) / 1e6))  # zmq poll timeouts are whole milliseconds
        ready = dict(poller.poll(timeout_ms))
        if ready.pop(self.capture.wake_fd, None) and not self.capture.drain():
            poller.unregister(self.capture.wake_fd)  # the child exited: its pipe would stay readable
        if ready or now_ns() >= until_ns:
            return 0  # a socket has work, or a timer is due: service on the next pass
        return next_service_ns

    def _check_capture(self, ended_ok: bool = False) -> None:
        """Notice a capture process that died without saying so."""
        if self.capture.alive or self._stop_reason is not None:
            return
        for kind, payload in self.capture.poll_events():
            self._on_capture_event(kind, payload)
        if self._fatal is not None:
            self.request_stop("source failed")
            return
        state = self.ring.state
        if state in (WriterState.ENDED, WriterState.STOPPED) and self.capture.exitcode == 0:
            return
        if ended_ok and state is WriterState.ENDED:
            return
        self._fatal = DaemonError(ExitCode.SOURCE_FAILED,
                                  f"the capture process exited (code {self.capture.exitcode}, state {state.name})")
        self.state = DaemonState.FAILED
        self.request_stop("source failed")

    def _publish(self, frame) -> bool:
        cfg = self.config
        image = frame.image if cfg.dtype is PayloadDtype.FLOAT32 else frame.image.astype(cfg.dtype.value)
        rec = self.worker.reconstructor
        publish_t = now_ns()
        header = FrameHeader(
            stream_id=self.stream_id, seq=self.seq, key_plane=frame.key_plane, plane_start=frame.plane_start,
            plane_stop=frame.plane_stop, shape=self.geometry.shape, dtype=cfg.dtype.value, method=rec.method.value,
            backend=rec.backend, weights_id=rec.weights_id, capture_t_ns=frame.capture_t_ns,
            dequeue_t_ns=frame.dequeue_t_ns, infer_start_t_ns=frame.infer_start_t_ns,
            infer_end_t_ns=frame.infer_end_t_ns, publish_t_ns=publish_t, rate_hz=float(cfg.source.rate_hz),
            ring_overrun_planes=self.worker.overrun_planes,
            worker_skipped_windows=self.worker.skipped_windows, discontinuity=frame.discontinuity)
        parts = encode_frame(header, image)
        sent = self.publisher.send(parts, should_stop=lambda: self._stop_reason is not None,
                                   idle=self._service_while_blocked)
        if not sent:
            return False
        self.seq += 1
        self.discontinuity_frames += frame.discontinuity
        if self.publisher.frame_subscribers == 0:
            self.frames_without_subscriber += 1
        self.last_frame_ns = publish_t
        self.frame_times.append(publish_t)
        self.latency_publish_ns.append(publish_t - frame.capture_t_ns)
        if self.metrics is not None:
            self.metrics.observe(frame.capture_t_ns, frame.dequeue_t_ns, frame.infer_start_t_ns, frame.infer_end_t_ns,
                                 publish_t)
        return True

    def _service_while_blocked(self) -> None:
        self.notifier.kick()
        self.control.serve()
        for kind, payload in self.capture.poll_events():
            self._on_capture_event(kind, payload)
        self._poll_recorder()
        self._watch_progress(now_ns())

    # -- heartbeats and stats ---------------------------------------------------------------------
    def _send_heartbeat(self) -> None:
        self._next_heartbeat_ns = now_ns() + int(HEARTBEAT_PERIOD_S * 1e9)
        stats = self.stats()
        hb = Heartbeat(stream_id=self.stream_id, t_ns=now_ns(), last_seq=self.seq - 1, stats=stats,
                       capture_stalled=self.capture_stalled)
        # live: dropped for a stalled subscriber like frames; lossless: a bounded wait
        self.publisher.send(encode_heartbeat(hb), should_stop=lambda: True)
        self.notifier.status(stats)
        if self.metrics is not None:
            self.metrics.update(stats, self.describe())

    def stats(self) -> dict[str, Any]:
        """The counters of ``stats`` and every heartbeat (each key with its unit in ``docs/wire-format.md``)."""
        ring, worker = self.ring, self.worker
        counters = ring.counters()
        times = list(self.frame_times)
        fps = 0.0
        if len(times) >= 2 and times[-1] > times[0]:
            fps = (len(times) - 1) * 1e9 / (times[-1] - times[0])
        lat = np.array(self.latency_publish_ns, dtype=np.float64) / 1e6
        return {
            "state": self.state.value,
            "frames": self.seq,
            "fps": round(fps, 2),
            "windows": worker.windows,
            "worker_skipped_windows": worker.skipped_windows,
            "ring_overrun_planes": worker.overrun_planes,
            "ring_overwritten_unread": counters["overwritten_unread"],
            "lost_windows": worker.lost_windows,
            "source_gap_planes": worker.source_gap_planes,
            "capture_gap_planes": counters["source_gap_planes"],
            "discontinuity_frames": self.discontinuity_frames,
            "source_timeouts": counters["timeouts"],
            "source_errors": counters["errors"],
            "camera_reconnects": counters["reconnects"],
            "source_discontinuities": counters["discontinuities"],
            "discontinuities": counters["discontinuities"],  # deprecated alias of source_discontinuities
            "source_late_blocks": counters["late_blocks"],
            "source_dropped_blocks": counters["dropped_blocks"],
            "source_behind_ms": round(counters["behind_us"] / 1000, 1),
            "writer_waits": counters["writer_waits"],
            "planes_captured": counters["committed"] - max(counters["first_plane"], 0),
            "ring_fill_planes": min(ring.capacity, max(0, counters["committed"] - max(counters["release"],
                                                                                     counters["first_plane"], 0))),
            "capture_alive": self.capture.alive if self.capture else False,
            "capture_stalled": self.capture_stalled,
            "capture_stalls": self.capture_stalls,
            "subscribers": self.publisher.frame_subscribers if self.publisher else 0,
            "frames_without_subscriber": self.frames_without_subscriber,
            "publish_waits": self.publisher.send_waits if self.publisher else 0,
            "capture_to_publish_ms_p50": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
            "capture_to_publish_ms_p99": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
            "control_requests": self.control.requests if self.control else 0,
            "control_errors": self.control.errors if self.control else 0,
            **(self.recorder.stats() if self.recorder else record_stats_off()),
            "curve_denied": self.curve.denied if self.curve else 0,
        }

    # -- control ----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        cfg, rec = self.config, self.worker.reconstructor
        source = {"kind": kind_of(cfg.source).value, **cfg.source.describe()}
        host = {"host": socket.gethostname(), "pid": os.getpid()} if cfg.curve else {}  # listed clients only
        return {
            "stream_id": self.stream_id, "wire_version": WIRE_VERSION, "authenticated": cfg.curve, **host,
            "source": source if cfg.curve else redact_source(source),
            "geometry": list(self.geometry.shape), "rate_hz": cfg.source.rate_hz, "method": rec.method.value,
            "backend": rec.backend, "weights_id": rec.weights_id, "window": rec.window_planes,
            "hop": self.worker.hop_planes, "policy": self.worker.policy.value, "dtype": cfg.dtype.value,
            "deterministic": cfg.deterministic, "ring_planes": self.ring.capacity, "ring_bytes": self.ring.nbytes,
            "ring_writer_policy": self.ring.policy.value, "pub": self.publisher.endpoint,
            "control": self.control.endpoint, "frames_per_s_nominal": cfg.source.rate_hz / self.worker.hop_planes,
            "source_status": self.source_status,
            "record": self.recorder.settings.describe() if self.recorder else None,
            "latency_budget_ms": cfg.latency_budget_ms, "capture_stall_s": cfg.capture_stall_s,
            "wait_subscribers": cfg.effective_wait_subscribers,
            "pending_set": None if self._pending is None else self._pending.requested,
        }

    def health(self) -> dict[str, Any]:
        now = now_ns()
        writer_t = self.ring.get("writer_t_ns")
        return {
            "state": self.state.value, "capture_alive": self.capture.alive, "writer_state": self.ring.state.name.lower(),
            "capture_pid": self.capture.pid, "capture_stalled": self.capture_stalled,
            "last_frame_age_s": None if self.last_frame_ns is None else (now - self.last_frame_ns) / 1e9,
            "writer_age_s": None if not writer_t else (now - writer_t) / 1e9,
            "uptime_s": (now - self.started_ns) / 1e9, "recent_events": list(self.events_log),
            "source_status": self.source_status,
            **(self.recorder.health() if self.recorder else record_health_off()),
        }

    def _settings(self) -> dict[str, Any]:
        """The settings in force: what a ``set`` reply shows."""
        worker = self.worker
        return {"method": worker.reconstructor.method.value, "window": worker.window_planes,
                "hop": worker.hop_planes, "policy": worker.policy.value, "from_key_plane": worker.next_key}

    def apply_settings(self, params: dict[str, Any]) -> dict[str, Any]:
        """``set``: every value goes through its ``edge.live.config`` parse function first; one bad value
        rejects the request and changes nothing. A value of None leaves that setting as it is (for
        ``window``: the method's own window).

        ``hop`` and ``policy`` alone apply at once (reply ``status: applied``). A request with ``method``
        or ``window`` needs a new reconstructor: it is built on a background thread while the current
        one keeps streaming, and the whole request applies between two windows once it is ready (reply
        ``status: pending``; ``describe``'s ``pending_set`` until then; an event either way). One such
        request at a time: another one meanwhile is rejected.
        """
        unknown = sorted(set(params) - set(SETTABLE))
        if unknown:
            raise ControlRequestError(f"cannot set {unknown}; settable keys are {', '.join(SETTABLE)}")
        try:
            method = self.worker.reconstructor.method if params.get("method") is None else parse_method(params["method"])
            window = parse_window(params.get("window"))
            hop = None if params.get("hop") is None else parse_hop(params["hop"])
            policy = None if params.get("policy") is None else parse_policy(params["policy"])
        except ValueError as exc:
            raise ControlRequestError(str(exc)) from None
        if "method" not in params and "window" not in params:
            try:
                self.worker.configure(hop_planes=hop, policy=policy)
            except ValueError as exc:
                raise ControlRequestError(str(exc)) from None
            applied = self._settings()
            log.info("control set: %s", applied)
            return {"status": "applied", "applied": applied}
        pending = self._pending
        if pending is not None:
            raise ControlRequestError(
                f"a set of {pending.requested} is still being prepared ({(now_ns() - pending.started_ns) / 1e9:.1f} s "
                f"so far); set method or window again once it is applied (describe: pending_set)")
        expected_window = window or method_spec(method).window_planes
        try:
            self.worker.check_fits(expected_window, self.worker.hop_planes if hop is None else hop)
        except ValueError as exc:
            raise ControlRequestError(str(exc)) from None
        requested = {"method": method.value, "window": expected_window,
                     "hop": self.worker.hop_planes if hop is None else hop,
                     "policy": (self.worker.policy if policy is None else policy).value}
        self._pending = _PendingSet(method, window, hop, policy, requested)
        threading.Thread(target=self._build_pending, args=(self._pending,), name="spike-set-build",
                         daemon=True).start()
        self._event("set-pending", f"building {requested} aside; the current method streams meanwhile")
        log.info("control set: building %s aside; %s streams meanwhile", requested, self.worker.reconstructor.method.value)
        return {"status": "pending", "pending": requested, "current": self._settings()}

    def _build_pending(self, pending: _PendingSet) -> None:
        """Background thread: build the new reconstructor and run it once (first-call costs happen here)."""
        try:
            reconstructor = self._build_reconstructor(pending.method, pending.window)
            reconstructor.reconstruct(np.zeros((1, reconstructor.window_planes, self.ring.plane_bytes), dtype=np.uint8))
            pending.reconstructor = reconstructor
        except DaemonError as exc:
            pending.error = str(exc)
        except Exception as exc:  # a bug or an unexpected library error: reported, the stream goes on
            log.exception("building the reconstructor for set %s failed", pending.requested)
            pending.error = f"{type(exc).__name__}: {exc}"
        pending.finished = True

    def _apply_pending(self) -> None:
        """Between windows: swap in the reconstructor a pending ``set`` built (or report why it could not)."""
        pending, self._pending = self._pending, None
        took_s = (now_ns() - pending.started_ns) / 1e9
        error = pending.error
        if error is None:
            try:
                self.worker.configure(reconstructor=pending.reconstructor, hop_planes=pending.hop,
                                      policy=pending.policy)
            except ValueError as exc:
                error = str(exc)
        if error is not None:
            self._event("set-failed", f"{pending.requested}: {error}")
            log.error("control set %s failed after %.1f s: %s; %s streams on", pending.requested, took_s, error,
                      self.worker.reconstructor.method.value)
            return
        applied = self._settings()
        self._event("set-applied", f"{applied} after {took_s:.1f} s")
        log.info("control set applied after %.1f s: %s", took_s, applied)

    def handle_control(self, cmd: str, params: dict[str, Any]) -> dict[str, Any]:
        if cmd == "describe":
            return self.describe()
        if cmd == "health":
            return self.health()
        if cmd == "stats":
            return {"stats": self.stats()}
        if cmd == "set":
            return self.apply_settings(params)
        raise ControlRequestError(f"unknown command {cmd!r}")

    # -- shutdown ---------------------------------------------------------------------------------
    def shutdown(self, code: ExitCode) -> None:
        reason = self._stop_reason or ("error" if code else "stopped")
        natural_end = reason == "end-of-stream"
        self.notifier.stopping(reason)
        if self.state not in (DaemonState.ENDED, DaemonState.FAILED):
            self.state = DaemonState.FAILED if code else DaemonState.STOPPING
        if self.capture is not None:
            exit_code = self.capture.stop(timeout_s=0.3)
            log.info("capture process exited with %s", exit_code)
        if self.publisher is not None:
            eos = EndOfStream(stream_id=self.stream_id, t_ns=now_ns(), last_seq=self.seq - 1, frames=self.seq,
                              reason=reason)
            for i in range(EOS_REPEATS):
                if i:
                    time.sleep(EOS_SPACING_S if natural_end else 0.01)
                max_wait = END_FLUSH_S if natural_end else 0.05
                self.publisher.send(encode_eos(replace(eos, t_ns=now_ns())), max_wait_s=max_wait)
            log.info("published %d frames; end of stream (%s)", self.seq, reason)
            if self.frames_without_subscriber:
                report = log.warning if self.config.deterministic else log.info
                report("%d of the %d frames were published while no frame subscriber was connected: they went "
                       "nowhere%s", self.frames_without_subscriber, self.seq,
                       " (start the subscriber first and keep --wait-subscribers at 1)" if self.config.deterministic
                       else "")
            self.publisher.close(linger_s=END_FLUSH_S if natural_end and self.config.deterministic else 0.0)
        if self.control is not None:
            self.control.close()
        if self.curve is not None:
            self.curve.stop()
        if self.context is not None:
            self.context.term()
        if self.recorder is not None:
            self._finish_recording()
        if self.ring is not None:
            self.ring.close()
        if self.metrics is not None:
            self.metrics.close()
        self.notifier.close()

    def _finish_recording(self) -> None:
        """Let the recorder write what it holds and close its last segment; log what was recorded."""
        recorder = self.recorder
        if recorder.alive:
            log.info("finishing the recording (%d planes still to write)", recorder.stats()["record_behind_planes"])
        recorder.finish(int(WriterState.STOPPED))
        self._poll_recorder()
        stats = recorder.stats()
        log.info("recorded %d planes (%.1f MB) in %d segment(s) into %s; dropped %d planes in %d drop(s); "
                 "recording %s", stats["record_planes"], stats["record_bytes"] / 1e6, stats["record_segments"],
                 recorder.settings.folder, stats["record_dropped_planes"], stats["record_drops"],
                 stats["record_state"] + (f" ({recorder.stop_reason})" if recorder.stop_reason else ""))
        recorder.close()
