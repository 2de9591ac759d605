"""The control server against real REQ and DEALER clients on loopback: replies, rejected requests, counters,
and peers that misbehave (raw garbage, over-size messages, floods, peers that leave).

The server runs in a thread that does what the daemon does between windows (``serve()``); the
handler is a small real one with the daemon's shape: replies per command, a validated ``set``.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import msgpack
import pytest
import zmq

from edge.live.control import MAX_MESSAGE_BYTES, MAX_REQUESTS_PER_SERVE, ControlServer
from edge.live.sockets import HANDSHAKE_TIMEOUT_MS
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
        ([msgpack.packb({"params": {"hop": 2}})], "request has no 'cmd' key (keys: ['params'])"),
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


# -- misbehaving peers: garbage, over-size messages, floods, peers that leave --------------------------------
# Raw TCP payloads: libzmq takes a peer whose first byte is not 0xFF for a ZMTP 1.0 peer and decodes the
# rest as 1.0 frames, so without a ZAP domain such bytes reached the socket as messages: with the old REP
# socket the first one made the next legitimate request go unanswered (its reply went elsewhere). JUNK is
# plain junk (the last one a truncated ZMTP 3 greeting).
ZMTP10_LOOKALIKES = [b"\x01\x00\x01\x00\x01\x00\x00", b"\x02\x01\x00\x01\x00\x00\x00", b"\x01\x00\x02\x01x\x01\x00"]
JUNK = [b"garbage", b"GET / HTTP/1.0\r\n\r\n", b"\xff" * 7]


def raw_connection(url: str, payload: bytes) -> socket.socket:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=2)
    if payload:
        conn.sendall(payload)
    return conn


def test_garbage_peers_never_cost_another_client_its_reply(served):
    server, _, ctx = served
    payloads = ZMTP10_LOOKALIKES + JUNK
    for payload in payloads:
        conn = raw_connection(server.endpoint, payload)  # left open while the legitimate requests run
        try:
            time.sleep(0.05)  # let libzmq take the bytes in first
            for _ in range(20):
                t0 = time.monotonic()
                reply = request(server.endpoint, build_request("health"), timeout_s=1.0, context=ctx)
                assert reply == {"ok": True, "state": "running"}, (payload, reply)
                assert time.monotonic() - t0 < 1.0
        finally:
            conn.close()
    assert server.requests == 20 * len(payloads), "garbage never reaches the handler"


def test_idle_and_garbage_connections_are_closed_by_the_daemon(served):
    server, _, _ = served
    conns = {payload: raw_connection(server.endpoint, payload) for payload in [b"", *ZMTP10_LOOKALIKES, *JUNK]}
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT_MS / 1000 + 2
    try:
        for payload, conn in conns.items():
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                while conn.recv(4096):  # the server's greeting, then end of file when it hangs up
                    pass
            except ConnectionResetError:
                pass
            except socket.timeout:
                pytest.fail(f"a connection that sent {payload!r} was still open after the handshake deadline")
    finally:
        for conn in conns.values():
            conn.close()


def test_dealer_clients_get_their_reply_in_their_own_envelope(served):
    server, _, ctx = served
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(server.endpoint)
    try:
        request_ = msgpack.packb({"cmd": "health"})
        for envelope in ([], [b""], [b"proxy-hop", b""]):
            dealer.send_multipart([*envelope, request_])
            assert dealer.poll(5000), envelope
            *got, body = dealer.recv_multipart()
            assert got == envelope and msgpack.unpackb(body) == {"ok": True, "state": "running"}
        dealer.send_multipart([b"", request_, b"extra"])  # the body after the envelope must be one part
        assert dealer.poll(5000)
        *got, body = dealer.recv_multipart()
        assert got == [b""] and "one msgpack message, got 2 parts" in msgpack.unpackb(body)["error"]
    finally:
        dealer.close(0)


def test_an_oversize_message_disconnects_its_sender_only(served):
    server, _, ctx = served
    huge = ctx.socket(zmq.REQ)
    huge.setsockopt(zmq.LINGER, 0)
    huge.connect(server.endpoint)
    try:
        huge.send(b"\x00" * (50 * 1024 * 1024))  # 50 MB: libzmq drops the connection at the header
        for _ in range(20):
            assert request(server.endpoint, build_request("health"), timeout_s=1.0, context=ctx)["ok"]
        assert not huge.poll(200), "an over-size request gets no reply (docs/wire-format.md)"
    finally:
        huge.close(0)
    assert server.requests == 20, "the over-size message never reached the handler"
    with pytest.raises(ValueError, match=f"larger than the control socket accepts \\({MAX_REQUEST_BYTES} bytes\\)"):
        request(server.endpoint, {"cmd": "set", "params": {"pad": "x" * MAX_REQUEST_BYTES}}, context=ctx)
    assert MAX_REQUEST_BYTES < MAX_MESSAGE_BYTES  # between the two: an error reply (test above)


def test_serve_answers_a_bounded_number_per_call_and_drops_replies_to_peers_that_left():
    ctx = zmq.Context()
    server = ControlServer(URL, Settings().handle, context=ctx)
    flood = ctx.socket(zmq.DEALER)
    flood.setsockopt(zmq.LINGER, 0)
    flood.connect(server.endpoint)
    try:
        n = MAX_REQUESTS_PER_SERVE + 36
        for _ in range(n):
            flood.send_multipart([b"", msgpack.packb({"cmd": "stats"})])
        deadline = time.monotonic() + 5
        handled = []
        while sum(handled) < n and time.monotonic() < deadline:
            if server.sock.poll(100):
                handled.append(server.serve())
        assert sum(handled) == n and max(handled) <= MAX_REQUESTS_PER_SERVE, handled
        replies = 0
        while replies < n and flood.poll(2000):
            flood.recv_multipart()
            replies += 1
        assert replies == n

        monitor = server.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        leaver = ctx.socket(zmq.DEALER)
        leaver.connect(server.endpoint)
        leaver.send_multipart([b"", msgpack.packb({"cmd": "health"})])
        assert server.sock.poll(5000)
        leaver.close(0)
        assert monitor.poll(5000), "the server never saw the peer leave"
        time.sleep(0.5)  # the disconnect reaches the socket's routing table
        assert server.serve() == 1 and server.replies_dropped == 1
        server.sock.disable_monitor()
        monitor.close(0)
    finally:
        flood.close(0)
        server.close()
        ctx.destroy(linger=0)


def test_bin_typed_strings_are_answered_with_what_to_send_instead(served):
    """Strings on the control socket are msgpack str; a client that packs them as bin is told so."""
    server, _, ctx = served
    reply = raw_request(ctx, server.endpoint, [msgpack.packb({"cmd": b"describe"}, use_bin_type=True)])
    assert reply["ok"] is False, reply
    assert "cmd must be a msgpack str" in reply["error"] and "b'describe'" in reply["error"], reply
    reply = raw_request(ctx, server.endpoint, [msgpack.packb({b"cmd": "describe"}, use_bin_type=True)])
    assert reply["ok"] is False and "keys must be msgpack str" in reply["error"] and "b'cmd'" in reply["error"], reply
    assert ask(server, ctx, "health") == {"ok": True, "state": "running"}
