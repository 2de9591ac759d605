"""The control server against real REQ clients on loopback: replies, rejected requests, counters.

The server runs in a thread that does what the daemon does between windows (``serve()``); the
handler is a small real one with the daemon's shape: replies per command, a validated ``set``.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import pytest
import zmq

from edge.live.control import ControlServer
from edge.protocol.client import build_request, request
from edge.protocol.control import MAX_REQUEST_BYTES, ControlRequestError

URL = "tcp://127.0.0.1:*"


class Settings:
    """The handler: hop and policy that ``set`` changes, all values checked before any is applied."""

    def __init__(self) -> None:
        self.hop = 40
        self.policy = "all"

    def handle(self, cmd: str, params: dict[str, Any]) -> dict[str, Any]:
        if cmd == "describe":
            return {"hop": self.hop, "policy": self.policy}
        if cmd == "health":
            return {"state": "running"}
        if cmd == "stats":
            return {"frames": 12}
        if "crash" in params:
            raise RuntimeError("handler bug")
        unknown = sorted(set(params) - {"hop", "policy"})
        if unknown:
            raise ControlRequestError(f"unknown setting(s) {unknown}")
        hop = params.get("hop", self.hop)
        if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
            raise ControlRequestError(f"hop must be a positive integer, got {hop!r}")
        self.hop, self.policy = hop, params.get("policy", self.policy)
        return {"applied": {"hop": self.hop, "policy": self.policy}}


@pytest.fixture
def served():
    """``(server, settings, context)`` with a thread serving the control socket until the test ends."""
    ctx = zmq.Context()
    settings = Settings()
    server = ControlServer(URL, settings.handle, context=ctx)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if server.sock.poll(10):
                server.serve()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server, settings, ctx
    finally:
        stop.set()
        thread.join(5)
        server.close()
        ctx.destroy(linger=0)


def raw_request(ctx: zmq.Context, url: str, parts: list[bytes]) -> dict[str, Any]:
    """Send ``parts`` as they are (not necessarily a well-formed request); the decoded reply."""
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(url)
    try:
        sock.send_multipart(parts)
        assert sock.poll(5000), f"no reply to {parts[0][:40]!r}..."
        return msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close(linger=0)


def ask(server: ControlServer, ctx: zmq.Context, cmd: str, params: dict | None = None) -> dict[str, Any]:
    return request(server.endpoint, build_request(cmd, params), timeout_s=5.0, context=ctx)


def test_commands_get_the_handler_replies(served):
    server, settings, ctx = served
    assert ask(server, ctx, "describe") == {"ok": True, "hop": 40, "policy": "all"}
    assert ask(server, ctx, "health") == {"ok": True, "state": "running"}
    assert ask(server, ctx, "stats") == {"ok": True, "frames": 12}
    assert ask(server, ctx, "set", {"hop": 80}) == {"ok": True, "applied": {"hop": 80, "policy": "all"}}
    assert settings.hop == 80
    # parameters may also sit at the top level of the request
    top_level = raw_request(ctx, server.endpoint, [msgpack.packb({"cmd": "set", "policy": "latest"})])
    assert top_level == {"ok": True, "applied": {"hop": 80, "policy": "latest"}}
    assert (server.requests, server.errors) == (5, 0)


def test_bad_requests_get_errors_and_the_server_keeps_answering(served):
    server, settings, ctx = served
    url = server.endpoint
    bad = [
        ([b"\xc1\x00garbage"], "not valid msgpack"),
        ([msgpack.packb([1, 2])], "must be a map, got list"),
        ([msgpack.packb({"cmd": "describe"}), b"extra"], "one msgpack message, got 2 parts"),
        ([msgpack.packb({"cmd": "set", "params": {"pad": "x" * MAX_REQUEST_BYTES}})],
         f"larger than {MAX_REQUEST_BYTES}"),
        ([msgpack.packb({"params": {"hop": 2}})], "unknown command None"),
        ([msgpack.packb({"cmd": "reboot"})], "unknown command 'reboot'"),
        ([msgpack.packb({"cmd": "set", "params": [1]})], "params must be a map, got list"),
        ([msgpack.packb({"cmd": "stats", "verbose": True})], "stats takes no parameters"),
        ([msgpack.packb({"cmd": "set", "params": {"hop": 0}})], "hop must be a positive integer, got 0"),
        ([msgpack.packb({"cmd": "set", "params": {"hop": 20, "speed": 2}})], "unknown setting(s) ['speed']"),
        ([msgpack.packb({"cmd": "set", "params": {"crash": 1}})], "internal error: RuntimeError: handler bug"),
    ]
    for i, (parts, message) in enumerate(bad):
        reply = raw_request(ctx, url, parts)
        assert reply["ok"] is False and message in reply["error"], (parts[0][:40], reply)
        assert ask(server, ctx, "health") == {"ok": True, "state": "running"}  # the next good one is answered
        assert (server.requests, server.errors) == (2 * (i + 1), i + 1)
    assert settings.hop == 40  # a rejected set changed nothing


def test_bin_typed_strings_are_answered_with_what_to_send_instead(served):
    """Strings on the control socket are msgpack str; a client that packs them as bin is told so."""
    server, _, ctx = served
    reply = raw_request(ctx, server.endpoint, [msgpack.packb({"cmd": b"describe"}, use_bin_type=True)])
    assert reply["ok"] is False, reply
    assert "cmd must be a msgpack str" in reply["error"] and "b'describe'" in reply["error"], reply
    reply = raw_request(ctx, server.endpoint, [msgpack.packb({b"cmd": "describe"}, use_bin_type=True)])
    assert reply["ok"] is False and "keys must be msgpack str" in reply["error"] and "b'cmd'" in reply["error"], reply
    assert ask(server, ctx, "health") == {"ok": True, "state": "running"}
