"""The daemon under the conditions of issue 12, end to end with real subprocesses and loopback sockets:
``latest`` that skips only when really behind, ``set method`` built aside, a stalled capture process,
a deterministic replay and its subscribers, counters that agree with the flagged frames, and the
documented list of every ``stats``/``health``/``describe`` key and heartbeat field.

Daemons come from ``start_daemon`` (``daemon_harness``): every wait has a deadline and every daemon
still alive at the end of a test is killed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from edge.cli.processes import EDGE, loopback_urls
from edge.protocol.client import request as control_request
from edge.protocol.wire import FrameHeader, Heartbeat, decode
from firmware_io.contract import Geometry
from firmware_io.dat import write_dat

GEOMETRY = Geometry(32, 48)
REPO = Path(__file__).resolve().parents[3]
WIRE_DOC = REPO / "docs" / "wire-format.md"


def write_clip(path: Path, n_planes: int = 400, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write_dat(path, (rng.random((n_planes, *GEOMETRY.shape)) < 0.2).astype(np.uint8))


def geometry_args() -> list[str]:
    return ["--height", str(GEOMETRY.height), "--width", str(GEOMETRY.width)]


def subscribe(ctx: zmq.Context, url: str, topic: bytes = b"") -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.setsockopt(zmq.RCVBUF, 8 << 20)  # a burst after a pause fits the kernel buffer even if this test is descheduled
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(url)
    return sock


def receive_for(sock: zmq.Socket, seconds: float, until=None) -> list:
    """Decoded messages for ``seconds`` (or until ``until(messages)``), each as ``(recv_t_ns, message)``."""
    out: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and until(out)):
        if sock.poll(20):
            out.append((time.monotonic_ns(), decode(sock.recv_multipart())))
    return out


def frames_in(messages: list) -> list[FrameHeader]:
    return [m[0] for _, m in messages if isinstance(m, tuple)]


def ask(d, cmd: str, timeout_s: float = 5.0, **params) -> dict:
    message = {"cmd": cmd, **({"params": params} if params else {})}
    return control_request(d.ctl, message, timeout_s=timeout_s)


def stop_torch_daemon(d) -> None:
    """SIGTERM a daemon that loaded torch: it must exit 0; an interpreter holding torch and ONNX Runtime takes
    seconds to wind down on a loaded machine, so only the code is checked (the TFP daemons check the time)."""
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait(120) == 0, d.text()


def wait_until(predicate, timeout_s: float, what: str, d, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"{what}: not within {timeout_s} s; log:\n{d.text()}")


# -- latest: skip only when really behind ---------------------------------------------------------------------
def test_latest_loses_nothing_when_windows_arrive_together(start_daemon, tmp_path):
    """Blocks of 80 planes with a hop of 40 hand two windows over at once, every time: not a worker that is
    behind, so ``latest`` must publish both (it used to skip every other window). The budget is generous
    here so that a loaded test machine does not make the worker really fall behind."""
    path = write_clip(tmp_path / "clip.dat")
    d = start_daemon(["--replay", str(path), "--realtime", "--loop", "--rate-hz", "8000", "--block-planes", "80",
                      "--hop", "40", "--ring-planes", "16000", "--latency-budget-ms", "1000", "--wait-subscribers", "1",
                      *geometry_args()])
    ctx = zmq.Context()
    try:
        sock = subscribe(ctx, d.pub, b"frame")
        frames = frames_in(receive_for(sock, 60, until=lambda got: len(got) >= 200))
        assert len(frames) >= 200, d.text()
        steps = {f.key_plane - prev.key_plane for prev, f in zip(frames, frames[1:]) if f.seq == prev.seq + 1}
        assert steps == {40}, f"every window on the grid, in order: key steps {steps}"
        assert not any(f.discontinuity for f in frames) and frames[-1].worker_skipped_windows == 0
        stats = ask(d, "stats")["stats"]
        assert stats["worker_skipped_windows"] == 0 and stats["discontinuity_frames"] == 0, stats
        assert stats["frames"] >= frames[-1].seq and stats["lost_windows"] == 0, stats
        assert ask(d, "describe")["latency_budget_ms"] == 1000.0
        sock.close(0)
    finally:
        ctx.destroy(0)
    d.terminate(within_s=3.0)


def test_latest_still_bounds_latency_when_the_worker_is_slower_than_the_camera(start_daemon, tmp_path):
    """LRN on the CPU at 1,000 frames/s of camera time: the worker cannot keep up, so it skips (counted) and the
    latency stays near one inference, far below the 1 s the ring would let it grow to."""
    pytest.importorskip("torch")
    path = write_clip(tmp_path / "clip.dat")
    d = start_daemon(["--replay", str(path), "--realtime", "--loop", "--rate-hz", "40000", "--hop", "40",
                      "--ring-planes", "40000", "--method", "lrn", "--backend", "torch", "--policy", "latest",
                      *geometry_args()])
    ctx = zmq.Context()
    try:
        sock = subscribe(ctx, d.pub, b"frame")
        first = frames_in(receive_for(sock, 60, until=lambda got: len(got) >= 1))
        assert first, d.text()
        frames = frames_in(receive_for(sock, 60, until=lambda got: len(got) >= 10))
        assert len(frames) >= 10, d.text()
        latency_ms = np.array([(f.publish_t_ns - f.capture_t_ns) / 1e6 for f in frames])
        inference_ms = np.array([(f.infer_end_t_ns - f.infer_start_t_ns) / 1e6 for f in frames])
        assert np.median(inference_ms) > 1.0, "the worker must be slower than the 1 ms frame period"
        assert np.median(latency_ms) < np.median(inference_ms) + 100, (latency_ms, inference_ms)
        assert frames[-1].worker_skipped_windows > frames[0].worker_skipped_windows, "skips are counted"
        for prev, f in zip(frames, frames[1:]):
            assert f.discontinuity == (f.key_plane - prev.key_plane != 40), (prev, f)
        stats = ask(d, "stats")["stats"]
        assert stats["worker_skipped_windows"] > 0 and stats["ring_overrun_planes"] == 0, stats
        sock.close(0)
    finally:
        ctx.destroy(0)
    stop_torch_daemon(d)


# -- set method: built aside, the old method streams meanwhile -------------------------------------------------
def test_set_method_builds_aside_and_frames_keep_flowing(start_daemon):
    """``set method=lrn`` builds LRN (weights, ONNX export, session, a warm-up run) on a background thread while
    TFP keeps streaming, then swaps between two windows.

    The daemon starts on LRN and is switched to TFP first: the test measures the build, not the one-time
    loading of torch and ONNX into the process (dlopen holds the interpreter lock for a few hundred ms on
    the first network a daemon ever uses; docs/wire-format.md says so). At the camera's 250x400 the build
    (export, session, one inference) takes longer than the gap allowed, so a build on the loop would show."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    d = start_daemon(["--simulate", "--rate-hz", "4000", "--hop", "40", "--method", "lrn"])
    ctx = zmq.Context()
    try:
        sock = subscribe(ctx, d.pub, b"frame")
        assert frames_in(receive_for(sock, 60, until=lambda got: len(got) >= 3)), d.text()
        reply = ask(d, "set", method="tfp")
        assert reply["status"] == "pending" and reply["current"]["method"] == "lrn", reply
        wait_until(lambda: ask(d, "describe")["method"] == "tfp", 30, "tfp applied", d)
        receive_for(sock, 30, until=lambda got: sum(m[0].method == "tfp" for _, m in got) >= 20)
        t_set = time.monotonic_ns()
        reply = ask(d, "set", method="lrn")
        assert reply["ok"] and reply["status"] == "pending", reply
        assert reply["pending"]["method"] == "lrn" and reply["pending"]["window"] == 200, reply
        assert reply["current"]["method"] == "tfp", reply
        busy = ask(d, "set", method="stir")  # one rebuild at a time
        assert busy["ok"] is False and "still being prepared" in busy["error"], busy
        assert ask(d, "describe")["pending_set"]["method"] == "lrn"
        messages = receive_for(sock, 120, until=lambda got: sum(m[0].method == "lrn" for _, m in got) >= 3)
        frames = [f for f in frames_in(messages) if f.publish_t_ns > t_set]
        methods = [f.method for f in frames]
        assert methods.count("lrn") >= 3, f"no lrn frames; log:\n{d.text()}"
        switch = methods.index("lrn")
        assert set(methods[:switch]) == {"tfp"} and set(methods[switch:]) == {"lrn"}, "one swap, between windows"
        build_s = (frames[switch].dequeue_t_ns - t_set) / 1e9
        # the loop's pauses: between TFP frames, and until it took the first LRN window (LRN's own inference,
        # a few hundred ms at 250x400 on a CPU, is the new method's frame time, not a pause)
        loop_t = [t_set] + [f.publish_t_ns for f in frames[:switch]] + [frames[switch].dequeue_t_ns]
        longest_gap_s = float(np.diff(np.array(loop_t) / 1e9).max())
        assert switch >= 1, f"the old method must stream while the new one is built ({build_s:.2f} s)"
        assert longest_gap_s < 0.5, f"frames stopped for {longest_gap_s:.2f} s during a {build_s:.2f} s build"
        described = ask(d, "describe")
        assert described["method"] == "lrn" and described["window"] == 200 and described["pending_set"] is None
        events = ask(d, "health")["recent_events"]
        assert any(e.startswith("set-pending:") for e in events) and any(e.startswith("set-applied:") for e in events)
        print(f"set method=lrn: built in {build_s:.2f} s, longest publish gap {longest_gap_s * 1000:.0f} ms")
        sock.close(0)
    finally:
        ctx.destroy(0)
    stop_torch_daemon(d)


