"""The daemon's control socket (the server side of ``edge.protocol.control``): REP, msgpack requests ``{"cmd": ...}`` -> msgpack replies.

Commands (documented for people in ``docs/wire-format.md``):

- ``describe``: what runs (stream id, source, geometry, rate, method, backend, window, hop,
  policy, dtype, ring size, endpoints, wire version).
- ``health``: ``state`` (``starting | running | degraded | ended | failed | stopping``), capture
  alive / stalled, ages of the newest plane/frame, recent events.
- ``stats``: live counters (frames, rates, ring overruns, worker skips, source timeouts /
  errors / reconnects, subscribers, latency percentiles).
- ``set``: ``{"cmd": "set", "params": {"hop": 80}}`` (parameters may also sit at the top level of
  the request). Keys: ``method``, ``window``, ``hop``, ``policy``. All values are validated first;
  one bad value rejects the whole request and changes nothing. Accepted settings take effect
  between windows (``method``/``window`` once their reconstructor is built: reply ``pending``).

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

from edge.live.sockets import bind_socket
from edge.protocol.control import MAX_REQUEST_BYTES, ControlRequestError, parse_request

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


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
