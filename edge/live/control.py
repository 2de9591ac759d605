"""The daemon's control socket (the server side of ``edge.protocol.control``): msgpack requests ``{"cmd": ...}`` -> msgpack replies.

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
the stream is not disturbed. The server never blocks: ``serve()`` handles what is pending (at most
``MAX_REQUESTS_PER_SERVE`` per call, so a flood of requests cannot starve the frame loop) and
returns, so the daemon calls it between windows (and while a lossless send waits).

Robustness against misbehaving peers: the socket is a ROUTER with explicit envelopes, not a REP.
Each request arrives as ``[peer identity, *envelope, body]`` and its reply goes back to exactly
that identity with that envelope, so a peer that sends garbage can only ever receive its own
error reply, never take another client's (a REP socket's single reply slot let a malformed
peer desynchronise it: replies went to the wrong peer or nowhere). The envelope is what REP
would keep: everything up to and including the first empty frame (a REQ client sends
``[b"", body]``); a DEALER that sends just ``[body]`` gets just ``[reply]``. The wire protocol is
unchanged for REQ and DEALER clients. ROUTER fair-queues its peers, so one peer's flood delays
another by at most its share of a ``serve()`` pass. Replies are sent without blocking
(``ROUTER_MANDATORY``): a reply to a peer that left or stopped reading is dropped and counted
(``replies_dropped``), never waited for. Socket limits (``edge.live.sockets``): a peer must
finish its handshake within ``HANDSHAKE_TIMEOUT_MS``; a message part larger than
``MAX_MESSAGE_BYTES`` makes libzmq disconnect the peer before reading it (that request gets no
reply); one between ``MAX_REQUEST_BYTES`` and that gets an error reply. In the daemon the control
socket has an I/O thread of its own, apart from the frame stream's.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import msgpack
import zmq

from edge.live.security import CurveServer
from edge.live.sockets import CONTROL_IO_THREADS, bind_socket
from edge.protocol.control import MAX_REQUEST_BYTES, ControlRequestError, parse_request

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]

MAX_MESSAGE_BYTES = MAX_REQUEST_BYTES * 4  # larger: the peer is disconnected by libzmq, unread
MAX_REQUESTS_PER_SERVE = 64  # per serve() call; the daemon calls it every 2 ms
QUEUE_MESSAGES = 64  # per-peer queue (RCVHWM/SNDHWM): a peer that floods waits for its own turn


def split_envelope(parts: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """``[identity, *labels, b"", *body]`` -> ``([identity, *labels, b""], body)``; without an empty frame
    (a DEALER sending the bare request) -> ``([identity], rest)``."""
    for i in range(1, len(parts)):
        if not parts[i]:
            return parts[: i + 1], parts[i + 1:]
    return parts[:1], parts[1:]


class ControlServer:
    def __init__(self, url: str, handler: Handler, *, context: zmq.Context | None = None,
                 curve: CurveServer | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.handler = handler
        self.sock = self.context.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable or full: an error we count, not a silent drop
        self.sock.setsockopt(zmq.RCVHWM, QUEUE_MESSAGES)
        self.sock.setsockopt(zmq.SNDHWM, QUEUE_MESSAGES)
        self.endpoint = bind_socket(self.sock, url, "control", max_message_bytes=MAX_MESSAGE_BYTES,
                                    io_threads=CONTROL_IO_THREADS, curve=curve)
        self.requests = 0
        self.errors = 0
        self.replies_dropped = 0

    def serve(self, max_requests: int = MAX_REQUESTS_PER_SERVE) -> int:
        """Answer pending requests, at most ``max_requests``; returns how many were handled. Never blocks."""
        handled = 0
        while handled < max_requests:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            handled += 1
            self.requests += 1
            route, body = split_envelope(parts)
            reply = self._answer(body)
            if not reply.get("ok"):
                self.errors += 1
            try:
                self.sock.send_multipart([*route, msgpack.packb(reply, use_bin_type=True, default=str)], zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # the peer left (EHOSTUNREACH) or does not read its replies (EAGAIN)
                self.replies_dropped += 1
                log.debug("control reply not sent: %s", exc)
        return handled

    def _answer(self, body: list[bytes]) -> dict[str, Any]:
        try:
            cmd, params = parse_request(body)
            return {"ok": True, **self.handler(cmd, params)}
        except ControlRequestError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a handler bug must not kill the stream; report it
            log.exception("control request failed")
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}

    def close(self) -> None:
        if not self.sock.closed:
            self.sock.close(linger=0)