def test_a_set_whose_build_fails_keeps_the_current_method(start_daemon, tmp_path):
    bad = tmp_path / "not-weights.pt"
    bad.write_bytes(b"not a checkpoint")
    d = start_daemon(["--simulate", "--rate-hz", "4000", "--hop", "40", "--checkpoint", str(bad), *geometry_args()])
    wait_until(lambda: ask(d, "health")["state"] == "running", 30, "running", d)
    reply = ask(d, "set", method="lrn")
    assert reply["ok"] and reply["status"] == "pending", reply
    events = wait_until(lambda: [e for e in ask(d, "health")["recent_events"] if e.startswith("set-failed:")], 60,
                        "the failed build reported", d)
    assert "lrn" in events[0], events
    described = ask(d, "describe")
    assert described["method"] == "tfp" and described["pending_set"] is None
    frames = ask(d, "stats")["stats"]["frames"]
    wait_until(lambda: ask(d, "stats")["stats"]["frames"] > frames, 5, "frames after the failed set", d)
    stop_torch_daemon(d)


# -- a capture process that stops making progress ---------------------------------------------------------------
def heartbeats_in(messages: list) -> list[Heartbeat]:
    return [m for _, m in messages if isinstance(m, Heartbeat)]


def test_a_stalled_capture_is_degraded_within_a_second_and_recovers(start_daemon, tmp_path):
    path = write_clip(tmp_path / "clip.dat")
    d = start_daemon(["--replay", str(path), "--realtime", "--loop", "--rate-hz", "8000", *geometry_args()])
    ctx = zmq.Context()
    pid = None
    try:
        sock = subscribe(ctx, d.pub)
        assert frames_in(receive_for(sock, 30, until=lambda got: len(frames_in(got)) >= 5)), d.text()
        health = ask(d, "health")
        assert health["state"] == "running" and health["capture_stalled"] is False, health
        pid = health["capture_pid"]
        assert isinstance(pid, int) and pid != d.proc.pid
        os.kill(pid, signal.SIGSTOP)
        t_stop = time.monotonic()
        health = wait_until(lambda: (h := ask(d, "health"))["state"] == "degraded" and h, 5, "degraded", d, 0.02)
        detected_s = time.monotonic() - t_stop
        assert detected_s < 1.0, f"a stalled capture was noticed after {detected_s:.2f} s"
        assert health["capture_stalled"] is True and health["capture_alive"] is True
        assert any(e.startswith("stalled:") and str(pid) in e for e in health["recent_events"]), health
        hb = wait_until(lambda: [h for h in heartbeats_in(receive_for(sock, 0.3)) if h.capture_stalled], 3,
                        "a heartbeat flagging the stall", d)
        assert hb[-1].stats["state"] == "degraded" and hb[-1].stats["capture_stalled"] is True
        time.sleep(1.0)  # well below --capture-stall-s (5 s): the daemon waits
        assert d.proc.poll() is None
        os.kill(pid, signal.SIGCONT)
        health = wait_until(lambda: (h := ask(d, "health"))["state"] == "running" and h, 5, "running again", d)
        assert health["capture_stalled"] is False
        assert any(e.startswith("resumed:") for e in health["recent_events"]), health
        before = ask(d, "stats")["stats"]
        assert before["capture_stalls"] == 1
        wait_until(lambda: ask(d, "stats")["stats"]["frames"] > before["frames"] + 10, 5, "frames again", d)
        sock.close(0)
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        ctx.destroy(0)
    d.terminate(within_s=3.0)
    log = d.text()
    assert "capture stalled" in log and "capture resumed" in log, log


