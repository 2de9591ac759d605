"""The daemon's control socket: REP, msgpack requests ``{"cmd": ...}`` -> msgpack replies.

Commands (documented for people in ``docs/wire-format.md``):

- ``describe``: what runs (stream id, source, geometry, rate, method, backend, window, hop,
  policy, dtype, ring size, endpoints, wire version).
- ``health``: ``state`` (``starting | running | ended | failed | stopping``), capture alive, ages
  of the newest plane/frame.
- ``stats``: live counters (frames, rates, ring overruns, worker skips, source timeouts /
  errors / reconnects, subscribers, latency percentiles).
- ``set``: ``{"cmd": "set", "params": {"hop": 80}}`` (parameters may also sit at the top level of
  the request). Keys: ``method``, ``window``, ``hop``, ``policy``. All values are validated first;
  one bad value rejects the whole request and changes nothing. Accepted settings take effect
  between windows.

Every request gets exactly one reply. Success: ``{"ok": true, ...}``. Failure (not msgpack, not a
map, no/unknown ``cmd``, bad values, extra message parts): ``{"ok": false, "error": "..."}``;
the stream is not disturbed. The server never blocks: ``serve()`` handles what is pending and
returns, so the daemon calls it between windows (and while a lossless send waits).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import msgpack
import zmq

from edge.publisher import bind_socket
from edge.wire import WireError, unpack_map

log = logging.getLogger(__name__)

DEFAULT_CONTROL_URL = "tcp://127.0.0.1:5556"
COMMANDS = ("describe", "health", "stats", "set")
MAX_REQUEST_BYTES = 64 * 1024


class ControlRequestError(ValueError):
    """A request the daemon rejects; the message is sent back as ``error``."""


Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


def parse_request(parts: list[bytes]) -> tuple[str, dict[str, Any]]:
    """Decode and check one request; returns ``(cmd, params)`` or raises ``ControlRequestError``."""
    if len(parts) != 1:
        raise ControlRequestError(f"a request is one msgpack message, got {len(parts)} parts")
    raw = parts[0]
    if len(raw) > MAX_REQUEST_BYTES:
        raise ControlRequestError(f"request of {len(raw)} bytes is larger than {MAX_REQUEST_BYTES}")
    try:
        request = unpack_map(raw, "request")
    except WireError as exc:
        raise ControlRequestError(f"{exc} (a request is a map like {{'cmd': 'describe'}})") from None
    cmd = request.get("cmd")
    if cmd not in COMMANDS:
        raise ControlRequestError(f"unknown command {cmd!r}; expected one of {', '.join(COMMANDS)}")
    params = request.get("params", {})
    if not isinstance(params, dict):
        raise ControlRequestError(f"params must be a map, got {type(params).__name__}")
    params = {**{k: v for k, v in request.items() if k not in ("cmd", "params")}, **params}
    if cmd != "set" and params:
        raise ControlRequestError(f"{cmd} takes no parameters, got {sorted(params)}")
    return cmd, params


class ControlServer:
    def __init__(self, url: str, handler: Handler, *, context: zmq.Context | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.handler = handler
        self.sock = self.context.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES * 4)
        self.endpoint = bind_socket(self.sock, url, "control")
        self.requests = 0
        self.errors = 0

    def serve(self) -> int:
        """Answer every pending request; returns how many were handled. Never blocks."""
        handled = 0
        while True:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return handled
            self.requests += 1
            handled += 1
            try:
                cmd, params = parse_request(parts)
                reply = self.handler(cmd, params)
                reply = {"ok": True, **reply}
            except ControlRequestError as exc:
                reply = {"ok": False, "error": str(exc)}
            except Exception as exc:  # a handler bug must not kill the stream; report it
                log.exception("control request failed")
                reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
            if not reply.get("ok"):
                self.errors += 1
            try:
                self.sock.send(msgpack.packb(reply, use_bin_type=True, default=str), zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # the requester went away; REP drops the reply
                log.debug("control reply not sent: %s", exc)

    def close(self) -> None:
        if not self.sock.closed:
            self.sock.close(linger=0)
