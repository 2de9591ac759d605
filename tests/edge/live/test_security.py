"""CURVE and exposure rules in one process, real sockets on loopback: ``edge.live.security`` (server side),
``edge.protocol.security`` (client side), the configuration's refusal of exposed addresses, and the
control server and publisher with CURVE against listed, unlisted and plain clients."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from edge.live.config import DaemonConfig, parse_curve_clients, parse_curve_secret
from edge.live.control import ControlServer
from edge.live.publisher import Publisher
from edge.live.security import ClientAllowList, CurveServer, ServerKey, is_local_endpoint, redact_source
from edge.live.sources.simulate import SimulateConfig
from edge.protocol.client import ControlRefused, ControlTimeout, build_request, request
from edge.protocol.security import CurveClient, KeyFileError
from edge.protocol.wire import FrameHeader, encode_frame
from host.subscriber import Subscriber

URL = "tcp://127.0.0.1:*"


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    """A server pair, a listed client (``alice``: public key in ``clients/``) and an unlisted one (``mallory``)."""
    (tmp_path / "clients").mkdir()
    (tmp_path / "other").mkdir()
    zmq.auth.create_certificates(tmp_path, "server")
    zmq.auth.create_certificates(tmp_path / "clients", "alice")
    zmq.auth.create_certificates(tmp_path / "other", "mallory")
    return {"server": tmp_path / "server.key", "server_secret": tmp_path / "server.key_secret",
            "clients": tmp_path / "clients", "alice": tmp_path / "clients" / "alice.key_secret",
            "mallory": tmp_path / "other" / "mallory.key_secret"}


@pytest.mark.parametrize("url, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.2.1:*", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("tcp://lo:5555", True), ("ipc:///tmp/spike.sock", True), ("inproc://x", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://192.168.1.20:5555", False),
    ("tcp://[::]:5555", False), ("tcp://eth0:5555", False), ("tcp://camera-host:5555", False),
    ("ws://10.0.0.1:80/x", False), ("127.0.0.1:5555", False),
])
def test_is_local_endpoint(url, local):
    assert is_local_endpoint(url) is local


def test_non_loopback_needs_curve_or_insecure(keys):
    source = SimulateConfig()
    with pytest.raises(ValueError, match=r"refusing to serve --bind tcp://0.0.0.0:5555 .*--insecure"):
        DaemonConfig(source=source, bind="tcp://0.0.0.0:5555")
    with pytest.raises(ValueError, match=r"--control tcp://\*:5556"):
        DaemonConfig(source=source, control="tcp://*:5556")
    assert DaemonConfig(source=source, bind="tcp://0.0.0.0:5555", insecure=True).insecure
    secret, clients = parse_curve_secret(str(keys["server_secret"])), parse_curve_clients(str(keys["clients"]))
    secured = DaemonConfig(source=source, bind="tcp://0.0.0.0:5555", curve_secret=secret, curve_clients=clients)
    assert secured.curve
    with pytest.raises(ValueError, match="needs both --curve-secret FILE and --curve-clients DIR"):
        DaemonConfig(source=source, curve_secret=secret)
    with pytest.raises(ValueError, match="--insecure contradicts"):
        DaemonConfig(source=source, curve_secret=secret, curve_clients=clients, insecure=True)
    assert "secret_key" not in repr(secured), "the secret key must not show in logs or tracebacks"


def test_key_files_are_checked_where_they_enter(keys, tmp_path):
    with pytest.raises(KeyFileError, match="holds no secret key"):
        parse_curve_secret(str(keys["server"]))  # the public file where the secret one belongs
    with pytest.raises(KeyFileError, match="is not a file"):
        parse_curve_secret(str(tmp_path / "missing.key_secret"))
    (tmp_path / "junk.key_secret").write_text("hello\n")
    with pytest.raises(KeyFileError, match="not a ZeroMQ certificate"):
        parse_curve_secret(str(tmp_path / "junk.key_secret"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(KeyFileError, match="holds no \\*.key certificate"):
        parse_curve_clients(str(tmp_path / "empty"))
    with pytest.raises(KeyFileError, match="is not a folder"):
        parse_curve_clients(str(keys["server"]))
    with pytest.raises(ValueError, match="got only --curve-key"):
        CurveClient.from_files(keys["alice"], None)
    assert CurveClient.from_files(None, None) is None
    client = CurveClient.load(keys["alice"], keys["server"])
    assert client.server_key == zmq.auth.load_certificate(keys["server"])[0]
    assert client.public_key in parse_curve_clients(str(keys["clients"])).keys


def test_redact_source_keeps_names_only():
    source = {"kind": "replay", "path": "/srv/data/run-07/clip.dat", "camera_library": "/opt/sdk/lib/", "rate_hz": 4.0}
    assert redact_source(source) == {"kind": "replay", "path": "clip.dat", "camera_library": "lib", "rate_hz": 4.0}


class Served:
    """A CURVE control server and publisher served from a thread, as the daemon's loop does."""

    def __init__(self, keys: dict[str, Path]) -> None:
        self.ctx = zmq.Context()
        self.curve = CurveServer(ServerKey.load(keys["server_secret"]), ClientAllowList.load(keys["clients"]),
                                 self.ctx).start()
        self.control = ControlServer(URL, lambda cmd, params: {"cmd": cmd}, context=self.ctx, curve=self.curve)
        self.publisher = Publisher(URL, lossless=False, context=self.ctx, curve=self.curve)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        seq = 0
        header = dict(stream_id="t", key_plane=0, plane_start=0, plane_stop=1, shape=(2, 3), dtype="float32",
                      method="tfp", backend="numpy", weights_id="none", capture_t_ns=1, dequeue_t_ns=2,
                      infer_start_t_ns=3, infer_end_t_ns=4, publish_t_ns=5, rate_hz=1.0)
        while not self.stop.is_set():
            self.control.serve()
            self.publisher.poll_subscriptions()
            self.curve.refresh()
            self.publisher.send(encode_frame(FrameHeader(seq=seq, **header), np.zeros((2, 3), np.float32)))
            seq += 1
            time.sleep(0.005)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.control.close()
        self.publisher.close()
        self.curve.stop()
        self.ctx.destroy(linger=0)