def test_a_capture_stalled_longer_than_capture_stall_s_is_a_source_failure(start_daemon, tmp_path):
    path = write_clip(tmp_path / "clip.dat")
    d = start_daemon(["--replay", str(path), "--realtime", "--loop", "--rate-hz", "8000", "--capture-stall-s", "2",
                      *geometry_args()])
    pid = wait_until(lambda: (h := ask(d, "health"))["state"] == "running" and h["capture_pid"], 30, "running", d)
    try:
        os.kill(pid, signal.SIGSTOP)
        t_stop = time.monotonic()
        code = d.wait(15)
        took_s = time.monotonic() - t_stop
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    log = d.text()
    assert code == 3, log  # ExitCode.SOURCE_FAILED
    assert 1.8 < took_s < 5.0, f"exited {took_s:.1f} s after the stall began (--capture-stall-s 2)"
    assert "made no progress" in log and "--capture-stall-s 2" in log, log
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the daemon took its stalled child down with it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the stalled capture process {pid} outlived its daemon")


# -- deterministic replay and its subscribers -------------------------------------------------------------------
SPIKE_HOST = [sys.executable, "-m", "host"]


def test_deterministic_replay_waits_for_a_subscriber_by_default(start_daemon, tmp_path):
    path = write_clip(tmp_path / "clip.dat", 600)
    d = start_daemon(["--replay", str(path), "--hop", "40", *geometry_args()])
    wait_until(lambda: "waiting for 1 frame subscriber" in d.text(), 30, "the waiting message", d)
    time.sleep(0.5)
    stats = ask(d, "stats")["stats"]
    assert stats["frames"] == 0 and stats["subscribers"] == 0, "nothing is published into nothing"
    assert ask(d, "describe")["wait_subscribers"] == 1
    out = tmp_path / "rec.npz"
    r = subprocess.run([*SPIKE_HOST, "record", d.pub, "--out", str(out), "--timeout-s", "30"], capture_output=True,
                       text=True, timeout=90)
    assert r.returncode == 0, r.stderr + d.text()
    summary = json.loads(r.stdout)
    expected = (600 - 41) // 40 + 1
    assert summary["eos"] and summary["frames"] == expected and summary["gaps"] == 0, summary
    assert d.wait(10) == 0, d.text()
    assert "went nowhere" not in d.text()


