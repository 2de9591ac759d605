"""End to end, real daemons on loopback: CURVE on both sockets, the refusal of exposed addresses, ``--insecure``,
what ``describe`` tells whom, and a control socket that answers every legitimate request within a second
while raw garbage, idle connections and an over-size message hit it, without disturbing the frame stream.

Nothing here sends traffic outside loopback: 0.0.0.0 is only given to check that it is refused, and
once (``--insecure``) to check that it runs; every connection goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from edge.cli.processes import EDGE, HOST, free_port, loopback_urls
from edge.protocol.client import ControlRefused, ControlTimeout, build_request
from edge.protocol.client import request as control_request
from edge.protocol.security import CURVE_KEY_ENV, CURVE_SERVER_ENV, CurveClient
from edge.protocol.wire import FrameHeader, decode
from edge.reconstruction.methods import Method, method_spec
from edge.reconstruction.windows import keys_every
from firmware_io.dat import write_dat
from host.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[3]
H, W = 32, 48


def write_clip(path: Path, n_planes: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write_dat(path, (rng.random((n_planes, H, W)) < 0.2).astype(np.uint8))


def generate_keys(folder: Path, *clients: str) -> Path:
    """``spike-edge keys generate`` as a user runs it."""
    args = [a for name in clients for a in ("--client", name)]
    r = subprocess.run([*EDGE, "keys", "generate", str(folder), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return folder


def ask(url: str, cmd: str, *, curve: CurveClient | None = None, within_s: float = 30.0) -> dict:
    """A control request retried until the daemon is up (a refusal is not retried)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            reply = control_request(url, build_request(cmd), timeout_s=1.0, curve=curve)
            assert reply["ok"], reply
            return reply
        except ControlTimeout as exc:
            if isinstance(exc, ControlRefused) or time.monotonic() > deadline:
                raise


