"""Client of the daemon's control socket (REQ/REP, msgpack ``{"cmd": ...}`` -> ``{"ok": bool, ...}``).

Every request has a deadline: a fresh REQ socket (LINGER 0) per request, a poll with the
timeout, then the socket is closed whatever happened, so a dead daemon never hangs the caller
and a late reply can never be mistaken for the answer to the next request (the REQ state
machine would otherwise be stuck after a timeout).
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import zmq

from edge.protocol.control import COMMANDS
from edge.protocol.endpoints import DEFAULT_CONTROL_URL

__all__ = [
    "COMMANDS",
    "DEFAULT_CONTROL_URL",
    "ControlError",
    "ControlTimeout",
    "build_request",
    "parse_assignment",
    "request",
]


class ControlTimeout(TimeoutError):
    """No reply from the control socket within the timeout."""


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
) -> dict[str, Any]:
    """Send one msgpack request to ``url`` and return the decoded reply map.

    Raises ``ControlTimeout`` when nothing comes back within ``timeout_s``, ``ControlError`` for
    a reply that is not a msgpack map.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
        sock.connect(url)
        try:
            sock.send(msgpack.packb(message, use_bin_type=True))
        except zmq.Again as exc:
            raise ControlTimeout(f"could not send to {url} within {timeout_s} s") from exc
        if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise ControlTimeout(f"no reply from {url} within {timeout_s} s (is `spike-edge run` running?)")
        raw = sock.recv(zmq.NOBLOCK)
    finally:
        sock.close(linger=0)
    try:
        reply = msgpack.unpackb(raw, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ControlError(f"reply from {url} is not msgpack: {exc}") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"reply from {url} must be a map, got {type(reply).__name__}")
    return reply
