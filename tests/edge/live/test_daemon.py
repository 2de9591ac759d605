"""End to end across real processes on loopback: ``spike-edge run`` as a subprocess, real sockets.

Daemons come from ``start_daemon`` (``daemon_harness``): every wait has a deadline and every daemon
still alive at the end of a test is killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from edge.reconstruction.backends import make_reconstructor
from edge.cli.processes import EDGE, loopback_urls
from edge.protocol.wire import EndOfStream, FrameHeader, decode
from edge.reconstruction.windows import keys_every, window_range
from firmware_io.contract import Geometry
from firmware_io.dat import write_dat
from firmware_io.recording import open_recording
from edge.protocol.client import ControlTimeout
from edge.protocol.client import request as control_request

PY = sys.executable


def write_clip(path: Path, geometry: Geometry, n_planes: int, seed: int = 0) -> Path:
    """A moving gradient with Bernoulli spikes: structured enough that wrong windows show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : geometry.height, 0 : geometry.width]
    planes = np.empty((n_planes, *geometry.shape), dtype=np.uint8)
    for t in range(n_planes):
        p = 0.05 + 0.4 * (((x + t // 5) % geometry.width) / geometry.width) * (y / geometry.height)
        planes[t] = rng.random(geometry.shape) < p
    return write_dat(path, planes)


def sub_socket(ctx: zmq.Context, url: str, rcvhwm: int = 1000, rcvbuf: int | None = None) -> zmq.Socket:
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, rcvhwm)
    if rcvbuf:
        s.setsockopt(zmq.RCVBUF, rcvbuf)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(url)
    return s


def receive(sock: zmq.Socket, deadline: float):
    """Next decoded message, or None at the deadline."""
    while time.monotonic() < deadline:
        if sock.poll(50):
            return decode(sock.recv_multipart())
    return None


def send_garbage(d, parts: list[bytes], timeout_s: float = 3.0) -> dict:
    """Send ``parts`` as they are (not a well-formed request) to the control socket; the reply map."""
    s = zmq.Context.instance().socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.ctl)
    try:
        s.send_multipart(parts)
        assert s.poll(int(timeout_s * 1000)), f"no control reply to {parts!r}; log:\n{d.text()}"
        return msgpack.unpackb(s.recv(), raw=False)
    finally:
        s.close(0)


def wait_for_frames(sock, n: int, timeout_s: float) -> list[tuple[FrameHeader, np.ndarray]]:
    frames = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < n:
        msg = receive(sock, deadline)
        assert msg is not None, f"only {len(frames)} of {n} frames within {timeout_s} s"
        if isinstance(msg, tuple):
            frames.append(msg)
    return frames


def offline_reference(path: Path, geometry: Geometry, method: str, hop: int) -> tuple[list[int], np.ndarray]:
    rec_ = make_reconstructor(method, geometry)
    with open_recording(path, geometry) as rec:
        keys = keys_every(rec.n_planes, rec_.window_planes, hop)
        frames = []
        for key in keys:
            start, stop = window_range(key, rec_.window_planes)
            frames.append(rec_.reconstruct(np.array(rec.packed(start, stop))[None])[0])
    return keys, np.stack(frames)


# -- (i) deterministic replay == offline, frame for frame ---------------------------------------------
@pytest.fixture(params=["simulated", "redsbase"])
def replay_clip(request, tmp_path):
    if request.param == "simulated":
        geometry = Geometry(48, 80)
        return write_clip(tmp_path / "clip.dat", geometry, 1234), geometry
    from fixtures_catalogue import REDSBASE_SHAPE

    clips = request.getfixturevalue("redsbase_clips")
    return clips[0][0], Geometry(*REDSBASE_SHAPE)


def test_deterministic_replay_equals_offline(replay_clip, start_daemon, tmp_path):
    path, geometry = replay_clip
    keys, expected = offline_reference(path, geometry, "tfp", 40)
    assert len(keys) > 1
    d = start_daemon(["--replay", str(path), "--height", str(geometry.height), "--width", str(geometry.width),
                      "--method", "tfp", "--hop", "40", "--wait-subscribers", "1", "--ring-planes", "300"])
    ctx = zmq.Context()
    try:
        sock = sub_socket(ctx, d.pub, rcvhwm=4)  # a small queue: the replay must wait for us, not drop
        frames, eos = [], None
        deadline = time.monotonic() + 30
        while eos is None:
            msg = receive(sock, deadline)
            assert msg is not None, f"no end-of-stream; log:\n{d.text()}"
            if isinstance(msg, EndOfStream):
                eos = msg
            elif isinstance(msg, tuple):
                frames.append(msg)
                if len(frames) % 5 == 0:
                    time.sleep(0.02)  # a slow subscriber
        assert d.wait(10) == 0, d.text()
        sock.close(0)
    finally:
        ctx.destroy(0)
    seqs = [h.seq for h, _ in frames]
    assert seqs == list(range(len(keys))), "sequence numbers must be contiguous from 0"
    assert [h.key_plane for h, _ in frames] == keys
    assert all((h.plane_start, h.plane_stop) == window_range(k, 41) for (h, _), k in zip(frames, keys))
    assert eos.frames == len(keys) and eos.last_seq == len(keys) - 1 and eos.reason == "end-of-stream"
    got = np.stack([img for _, img in frames])
    assert np.array_equal(got, expected), "live frames differ from the offline reconstruction"
    for h, _ in frames:
        assert h.capture_t_ns <= h.dequeue_t_ns <= h.infer_start_t_ns <= h.infer_end_t_ns <= h.publish_t_ns
        assert not h.discontinuity and h.ring_overrun_planes == 0 and h.worker_skipped_windows == 0

    out = tmp_path / "offline.npy"  # and the offline command agrees frame for frame
    r = subprocess.run([*EDGE, "reconstruct", str(path), "--height", str(geometry.height),
                        "--width", str(geometry.width), "--method", "tfp", "--every", "40", "--out", str(out)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert np.array_equal(np.load(out), got)


SPIKE_HOST = shutil.which("spike-host") or str(Path(PY).parent / "spike-host")


@pytest.mark.parametrize("precision", [[], ["--precision", "bf16"]], ids=["default", "bf16"])
def test_lrn_replay_equals_offline_lrn(start_daemon, tmp_path, precision):
    """The network path end to end: the daemon's LRN frames equal ``spike-edge reconstruct --method lrn``
    (in the same precision)."""
    pytest.importorskip("torch")
    geometry = Geometry(32, 48)
    path = write_clip(tmp_path / "clip.dat", geometry, 500, seed=4)
    d = start_daemon(["--replay", str(path), "--height", "32", "--width", "48", "--method", "lrn", "--backend",
                      "torch", "--hop", "50", "--wait-subscribers", "1", *precision])
    out = tmp_path / "rec.npz"
    r = subprocess.run([SPIKE_HOST, "record", d.pub, "--out", str(out), "--timeout-s", "60"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode() + d.text()
    offline = tmp_path / "offline.npy"
    r = subprocess.run([*EDGE, "reconstruct", str(path), "--height", "32", "--width", "48", "--method", "lrn",
                        "--backend", "torch", "--every", "50", "--out", str(offline), *precision],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    with np.load(out) as z:
        assert list(z["key_plane"]) == keys_every(500, 200, 50)
        assert set(z["method"]) == {"lrn"}
        assert set(z["backend"]) == {"torch-cpu-bf16" if precision else "torch-cpu-fp32"}
        np.testing.assert_allclose(z["frames"], np.load(offline), atol=1e-5)
    assert d.wait(10) == 0


def test_deterministic_replay_recorded_by_spike_host(start_daemon, tmp_path):
    geometry = Geometry(32, 48)
    path = write_clip(tmp_path / "clip.dat", geometry, 900, seed=3)
    keys, expected = offline_reference(path, geometry, "tfp", 40)
    d = start_daemon(["--replay", str(path), "--height", "32", "--width", "48", "--hop", "40",
                      "--wait-subscribers", "1"])
    out = tmp_path / "rec.npz"
    r = subprocess.run([SPIKE_HOST, "record", d.pub, "--out", str(out), "--timeout-s", "20"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode() + d.text()
    summary = json.loads(r.stdout)
    assert summary["eos"] and summary["frames"] == len(keys)
    with np.load(out) as z:
        assert np.array_equal(z["frames"], expected)
        assert list(z["seq"]) == list(range(len(keys)))
        assert list(z["key_plane"]) == keys
    assert d.wait(10) == 0


# -- (ii) SIGTERM -----------------------------------------------------------------------------------
def live_args(path: Path, geometry: Geometry, rate_hz: int, *extra: str) -> list[str]:
    return ["--replay", str(path), "--realtime", "--loop", "--rate-hz", str(rate_hz), "--height",
            str(geometry.height), "--width", str(geometry.width), *extra]


def test_sigterm_exits_zero_within_a_second(start_daemon, tmp_path):
    geometry = Geometry(32, 48)
    path = write_clip(tmp_path / "clip.dat", geometry, 400)
    d = start_daemon(live_args(path, geometry, 20000))
    ctx = zmq.Context()
    try:
        sock = sub_socket(ctx, d.pub)
        wait_for_frames(sock, 5, 20)
        d.terminate(within_s=1.0)
        # end-of-stream was announced before the sockets closed
        eos = None
        deadline = time.monotonic() + 1
        while eos is None:
            msg = receive(sock, deadline)
            if msg is None:
                break
            if isinstance(msg, EndOfStream):
                eos = msg
        assert eos is not None and "SIGTERM" in eos.reason
        sock.close(0)
    finally:
        ctx.destroy(0)


# -- (iii) control garbage, (v) set hop ----------------------------------------------------------------
@pytest.mark.realtime
def test_control_errors_do_not_disturb_the_stream_and_set_changes_hop(start_daemon, tmp_path):
    geometry = Geometry(32, 48)
    path = write_clip(tmp_path / "clip.dat", geometry, 400)
    d = start_daemon(live_args(path, geometry, 8000, "--policy", "all"))
    ctx = zmq.Context()
    try:
        sock = sub_socket(ctx, d.pub)
        before = wait_for_frames(sock, 3, 20)
        bad_requests = [
            [b"\xc1\xff not msgpack"],
            [msgpack.packb([1, 2, 3])],
            [msgpack.packb({"nocmd": 1})],
            [msgpack.packb({"cmd": "reboot"})],
            [msgpack.packb({"cmd": "set", "params": {"hop": -3}})],
            [msgpack.packb({"cmd": "set", "params": {"hop": "fast"}})],
            [msgpack.packb({"cmd": "set", "params": {"method": "nope"}})],
            [msgpack.packb({"cmd": "set", "params": {"policy": "sometimes"}})],
            [msgpack.packb({"cmd": "set", "params": {"colour": "red"}})],
            [msgpack.packb({"cmd": "set", "params": {"hop": 80, "window": 0}})],  # one bad value: nothing applied
            [b"a", b"b"],
        ]
        for parts in bad_requests:
            reply = send_garbage(d, parts)
            assert reply["ok"] is False and reply["error"], parts
        described = d.request("describe")
        assert described["ok"] and described["hop"] == 40 and described["method"] == "tfp"
        assert described["geometry"] == [32, 48]
        health = d.request("health")
        assert health["ok"] and health["state"] == "running" and health["capture_alive"]
        stats = d.request("stats")
        assert stats["ok"] and stats["stats"]["control_errors"] >= len(bad_requests)
        # the stream went on, contiguous, still at hop 40
        after = wait_for_frames(sock, 5, 10)
        seqs = [h.seq for h, _ in before + after]
        assert seqs[-1] > seqs[0]
        assert all(np.diff([h.key_plane for h, _ in after]) % 40 == 0)

        reply = d.request("set", hop=80)
        assert reply["ok"] and reply["applied"]["hop"] == 80, reply
        switch_key = reply["applied"]["from_key_plane"]
        frames = wait_for_frames(sock, 40, 15)
        keys = [h.key_plane for h, _ in frames if h.key_plane >= switch_key]
        assert len(keys) >= 10
        assert set(np.diff(keys)) == {80}, "after set hop=80 frames must be 80 planes apart"
        assert d.request("describe")["hop"] == 80
        with socket.create_connection(("127.0.0.1", int(d.ctl.rsplit(":", 1)[1])), timeout=2) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(256))  # not even ZMTP
        # libzmq may hold the REP socket on such a peer's half message for a second or two before it
        # drops the connection (see docs/wire-format.md); the stream is not affected meanwhile
        described = None
        deadline = time.monotonic() + 8
        while described is None and time.monotonic() < deadline:
            try:
                described = control_request(d.ctl, {"cmd": "describe"}, timeout_s=1.0)
            except ControlTimeout:
                pass
        assert described is not None, "the control socket never recovered from raw garbage"
        assert described["ok"] and described["hop"] == 80
        more = wait_for_frames(sock, 5, 10)  # the stream did not notice
        assert more[-1][0].seq > frames[-1][0].seq
        sock.close(0)
    finally:
        ctx.destroy(0)
    d.terminate(within_s=5.0, sig=signal.SIGINT)


# -- (iv) a stalled subscriber does not slow the daemon ------------------------------------------------------
@pytest.mark.realtime
def test_stalled_subscriber_does_not_slow_the_daemon(start_daemon, tmp_path):
    geometry = Geometry(128, 128)  # 64 KB frames: buffers fill quickly
    path = write_clip(tmp_path / "clip.dat", geometry, 400)
    rate_hz, hop = 20000, 40  # 500 frames/s
    d = start_daemon(live_args(path, geometry, rate_hz, "--hop", str(hop)))
    ctx = zmq.Context()
    try:
        healthy = sub_socket(ctx, d.pub)
        stalled = sub_socket(ctx, d.pub, rcvhwm=4, rcvbuf=65536)
        wait_for_frames(healthy, 10, 20)
        # the stalled subscriber reads nothing for 2 s while the healthy one measures the rate
        t0 = time.monotonic()
        frames = []
        while time.monotonic() - t0 < 2.0:
            msg = receive(healthy, t0 + 2.0)
            if isinstance(msg, tuple):
                frames.append(msg[0])
        span_s = (frames[-1].publish_t_ns - frames[0].publish_t_ns) / 1e9
        published_fps = (frames[-1].seq - frames[0].seq) / span_s
        nominal = rate_hz / hop
        assert published_fps > 0.9 * nominal, f"published {published_fps:.0f}/s, nominal {nominal:.0f}/s"
        healthy_seqs = [h.seq for h in frames]
        assert healthy_seqs == list(range(healthy_seqs[0], healthy_seqs[0] + len(healthy_seqs))), \
            "the healthy subscriber must lose nothing"
        # now the stalled one drains: it sees the drops as sequence gaps
        seqs = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and (not seqs or seqs[-1] < frames[-1].seq):
            msg = receive(stalled, deadline)
            if isinstance(msg, tuple):
                seqs.append(msg[0].seq)
        gaps = np.diff(seqs)
        assert (gaps > 1).any(), "a stalled subscriber must see its drops as sequence gaps"
        assert (gaps >= 1).all()
        stats = d.request("stats")["stats"]
        assert stats["publish_waits"] == 0
        healthy.close(0)
        stalled.close(0)
    finally:
        ctx.destroy(0)
    d.terminate(within_s=5.0)


# -- failures: distinct exit codes with a message -------------------------------------------------------------
def test_bad_inputs_exit_with_distinct_codes(tmp_path):
    missing = subprocess.run([*EDGE, "run", "--replay", str(tmp_path / "nope.dat")],
                             capture_output=True, timeout=30)
    assert missing.returncode == 2 and b"nope.dat" in missing.stderr
    no_source = subprocess.run([*EDGE, "run"], capture_output=True, timeout=30)
    assert no_source.returncode == 2 and b"exactly one source" in no_source.stderr
    pub, ctl = loopback_urls()
    camera = subprocess.run([*EDGE, "run", "--camera", "--camera-library", str(tmp_path / "libnone.so"),
                             "--bind", pub, "--control", ctl], capture_output=True, timeout=30)
    assert camera.returncode == 3, camera.stderr.decode()
    assert b"camera" in camera.stderr.lower()