def test_curve_daemon_streams_every_frame_to_listed_clients_only(start_daemon, tmp_path):
    keys = generate_keys(tmp_path / "keys", "alice")
    other = generate_keys(tmp_path / "other", "mallory")
    alice = CurveClient.load(keys / "alice.key_secret", keys / "server.key")
    mallory = CurveClient.load(other / "mallory.key_secret", keys / "server.key")
    clip = write_clip(tmp_path / "clip.dat", 900)
    expected = len(keys_every(900, method_spec(Method.TFP).window_planes, 40))
    d = start_daemon(["--replay", str(clip), "--height", str(H), "--width", str(W), "--hop", "40",
                      "--wait-subscribers", "1", "--curve-secret", str(keys / "server.key_secret"),
                      "--curve-clients", str(keys / "clients")])
    described = ask(d.ctl, "describe", curve=alice)
    assert described["authenticated"] is True and described["source"]["path"] == str(clip)
    assert described["host"] == socket.gethostname() and described["pid"] == d.proc.pid

    # unlisted and plain clients: no control replies, no frames, never counted as subscribers
    with pytest.raises(ControlRefused, match="refused this client's CURVE key"):
        control_request(d.ctl, build_request("describe"), timeout_s=3.0, curve=mallory)
    with pytest.raises(ControlRefused, match="requires CURVE"):
        control_request(d.ctl, build_request("describe"), timeout_s=3.0)
    outsiders = [Subscriber(d.pub, curve=mallory, reconnect=False), Subscriber(d.pub, reconnect=False)]
    r = subprocess.run([*HOST, "ctl", d.ctl, "health"], capture_output=True, text=True, timeout=60)
    # the specific reason needs libzmq's handshake event with its detail; on a loaded machine the
    # 3 s reply deadline can pass first, and the generic handshake message is what the user gets
    assert r.returncode == 6 and ("requires CURVE" in r.stderr or "handshake failed" in r.stderr), r.stderr
    time.sleep(0.5)
    r = subprocess.run([*HOST, "ctl", d.ctl, "stats", "--curve-key", str(keys / "alice.key_secret"),
                        "--curve-server", str(keys / "server.key")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)["stats"]
    assert stats["subscribers"] == 0 and stats["frames"] == 0, "outsiders must not start the replay"
    assert stats["curve_denied"] >= 2  # mallory twice; plain clients fail before the key check

    # the listed client, keys from the environment, gets every frame of the deterministic replay
    env = {**os.environ, CURVE_KEY_ENV: str(keys / "alice.key_secret"), CURVE_SERVER_ENV: str(keys / "server.key")}
    out = tmp_path / "rec.npz"
    r = subprocess.run([*HOST, "record", d.pub, "--out", str(out), "--timeout-s", "30"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr + d.text()
    summary = json.loads(r.stdout)
    assert summary["eos"] and summary["frames"] == summary["eos_frames"] == expected
    with np.load(out) as z:
        assert list(z["seq"]) == list(range(expected))
    assert d.wait(20) == 0
    for sub in outsiders:
        assert sub.next(0.2) is None and sub.stats.frames == sub.stats.heartbeats == sub.stats.eos == 0
    assert "refused this client's CURVE key" in outsiders[0].handshake_error
    assert "requires CURVE" in outsiders[1].handshake_error
    for sub in outsiders:
        sub.close()


@pytest.mark.parametrize("exposed", ["--bind", "--control"])
def test_a_non_loopback_address_without_keys_is_refused(exposed):
    pub, ctl = loopback_urls()
    urls = {"--bind": pub, "--control": ctl, exposed: f"tcp://0.0.0.0:{free_port()}"}
    r = subprocess.run([*EDGE, "run", "--simulate", "--height", str(H), "--width", str(W),
                        *(a for pair in urls.items() for a in pair)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"refusing to serve {exposed} {urls[exposed]} without authentication" in r.stderr
    assert "--curve-secret FILE and --curve-clients DIR" in r.stderr and "--insecure" in r.stderr


def test_insecure_serves_an_exposed_address_with_a_warning(tmp_path):
    port = free_port()
    _, ctl = loopback_urls()
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*EDGE, "run", "--simulate", "--height", str(H), "--width", str(W), "--rate-hz", "4000",
                                 "--bind", f"tcp://0.0.0.0:{port}", "--control", ctl, "--insecure"],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        described = ask(ctl, "describe")
        assert described["authenticated"] is False and "host" not in described and "pid" not in described
        with Subscriber(f"tcp://127.0.0.1:{port}", topics=("frame",), timeout_s=20) as sub:
            assert sub.recv().kind == "frame"
        text = log_path.read_text()
        assert f"publisher socket on tcp://0.0.0.0:{port} is not loopback and has no authentication" in text, text
        assert "WARNING" in text
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, log_path.read_text()


# -- the control socket under a flood --------------------------------------------------------------------
GARBAGE = [b"\x01\x00\x01\x00\x01\x00\x00", b"\x02\x01\x00\x01\x00\x00\x00", b"garbage", b"\xff" * 7,
           b"GET / HTTP/1.0\r\n\r\n"]


def burst(url: str, n: int = 20, within_s: float = 1.0) -> list[float]:
    """``n`` REQ clients send ``health`` at once; each one's reply time (None: none within ``within_s``)."""
    ctx = zmq.Context.instance()
    socks = [ctx.socket(zmq.REQ) for _ in range(n)]
    latencies: dict[zmq.Socket, float] = {}
    poller = zmq.Poller()
    try:
        sent = {}
        for s in socks:
            s.setsockopt(zmq.LINGER, 0)
            s.connect(url)
            s.send(msgpack.packb({"cmd": "health"}))
            sent[s] = time.monotonic()
            poller.register(s, zmq.POLLIN)
        deadline = time.monotonic() + within_s
        while len(latencies) < n and time.monotonic() < deadline:
            for s, _ in poller.poll(20):
                reply = msgpack.unpackb(s.recv(), raw=False)
                assert reply["ok"] and reply["state"] == "running", reply
                latencies[s] = time.monotonic() - sent[s]
                poller.unregister(s)
    finally:
        for s in socks:
            s.close(0)
    return [latencies.get(s) for s in socks]


class Flood:
    """Raw TCP peers on the control port for the life of the block: ``idle`` connections that never send,
    a new garbage connection every ``period_s``, and one 50 MB ZeroMQ request."""

    def __init__(self, url: str, idle: int = 100, period_s: float = 0.02) -> None:
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        self.address = (host, int(port))
        self.idle = [socket.create_connection(self.address, timeout=2) for _ in range(idle)]
        self.period_s = period_s
        self.garbage = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.huge = zmq.Context.instance().socket(zmq.REQ)
        self.huge.setsockopt(zmq.LINGER, 0)
        self.huge.connect(url)
        self.huge.send(b"\x00" * (50 * 1024 * 1024))
        self.thread.start()

    def _run(self) -> None:
        rng = np.random.default_rng(7)
        while not self.stop.is_set():
            payload = GARBAGE[self.garbage % len(GARBAGE)] if self.garbage % 3 else rng.bytes(int(rng.integers(1, 512)))
            try:
                with socket.create_connection(self.address, timeout=1) as conn:
                    conn.sendall(payload)
            except OSError:  # the daemon dropped it first: fine
                pass
            self.garbage += 1
            self.stop.wait(self.period_s)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.idle:
            conn.close()
        self.huge.close(0)


def test_every_request_of_a_burst_is_answered_within_a_second_under_a_flood(start_daemon, tmp_path):
    clip = write_clip(tmp_path / "clip.dat", 2000)
    d = start_daemon(["--replay", str(clip), "--realtime", "--loop", "--rate-hz", "8000", "--policy", "all",
                      "--hop", "40", "--ring-planes", "16000", "--height", str(H), "--width", str(W)])
    described = ask(d.ctl, "describe")
    # an unauthenticated (loopback, no CURVE) client: no folders, no host name, no PID
    assert described["authenticated"] is False and described["source"]["path"] == "clip.dat"
    assert "host" not in described and "pid" not in described
    assert socket.gethostname() not in described["stream_id"] and str(d.proc.pid) not in described["stream_id"]

    frames: list[tuple[float, FrameHeader]] = []
    stop = threading.Event()

    def read() -> None:
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"frame")
        sub.connect(d.pub)
        while not stop.is_set():
            if sub.poll(50):
                header, _ = decode(sub.recv_multipart())
                frames.append((time.monotonic(), header))
        sub.close(0)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while len(frames) < 20:
        assert time.monotonic() < deadline, f"no frames; log:\n{d.text()}"
        time.sleep(0.05)

    flood = Flood(d.ctl)
    try:
        t_start = time.monotonic()
        bursts = []
        for _ in range(4):
            time.sleep(0.5)
            bursts.append(burst(d.ctl))
        t_end = time.monotonic()
        garbage = flood.garbage
    finally:
        flood.close()
    time.sleep(0.3)
    stop.set()
    reader.join(5)
    unanswered = sum(latency is None for b in bursts for latency in b)
    slowest = max(latency for b in bursts for latency in b if latency is not None)
    assert unanswered == 0, f"{unanswered} of {20 * len(bursts)} requests unanswered within 1 s ({garbage} garbage)"
    assert slowest < 1.0
    assert garbage >= 50, "the flood did run"

    # the stream did not notice: the daemon produced every window in order at its rate, and delivered them.
    # (On a loaded 2-core host a subscriber can lose a few frames to CPU starvation alone, flood or not,
    # so delivery is checked at 90 %; what the daemon produced is checked exactly.)
    headers = [h for t, h in frames if t_start <= t <= t_end]
    seqs = np.array([h.seq for h in headers])
    keys = np.array([h.key_plane for h in headers])
    assert np.array_equal(keys - keys[0], 40 * (seqs - seqs[0])), "the daemon skipped or repeated windows"
    assert not any(h.discontinuity for h in headers) and headers[-1].worker_skipped_windows == 0
    assert headers[-1].ring_overrun_planes == 0
    published = seqs[-1] - seqs[0] + 1
    publish_s = (headers[-1].publish_t_ns - headers[0].publish_t_ns) / 1e9
    assert published / publish_s >= 0.9 * 200, f"{published} frames published in {publish_s:.2f} s of flood"
    assert len(headers) >= 0.9 * published, f"{len(headers)} of {published} frames received during the flood"
    assert ask(d.ctl, "health")["state"] == "running"
    d.terminate(within_s=5.0)
