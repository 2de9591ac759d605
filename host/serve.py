"""The live web viewer behind ``spike-host serve``: a page with the video, the stream's statistics and ``describe``.

Three parts, one process:

- ``StreamWatcher`` (a thread) reads the stream with a ``host.Subscriber``: it keeps the newest
  frame, and every ``STATS_PERIOD_S`` a snapshot of the statistics (frames/s received, per-stage
  latency percentiles of those frames, the daemon's drops: ring overruns, skipped windows,
  discontinuities; this viewer's own gaps, lost frames and reconnects; the daemon's heartbeat).
- ``DescribePoller`` (a thread) asks the daemon's control socket for ``describe`` every
  ``DESCRIBE_PERIOD_S`` (a ``set`` shows up there); no reply is shown as such on the page.
- an aiohttp application serving the page (``viewer.html`` and ``viewer.js`` beside this module), a
  WebSocket ``/ws`` that pushes, to each browser, JPEG frames at most ``fps`` a second (each one
  preceded by a JSON ``frame`` message: seq, key plane, exposure) and JSON ``stats`` and
  ``describe`` messages; plain JSON at ``/api/stats`` and ``/api/describe``, and the newest frame
  at ``/frame.jpg?stops=S&auto=0|1``.

Brightness (``Exposure``): frames are unnormalised (TFP is a firing rate in 0..1, a network's output
has its own scale), so each browser picks how values become grey levels: ``grey = value x 2^stops /
reference``, where ``reference`` follows the frame's 99.5th percentile while ``auto`` is on
(smoothed, so the picture does not flicker) and is held where it was when ``auto`` is turned off
(then a scene that brightens shows it). ``stops`` is the page's brightness slider.

Only the newest frame is ever encoded, once per browser per display tick; a browser that cannot keep
up gets fewer frames, never a backlog.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web
from PIL import Image

from edge.protocol.security import CurveClient
from edge.protocol.client import ControlError, ControlTimeout, build_request
from edge.protocol.client import request as control_request
from edge.protocol.endpoints import HttpAddress
from host import stats as stream_stats
from host.subscriber import Subscriber

log = logging.getLogger(__name__)

STATS_PERIOD_S = 0.5
DESCRIBE_PERIOD_S = 2.0
DESCRIBE_TIMEOUT_S = 1.0
DEFAULT_DISPLAY_FPS = 25.0
VIEWER_RCVHWM = 64  # frames queued for the watcher; beyond, this viewer's losses show as its own gaps
MAX_STOPS = 8.0
AUTO_PERCENTILE = 99.5
AUTO_SMOOTHING = 0.3  # weight of the newest frame's percentile in the auto reference
JPEG_QUALITY = 85
PAGE_FILES = {"/": ("viewer.html", "text/html"), "/viewer.js": ("viewer.js", "text/javascript")}
_TIMESTAMPS = stream_stats.TIMESTAMP_FIELDS


@dataclass(frozen=True)
class Newest:
    """The newest frame received, with the fields the page shows."""

    stream_id: str
    seq: int
    key_plane: int
    method: str
    image: np.ndarray


class StreamWatcher:
    """Reads the stream in a thread; ``newest`` and ``stats`` are what the pages are served from."""

    def __init__(self, url: str, **subscriber_options: Any) -> None:
        self.url = url
        self._subscriber_options = {"rcvhwm": VIEWER_RCVHWM, **subscriber_options}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._newest: Newest | None = None
        self._stats: dict[str, Any] = {"url": url, "connected": False, "frames": 0}
        self._thread = threading.Thread(target=self._run, name="stream-watcher", daemon=True)
        self.sub: Subscriber | None = None

    def start(self) -> StreamWatcher:
        self.sub = Subscriber(self.url, topics=("frame", "heartbeat", "eos"), **self._subscriber_options)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        if self.sub is not None:
            self.sub.close()

    @property
    def newest(self) -> Newest | None:
        with self._lock:
            return self._newest

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._stats)

    def _run(self) -> None:
        sub = self.sub
        stamps: list[tuple[int, ...]] = []
        frames = 0
        eos: str | None = None
        heartbeat: dict[str, Any] | None = None
        window_start = time.monotonic()
        while not self._stop.is_set():
            item = sub.next(0.1)
            if item is not None:
                if item.kind == "frame":
                    h = item.header
                    frames += 1
                    eos = None
                    stamps.append((h.capture_t_ns, h.dequeue_t_ns, h.infer_start_t_ns, h.infer_end_t_ns,
                                   h.publish_t_ns, item.recv_t_ns))
                    newest = Newest(h.stream_id, h.seq, h.key_plane, h.method, item.image)
                    with self._lock:
                        self._newest = newest
                elif item.kind == "heartbeat":
                    heartbeat = dict(item.heartbeat.stats)
                elif item.kind == "eos":
                    eos = item.eos.reason
            now = time.monotonic()
            if now - window_start >= STATS_PERIOD_S:
                snapshot = self._snapshot(stamps, now - window_start, frames, heartbeat, eos)
                with self._lock:
                    self._stats = snapshot
                stamps, window_start = [], now

    def _snapshot(self, stamps: list[tuple[int, ...]], window_s: float, frames: int,
                  heartbeat: dict[str, Any] | None, eos: str | None) -> dict[str, Any]:
        sub, newest = self.sub, self._newest
        s = sub.stats
        silent_s = None if sub.last_message_t is None else time.monotonic() - sub.last_message_t
        latency: dict[str, Any] = {}
        if stamps:
            t = np.array(stamps, dtype=np.int64)
            lat = stream_stats.stage_latencies_ns({name: t[:, i] for i, name in enumerate(_TIMESTAMPS)})
            for stage in ("capture_to_receive", "inference", "publish_to_receive"):
                summary = stream_stats.summarize_ns(lat[stage])
                latency[stage] = {"p50_ms": summary.p50_ms, "p99_ms": summary.p99_ms}
        return {
            "url": self.url,
            "connected": silent_s is not None and silent_s < sub.heartbeat_timeout_s,
            "silent_s": None if silent_s is None else round(silent_s, 1),
            "fps": round(len(stamps) / window_s, 1),
            "frames": frames,
            "seq": None if newest is None else newest.seq,
            "key_plane": None if newest is None else newest.key_plane,
            "method": None if newest is None else newest.method,
            "shape": None if newest is None else list(newest.image.shape),
            "latency": latency,
            "drops": {"ring_overrun_planes": s.ring_overrun_planes, "worker_skipped_windows": s.worker_skipped_windows,
                      "discontinuities": s.discontinuities, "gaps": s.gaps, "lost_frames": s.lost_frames,
                      "malformed": s.malformed, "reconnects": s.reconnects, "stream_restarts": s.stream_restarts},
            "daemon": heartbeat,
            "eos": eos,
        }


class DescribePoller:
    """Asks the control socket for ``describe`` every ``DESCRIBE_PERIOD_S`` in a thread."""

    def __init__(self, control_url: str | None, curve: CurveClient | None = None) -> None:
        self.control_url = control_url
        self.curve = curve
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._describe: dict[str, Any] = {"control": control_url, "ok": False,
                                          "error": "not asked yet" if control_url else "no control URL given"}
        self.version = 0
        self._thread = threading.Thread(target=self._run, name="describe-poller", daemon=True)

    def start(self) -> DescribePoller:
        if self.control_url is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(DESCRIBE_TIMEOUT_S + 1)

    def describe(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return self.version, dict(self._describe)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = control_request(self.control_url, build_request("describe"), timeout_s=DESCRIBE_TIMEOUT_S,
                                        curve=self.curve)
                result = {"control": self.control_url, **reply}
            except (ControlTimeout, ControlError, OSError) as exc:
                result = {"control": self.control_url, "ok": False, "error": str(exc)}
            except Exception as exc:  # zmq errors for a bad URL: shown on the page, never fatal
                result = {"control": self.control_url, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            with self._lock:
                if result != self._describe:
                    self._describe = result
                    self.version += 1
            self._stop.wait(DESCRIBE_PERIOD_S)


@dataclass
class Exposure:
    """How one browser turns values into grey levels (see the module docstring)."""

    stops: float = 0.0
    auto: bool = True
    reference: float | None = None

    def apply(self, settings: Any) -> None:
        """Settings from the page: ``{"stops": S, "auto": bool}``; ``ValueError`` quoting a bad one."""
        if not isinstance(settings, dict):
            raise ValueError(f"exposure settings must be a map, got {settings!r}")
        if "stops" in settings:
            stops = settings["stops"]
            if isinstance(stops, bool) or not isinstance(stops, (int, float)) or not math.isfinite(stops) \
                    or abs(stops) > MAX_STOPS:
                raise ValueError(f"stops must be a number in -{MAX_STOPS:g}..{MAX_STOPS:g}, got {stops!r}")
            self.stops = float(stops)
        if "auto" in settings:
            if not isinstance(settings["auto"], bool):
                raise ValueError(f"auto must be true or false, got {settings['auto']!r}")
            self.auto = settings["auto"]

    def grey(self, image: np.ndarray) -> np.ndarray:
        """``image`` as 8-bit grey levels (2-D)."""
        values = _as_2d(image)
        if self.auto or self.reference is None:
            level = float(np.percentile(values[::2, ::2], AUTO_PERCENTILE))
            if not math.isfinite(level) or level <= 0:
                level = float(np.max(values)) if values.size and np.max(values) > 0 else 1.0
            self.reference = level if self.reference is None else (
                (1 - AUTO_SMOOTHING) * self.reference + AUTO_SMOOTHING * level)
        scale = 255.0 * 2.0 ** self.stops / self.reference
        return np.clip(values * np.float32(scale), 0, 255).astype(np.uint8)


def _as_2d(image: np.ndarray) -> np.ndarray:
    values = np.asarray(image, dtype=np.float32)
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 2:
        raise ValueError(f"the viewer shows 2-D frames, got shape {values.shape}")
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def encode_jpeg(grey: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


@dataclass
class Viewer:
    """The web application's state: the watcher, the describe poller, the open WebSockets."""

    watcher: StreamWatcher
    poller: DescribePoller
    display_fps: float = DEFAULT_DISPLAY_FPS
    sockets: weakref.WeakSet = field(default_factory=weakref.WeakSet)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.page)
        app.router.add_get("/viewer.js", self.page)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/api/stats", self.api_stats)
        app.router.add_get("/api/describe", self.api_describe)
        app.router.add_get("/frame.jpg", self.frame_jpeg)
        app.on_shutdown.append(self._close_sockets)
        return app

    async def page(self, request: web.Request) -> web.Response:
        name, content_type = PAGE_FILES[request.path]
        text = (Path(__file__).with_name(name)).read_text()
        return web.Response(text=text, content_type=content_type, headers={"Cache-Control": "no-store"})

    async def api_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.watcher.stats(), dumps=_dumps)

    async def api_describe(self, request: web.Request) -> web.Response:
        return web.json_response(self.poller.describe()[1], dumps=_dumps)

    async def frame_jpeg(self, request: web.Request) -> web.Response:
        newest = self.watcher.newest
        if newest is None:
            raise web.HTTPServiceUnavailable(text="no frame received yet")
        exposure = Exposure()
        try:
            settings: dict[str, Any] = {}
            if "stops" in request.query:
                settings["stops"] = float(request.query["stops"])
            if "auto" in request.query:
                settings["auto"] = {"1": True, "0": False}.get(request.query["auto"], request.query["auto"])
            exposure.apply({"auto": True, **settings})
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.Response(body=encode_jpeg(exposure.grey(newest.image)), content_type="image/jpeg",
                            headers={"X-Seq": str(newest.seq), "Cache-Control": "no-store"})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        self.sockets.add(ws)
        exposure = Exposure()
        reader = asyncio.ensure_future(self._read_settings(ws, exposure))
        loop = asyncio.get_running_loop()
        period_s = 1.0 / self.display_fps
        shown = 0
        last: tuple[str, int] | None = None
        described = -1
        next_stats = 0.0
        try:
            while not ws.closed and not reader.done():
                now = loop.time()
                version, describe = self.poller.describe()
                if version != described:
                    described = version
                    await ws.send_str(_dumps({"type": "describe", **describe}))
                if now >= next_stats:
                    next_stats = now + STATS_PERIOD_S
                    await ws.send_str(_dumps({"type": "stats", **self.watcher.stats()}))
                newest = self.watcher.newest
                if newest is not None and (newest.stream_id, newest.seq) != last:
                    last = (newest.stream_id, newest.seq)
                    try:
                        jpeg = encode_jpeg(exposure.grey(newest.image))
                    except ValueError as exc:
                        await ws.send_str(_dumps({"type": "error", "error": str(exc)}))
                    else:
                        shown += 1
                        await ws.send_str(_dumps({"type": "frame", "seq": newest.seq, "key_plane": newest.key_plane,
                                                  "shown": shown, "stops": exposure.stops, "auto": exposure.auto,
                                                  "reference": exposure.reference}))
                        await ws.send_bytes(jpeg)
                await asyncio.sleep(max(0.0, period_s - (loop.time() - now)))
        except ConnectionResetError:  # the browser went away mid-send
            pass
        finally:
            reader.cancel()
        return ws

    async def _read_settings(self, ws: web.WebSocketResponse, exposure: Exposure) -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                exposure.apply(json.loads(msg.data))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                await ws.send_str(_dumps({"type": "error", "error": str(exc)}))

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


def default_control_url(stream_url: str) -> str | None:
    """The daemon's control URL by its defaults' layout (``tcp://H:5555`` -> ``tcp://H:5556``), or None."""
    head, sep, port = stream_url.rpartition(":")
    if not sep or not port.isdigit() or not stream_url.startswith("tcp://") or int(port) >= 65535:
        return None
    return f"{head}:{int(port) + 1}"


async def serve(viewer: Viewer, address: HttpAddress, *, stop: asyncio.Event, ready=None) -> None:
    """Serve ``viewer`` on ``address`` until ``stop`` is set; ``ready(url)`` once listening (``OSError`` if not)."""
    runner = web.AppRunner(viewer.app(), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, address.host, address.port)
        await site.start()
        port = runner.addresses[0][1]
        if ready is not None:
            ready(address.url(port) + "/")
        await stop.wait()
    finally:
        await runner.cleanup()
