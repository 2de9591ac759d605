"""Client of the daemon's control socket (REQ, msgpack ``{"cmd": ...}`` -> ``{"ok": bool, ...}``).

Every request has a deadline: a fresh REQ socket (LINGER 0) per request, a poll with the
timeout, then the socket is closed whatever happened, so a dead daemon never hangs the caller
and a late reply can never be mistaken for the answer to the next request (the REQ state
machine would otherwise be stuck after a timeout).

A daemon with CURVE (``edge.protocol.security``) needs ``curve=CurveClient.load(...)``; a
handshake the daemon refuses (unlisted key, CURVE on one side only) raises ``ControlRefused`` at
once, with the reason, instead of waiting out the timeout. A request larger than the daemon
accepts (``MAX_REQUEST_BYTES``) is refused here with a ``ValueError``: the daemon would answer
with an error, or, past its socket limit, drop the connection without a reply.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgpack
import zmq

from edge.protocol.control import COMMANDS, MAX_REQUEST_BYTES
from edge.protocol.endpoints import DEFAULT_CONTROL_URL
from edge.protocol.security import CurveClient, HandshakeWatch

__all__ = [
    "COMMANDS",
    "DEFAULT_CONTROL_URL",
    "ControlError",
    "ControlRefused",
    "ControlTimeout",
    "build_request",
    "parse_assignment",
    "request",
]


class ControlTimeout(TimeoutError):
    """No reply from the control socket within the timeout."""


class ControlRefused(ControlTimeout):
    """The daemon refused the connection (CURVE: unlisted key, or security on one side only); no reply will come."""


class ControlError(ValueError):
    """A reply that is not a msgpack map."""


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, true/false, null, lists), else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def build_request(cmd: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request map: ``{"cmd": cmd}``, plus ``"params": {...}`` for ``set``."""
    if cmd not in COMMANDS:
        raise ValueError(f"unknown control command {cmd!r}; expected one of {COMMANDS}")
    request: dict[str, Any] = {"cmd": cmd}
    if cmd == "set":
        if not params:
            raise ValueError("set needs at least one KEY=VALUE")
        request["params"] = dict(params)
    elif params:
        raise ValueError(f"{cmd} takes no KEY=VALUE arguments, got {sorted(params)}")
    return request


def request(
    url: str,
    message: dict[str, Any],
    *,
    timeout_s: float = 3.0,
    context: zmq.Context | None = None,
    curve: CurveClient | None = None,
) -> dict[str, Any]:
    """Send one msgpack request to ``url`` and return the decoded reply map.

    Raises ``ControlTimeout`` when nothing comes back within ``timeout_s`` (``ControlRefused``, a
    subclass, as soon as the daemon refuses the handshake), ``ControlError`` for a reply that is
    not a msgpack map, ``ValueError`` for a request larger than ``MAX_REQUEST_BYTES``.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    payload = msgpack.packb(message, use_bin_type=True)
    if len(payload) > MAX_REQUEST_BYTES:
        raise ValueError(f"request of {len(payload)} bytes is larger than the control socket accepts "
                         f"({MAX_REQUEST_BYTES} bytes)")
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    watch = None
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
        if curve is not None:
            curve.apply(sock)
        watch = HandshakeWatch(sock, curve=curve is not None)
        sock.connect(url)
        deadline = time.monotonic() + timeout_s
        try:
            sock.send(payload)
        except zmq.Again as exc:
            raise ControlTimeout(f"could not send to {url} within {timeout_s} s{_why(watch)}") from exc
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(watch.poll_socket, zmq.POLLIN)
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            ready = dict(poller.poll(max(0, left_ms))) if left_ms > 0 else {}
            if sock in ready:
                break
            failure = watch.failure()
            if failure is not None and watch.refused:
                raise ControlRefused(f"no reply from {url}: {failure}")
            if not ready:
                hint = failure or "is `spike-edge run` running?"
                raise ControlTimeout(f"no reply from {url} within {timeout_s} s ({hint})")
        raw = sock.recv(zmq.NOBLOCK)
    finally:
        if watch is not None:
            watch.close()
        sock.close(linger=0)
    try:
        reply = msgpack.unpackb(raw, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ControlError(f"reply from {url} is not msgpack: {exc}") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"reply from {url} must be a map, got {type(reply).__name__}")
    return reply


def _why(watch: HandshakeWatch) -> str:
    failure = watch.failure()
    return f": {failure}" if failure else ""