def test_replay_without_waiting_says_how_many_frames_went_nowhere(tmp_path):
    path = write_clip(tmp_path / "clip.dat", 600)
    pub, ctl = loopback_urls()
    r = subprocess.run([*EDGE, "run", "--replay", str(path), "--hop", "40", "--wait-subscribers", "0",
                        *geometry_args(), "--bind", pub, "--control", ctl], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    expected = (600 - 41) // 40 + 1
    assert "--wait-subscribers 0: frames published while no subscriber is connected go nowhere" in r.stderr, r.stderr
    assert f"{expected} of the {expected} frames were published while no frame subscriber was connected" in r.stderr
    assert r.stderr.index("go nowhere") < r.stderr.index(f"published {expected} frames"), "warned at the start too"


# -- counters agree with the flagged frames --------------------------------------------------------------------
def test_every_loss_flags_a_frame_and_the_counters_agree(start_daemon, tmp_path):
    """The daemon is paused (SIGSTOP) long enough for the capture to lap its ring: planes overrun, windows lost,
    frames flagged; the counters in stats, the frame headers and the flags tell one story."""
    path = write_clip(tmp_path / "clip.dat")
    d = start_daemon(["--replay", str(path), "--realtime", "--loop", "--rate-hz", "8000", "--ring-planes", "800",
                      "--policy", "all", "--wait-subscribers", "1", *geometry_args()])
    ctx = zmq.Context()
    try:
        sock = subscribe(ctx, d.pub, b"frame")
        frames = frames_in(receive_for(sock, 30, until=lambda got: len(got) >= 20))
        assert len(frames) >= 20 and frames[0].seq == 0, d.text()
        for _ in range(2):
            os.kill(d.proc.pid, signal.SIGSTOP)  # 0.3 s = 2,400 planes: three times the ring
            time.sleep(0.3)
            os.kill(d.proc.pid, signal.SIGCONT)
            frames += frames_in(receive_for(sock, 1.0))
        stats = ask(d, "stats")["stats"]
        frames += frames_in(receive_for(sock, 30, until=lambda got: frames[-1].seq + len(frames_in(got))
                                        >= stats["frames"] + 5))
        sock.close(0)
    finally:
        ctx.destroy(0)
    d.terminate(within_s=3.0)
    assert [f.seq for f in frames] == list(range(len(frames))), "the subscriber lost nothing"
    assert stats["ring_overrun_planes"] > 0 and stats["lost_windows"] > 0, stats
    assert stats["worker_skipped_windows"] == 0 and stats["source_discontinuities"] == 0, stats
    assert stats["discontinuities"] == stats["source_discontinuities"], "the deprecated alias"
    # Keys lie on the grid 20 + 40 m from plane 0: a key further than one hop from the previous one (the
    # first frame: from 20) means lost windows, and exactly then the overrun count grew and the frame is flagged.
    prev_key, prev_overrun, lost, lost_by = -20, 0, [], 0
    for f in frames:
        jumped = f.key_plane - prev_key != 40
        assert f.discontinuity == jumped == (f.ring_overrun_planes != prev_overrun), (prev_key, prev_overrun, f)
        lost_by += (f.key_plane - prev_key) // 40 - 1
        lost.append(lost_by)  # windows lost before this frame
        prev_key, prev_overrun = f.key_plane, f.ring_overrun_planes
    n = stats["frames"]  # the frames published when stats was read
    assert sum(f.discontinuity for f in frames[:n]) == stats["discontinuity_frames"] >= 1, stats
    assert lost[n - 1] <= stats["lost_windows"] <= lost[n], (lost[n - 1: n + 1], stats)
    assert frames[n - 1].ring_overrun_planes <= stats["ring_overrun_planes"] <= frames[n].ring_overrun_planes


def test_spike_host_stats_names_flagged_frames(start_daemon, tmp_path):
    path = write_clip(tmp_path / "clip.dat")
    d = start_daemon(["--replay", str(path), "--realtime", "--loop", "--rate-hz", "8000", *geometry_args()])
    r = subprocess.run([*SPIKE_HOST, "stats", d.pub, "--seconds", "2", "--warmup-s", "0", "--timeout-s", "30",
                        "--json"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr + d.text()
    daemon = json.loads(r.stdout)["daemon"]
    assert daemon["flagged_frames"] == daemon["discontinuities"], daemon
    assert "source_discontinuities" in daemon["heartbeat_stats"], daemon
    table = subprocess.run([*SPIKE_HOST, "stats", d.pub, "--seconds", "1", "--warmup-s", "0"], capture_output=True,
                           text=True, timeout=90)
    assert "flagged frames" in table.stdout and "discontinuities" not in table.stdout, table.stdout
    d.terminate(within_s=3.0)


# -- docs/wire-format.md lists every key the daemon sends ----------------------------------------------------
def documented_keys(section: str) -> set[str]:
    """The keys in the first column of the table under the heading that contains ``section``."""
    text = WIRE_DOC.read_text()
    start = text.index(section)
    body = text[start:].split("\n#", 1)[0]
    keys: set[str] = set()
    for line in body.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            first = line.split("|")[1]
            keys.update(re.findall(r"`([a-z0-9_]+)`", first))
    return keys


def test_the_wire_format_document_lists_every_key_the_daemon_sends(start_daemon, tmp_path):
    path = write_clip(tmp_path / "clip.dat")
    d = start_daemon(["--replay", str(path), "--realtime", "--loop", "--rate-hz", "8000", *geometry_args()])
    ctx = zmq.Context()
    try:
        sock = subscribe(ctx, d.pub)
        messages = receive_for(sock, 30, until=lambda got: bool(heartbeats_in(got)) and bool(frames_in(got)))
        sock.close(0)
    finally:
        ctx.destroy(0)
    hb = heartbeats_in(messages)
    assert hb, d.text()
    raw_heartbeat = set(hb[-1].to_dict())
    stats, health, described = ask(d, "stats")["stats"], ask(d, "health"), ask(d, "describe")
    d.terminate(within_s=3.0)
    assert documented_keys("### `stats` keys") == set(stats) == set(hb[-1].stats)
    assert documented_keys("### `health` keys") == set(health) - {"ok"}
    assert documented_keys("### `describe` keys") == set(described) - {"ok"}
    assert documented_keys("### `heartbeat`") == raw_heartbeat
    assert documented_keys("### `frame` header") == set(frames_in(messages)[0].to_dict())