@pytest.fixture
def served(keys):
    s = Served(keys)
    yield s
    s.close()


def test_curve_sockets_serve_listed_clients_only(served, keys):
    alice = CurveClient.load(keys["alice"], keys["server"])
    mallory = CurveClient.load(keys["mallory"], keys["server"])
    url = served.control.endpoint
    assert request(url, build_request("health"), timeout_s=5, curve=alice) == {"ok": True, "cmd": "health"}
    t0 = time.monotonic()
    with pytest.raises(ControlRefused, match="refused this client's CURVE key"):
        request(url, build_request("health"), timeout_s=5, curve=mallory)
    with pytest.raises(ControlRefused, match="the daemon requires CURVE"):
        request(url, build_request("health"), timeout_s=5)
    assert time.monotonic() - t0 < 2, "a refused handshake is reported at once, not after the timeout"
    wrong_server = CurveClient(alice.public_key, alice.secret_key, mallory.public_key)
    with pytest.raises(ControlTimeout, match="wrong --curve-server key"):
        request(url, build_request("health"), timeout_s=1, curve=wrong_server)
    assert served.control.requests == 1, "refused clients' requests never reach the server"
    assert served.curve.denied >= 1

    with Subscriber(served.publisher.endpoint, curve=alice, timeout_s=5) as good, \
            Subscriber(served.publisher.endpoint, curve=mallory, timeout_s=0.5) as bad, \
            Subscriber(served.publisher.endpoint, timeout_s=0.5) as plain:
        assert good.recv().kind == "frame"
        time.sleep(0.5)
        assert bad.next() is None and plain.next() is None
        assert bad.stats.frames == plain.stats.frames == 0
        assert "refused this client's CURVE key" in bad.handshake_error
        assert "requires CURVE" in plain.handshake_error
        assert good.handshake_error is None
        deadline = time.monotonic() + 5  # the listed subscriber overlaps two sockets while it moves to the size
        while served.publisher.frame_subscribers != 1 and time.monotonic() < deadline:  # limit of the stream's
            good.next(0.05)  # geometry (host.subscriber): it finishes that move as it reads
        assert served.publisher.frame_subscribers == 1, "only the listed subscriber counts"


def test_a_curve_client_of_a_plain_server_is_told_so(keys):
    ctx = zmq.Context()
    server = ControlServer(URL, lambda cmd, params: {}, context=ctx)
    try:
        with pytest.raises(ControlRefused, match="does not use CURVE"):
            request(server.endpoint, build_request("health"), timeout_s=5, context=ctx,
                    curve=CurveClient.load(keys["alice"], keys["server"]))
    finally:
        server.close()
        ctx.destroy(linger=0)


def test_the_allow_list_is_reread_when_the_folder_changes(served, keys):
    mallory = CurveClient.load(keys["mallory"], keys["server"])
    alice = CurveClient.load(keys["alice"], keys["server"])
    url = served.control.endpoint
    with pytest.raises(ControlRefused):
        request(url, build_request("health"), timeout_s=5, curve=mallory)
    shutil.copy(keys["mallory"].with_suffix(".key"), keys["clients"] / "mallory.key")
    deadline = time.monotonic() + 5
    while True:  # re-read at most once a second
        try:
            assert request(url, build_request("health"), timeout_s=5, curve=mallory)["ok"]
            break
        except ControlRefused:
            assert time.monotonic() < deadline, "a key added to the folder was never accepted"
            time.sleep(0.2)
    os.unlink(keys["clients"] / "alice.key")
    deadline = time.monotonic() + 5
    while True:
        try:
            request(url, build_request("health"), timeout_s=5, curve=alice)
        except ControlRefused:
            break
        assert time.monotonic() < deadline, "a key removed from the folder was still accepted"
        time.sleep(0.2)
    for name in ("mallory.key",):  # an emptied folder keeps the last good list (and logs an error)
        os.unlink(keys["clients"] / name)
    time.sleep(1.5)
    assert request(url, build_request("health"), timeout_s=5, curve=mallory)["ok"]
