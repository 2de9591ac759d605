"""The control protocol: the commands, the request codec and its limits (both sides use this module).

A request is one msgpack map ``{"cmd": NAME, "params": {...}}`` whose keys and ``cmd`` are msgpack str
(bin-typed ones are answered with an error saying so); every request gets exactly one reply,
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. ``docs/wire-format.md`` describes it for
people writing clients in other languages. The server side (the socket) is ``edge.live.control``; the
client is ``edge.protocol.client``.
"""

from __future__ import annotations

from typing import Any

from edge.protocol.wire import WireError, unpack_map

COMMANDS = ("describe", "health", "stats", "set")
MAX_REQUEST_BYTES = 64 * 1024


class ControlRequestError(ValueError):
    """A request the daemon rejects; the message is sent back as ``error``."""


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
    if "cmd" not in request:
        raise ControlRequestError(f"request has no 'cmd' key (keys: {sorted(map(str, request))}); a request is a map "
                                  f"like {{'cmd': 'describe'}} with cmd one of {', '.join(COMMANDS)}")
    cmd = request["cmd"]
    if isinstance(cmd, bytes):
        raise ControlRequestError(f"cmd must be a msgpack str, got bin {cmd!r}; pack text as str, not bytes")
    if cmd not in COMMANDS:
        raise ControlRequestError(f"unknown command {cmd!r}; expected one of {', '.join(COMMANDS)}")
    params = request.get("params", {})
    if not isinstance(params, dict):
        raise ControlRequestError(f"params must be a map, got {type(params).__name__}")
    params = {**{k: v for k, v in request.items() if k not in ("cmd", "params")}, **params}
    if cmd != "set" and params:
        raise ControlRequestError(f"{cmd} takes no parameters, got {sorted(params)}")
    return cmd, params
