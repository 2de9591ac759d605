"""Host clients against a real publisher on loopback: subscriber, stats, recorders and the spike-host CLI.

The publisher is ``host_harness.Pub``, a small XPUB socket speaking ``edge.protocol.wire`` (it waits for
the subscription to arrive instead of sleeping). Every socket has LINGER 0, every wait a deadline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from edge.cli.processes import free_port
from firmware_io.exits import ExitCode
from edge.protocol.wire import TOPIC_EOS, TOPIC_FRAME, TOPIC_HEARTBEAT
from host import stats as hstats
from host.record import FOLDER_INDEX, FolderRecorder, read_folder, read_npz
from host.subscriber import Received, SeqTracker, Subscriber, SubscriberTimeout
from host_harness import REPO, SHAPE, Pub, image_for, make_header, publishing, spike_host, wait_frame

# -- subscriber -------------------------------------------------------------


def test_frames_arrive_as_arrays_with_headers_gaps_and_daemon_counters(pub):
    with Subscriber(pub.url, timeout_s=5) as sub:
        pub.wait_subscribed((TOPIC_FRAME, TOPIC_HEARTBEAT, TOPIC_EOS))
        pub.heartbeat()
        for seq in (0, 1, 2, 5, 6):
            pub.frame(seq)
        pub.frame(10, discontinuity=True, ring_overrun_planes=7, worker_skipped_windows=2)
        pub.eos(last_seq=12, frames=13, repeats=3)
        pub.frame(0, stream_id="s2")  # a new stream: not a gap

        items = [sub.recv() for _ in range(9)]
        kinds = [i.kind for i in items]
        assert kinds == ["heartbeat"] + ["frame"] * 6 + ["eos", "frame"]
        frames = items[1:7]
        assert [f.seq for f in frames] == [0, 1, 2, 5, 6, 10]
        assert [f.gap_frames for f in frames] == [0, 0, 0, 2, 0, 3]
        assert frames[3].gap and not frames[4].gap
        assert frames[0].new_stream and not any(f.new_stream for f in frames[1:])
        for f in frames:
            assert f.image.dtype == np.float32 and f.image.shape == SHAPE
            np.testing.assert_array_equal(f.image, image_for(f.seq))
            assert f.header.stream_id == "s1" and f.recv_t_ns >= f.header.publish_t_ns
        assert frames[-1].header.discontinuity
        assert items[7].eos.last_seq == 12 and items[0].heartbeat.stats == {"fps": 1.0}
        restart = items[8]
        assert restart.new_stream and restart.gap_frames == 0 and restart.header.stream_id == "s2"
        s = sub.stats
        assert (s.gaps, s.lost_frames) == (3, 7)  # 2 + 3 in the stream, 2 after frame 10 per end-of-stream
        assert s.eos == 1 and s.heartbeats == 1 and s.stream_restarts == 1
        assert (frames[-1].header.ring_overrun_planes, frames[-1].header.worker_skipped_windows) == (7, 2)
        assert (s.discontinuities, s.ring_overrun_planes, s.worker_skipped_windows) == (1, 0, 0)  # of stream s2
        assert sub.next(0.2) is None  # the end-of-stream repeats were absorbed


def test_topics_filter_and_heartbeats_still_counted(pub):
    with Subscriber(pub.url, topics=("frame",), timeout_s=5) as sub:
        pub.wait_subscribed((TOPIC_FRAME, TOPIC_HEARTBEAT))
        pub.heartbeat()
        pub.frame(0)
        item = sub.recv()
        assert item.kind == "frame" and sub.stats.heartbeats == 1


def test_latest_only_returns_newest_after_burst(pub):
    with Subscriber(pub.url, latest_only=True, timeout_s=5) as sub:
        pub.wait_subscribed()
        for seq in range(50):
            pub.frame(seq, shape=(64, 64))
        time.sleep(0.3)
        item = wait_frame(sub)
        assert item.seq == 49
        assert item.skipped_frames >= 1 and sub.stats.skipped_latest == item.skipped_frames
        assert sub.stats.returned_frames == 1
        assert sub.next(0.2) is None
        pub.frame(50, shape=(64, 64))
        nxt = wait_frame(sub)
        assert nxt.seq == 50 and nxt.skipped_frames == 0 and nxt.gap_frames == 0


def test_garbage_is_counted_and_skipped(pub):
    good = make_header(0).to_dict()
    payload = image_for(0).tobytes()
    with Subscriber(pub.url, timeout_s=5) as sub:
        pub.wait_subscribed()
        pub.raw([TOPIC_FRAME, b"x"])  # wrong part count
        pub.raw([TOPIC_FRAME, b"\xc1\xc1", b""])  # not msgpack
        pub.raw([TOPIC_FRAME, msgpack.packb([1, 2]), b""])  # not a map
        pub.raw([TOPIC_FRAME, msgpack.packb({**good, "v": 99}), payload])  # wrong version
        pub.raw([TOPIC_FRAME, msgpack.packb(good), payload[:-4]])  # wrong payload size
        pub.raw([TOPIC_FRAME, msgpack.packb({**good, "seq": "7"}), payload])  # seq not an integer
        pub.raw([TOPIC_FRAME, msgpack.packb({k: v for k, v in good.items() if k != "seq"}), payload])  # missing field
        pub.raw([TOPIC_FRAME + b"zz", msgpack.packb(good), payload])  # unknown topic under the prefix
        pub.frame(3)
        item = sub.recv()
        assert item.kind == "frame" and item.seq == 3
        assert sub.stats.malformed == 8 and sub.stats.frames == 1 and sub.stats.last_error


def test_timeouts_never_block():
    url = f"tcp://127.0.0.1:{free_port()}"
    with Subscriber(url, timeout_s=0.2, reconnect=False) as sub:
        t0 = time.monotonic()
        assert sub.next() is None
        assert 0.15 <= time.monotonic() - t0 < 1.5
        with pytest.raises(SubscriberTimeout):
            sub.recv(0.1)
        with pytest.raises(SubscriberTimeout):
            next(iter(sub))
        assert sub.next(0) is None
        assert sub.stats.timeouts == 4
    with pytest.raises(RuntimeError):
        sub.next(0)
    with pytest.raises(ValueError):
        Subscriber("127.0.0.1:5555")
    with pytest.raises(ValueError):
        Subscriber(url, topics=("frames",))


def test_heartbeats_keep_the_connection(pub):
    with Subscriber(pub.url, heartbeat_timeout_s=0.3, timeout_s=2) as sub:
        pub.wait_subscribed((TOPIC_HEARTBEAT,))
        for _ in range(7):
            pub.heartbeat()
            assert sub.recv().kind == "heartbeat"
            time.sleep(0.1)
        assert sub.stats.reconnects == 0


def test_reconnects_when_publisher_disappears_and_returns():
    first = Pub()
    port = first.port
    with Subscriber(first.url, heartbeat_timeout_s=0.5, timeout_s=5) as sub:
        first.wait_subscribed()
        for seq in range(5):
            first.frame(seq)
        assert [wait_frame(sub).seq for _ in range(5)] == [0, 1, 2, 3, 4]
        first.close()
        assert sub.next(1.2) is None
        assert sub.stats.reconnects >= 1
        second = Pub(port)  # same port, restarted daemon: seq starts at 0 again
        try:
            second.wait_subscribed((TOPIC_FRAME, TOPIC_HEARTBEAT))
            second.heartbeat()  # like the daemon: heartbeats prove it is alive
            for seq in range(3):
                second.frame(seq)
            items = [wait_frame(sub) for _ in range(3)]
        finally:
            second.close()
        assert [i.seq for i in items] == [0, 1, 2]
        assert items[0].new_stream and sub.stats.stream_restarts == 1
        assert sub.stats.gaps == 0 and sub.stats.lost_frames == 0


@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=50), st.integers(0, 1000))
def test_seq_tracker_counts_exactly_the_missing(steps, first):
    seqs = list(np.cumsum([first] + [s + 1 for s in steps]))
    tracker = SeqTracker()
    results = [tracker.observe("s", int(q)) for q in seqs]
    assert results[0] == (0, True)
    assert not any(new for _, new in results[1:])
    assert sum(lost for lost, _ in results) == seqs[-1] - seqs[0] - (len(seqs) - 1)
    assert tracker.observe("s", 0) == (0, True)  # going back is a restart
    assert tracker.observe("t", 1) == (0, True)  # so is a new stream id


# -- stats (pure) -----------------------------------------------------------


def test_stats_functions():
    n = 101
    recv = np.arange(n, dtype=np.int64) * 10_000_000 + 5  # 100 fps
    cols = {
        "capture_t_ns": recv - 9_000_000,
        "dequeue_t_ns": recv - 8_000_000,
        "infer_start_t_ns": recv - 7_000_000,
        "infer_end_t_ns": recv - 2_000_000 + np.arange(n) * 10_000,  # inference 5.00 .. 6.00 ms
        "publish_t_ns": recv - 1_000_000,
        "recv_t_ns": recv,
    }
    assert hstats.fps(recv) == pytest.approx(100.0)
    assert hstats.fps(recv[:1]) is None
    assert hstats.warmup_mask(recv, 0.1).sum() == n - 10
    lat = hstats.stage_latencies_ns(cols)
    assert tuple(lat) == hstats.STAGE_NAMES
    assert np.all(lat["capture_to_receive"] == 9_000_000)
    s = hstats.summarize_ns(lat["inference"])
    assert (s.n, s.min_ms, s.max_ms) == (n, pytest.approx(5.0), pytest.approx(6.0))
    assert s.p50_ms == pytest.approx(5.5) and s.p90_ms == pytest.approx(5.9) and s.p99_ms == pytest.approx(5.99)
    report = hstats.stream_report(cols, warmup_s=0.5)
    assert report["frames"] == n and report["frames_measured"] == n - 50
    assert report["latency_ms"]["inference"]["min_ms"] == pytest.approx(5.5)
    assert hstats.summarize_ns(np.array([], dtype=np.int64)).p99_ms is None
    with pytest.raises(KeyError, match="recv_t_ns"):
        hstats.latency_report({k: v for k, v in cols.items() if k != "recv_t_ns"})


# -- recording --------------------------------------------------------------


def _frame_item(seq: int) -> Received:
    header = make_header(seq)
    return Received("frame", time.monotonic_ns(), header=header, image=image_for(seq))


def test_folder_recording_survives_a_torn_last_line(tmp_path):
    out = tmp_path / "rec"
    rec = FolderRecorder(out)
    for seq in range(3):
        rec.append(_frame_item(seq))
    # simulate a crash mid-write: no close, a half line at the end
    with open(out / FOLDER_INDEX, "a") as f:
        f.write('{"seq": 3, "fi')
    frames, cols = read_folder(out)
    assert len(frames) == 3 and list(cols["seq"]) == [0, 1, 2]
    np.testing.assert_array_equal(frames[2], image_for(2))
    rec.close()
    with pytest.raises(FileExistsError):
        FolderRecorder(out)


@pytest.mark.parametrize("kind", ["npz", "folder", "mp4"])
def test_record_cli_round_trip(tmp_path, kind):
    if kind == "mp4":
        pytest.importorskip("imageio_ffmpeg", reason="writing video needs the 'video' extra (imageio-ffmpeg)")
    out = tmp_path / {"npz": "rec.npz", "folder": "rec", "mp4": "rec.mp4"}[kind]
    n = 12
    with publishing(range(n)) as pub:
        res = spike_host("record", pub.url, "--out", str(out), "--timeout-s", "10")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["frames"] == n and (summary["first_seq"], summary["last_seq"]) == (0, n - 1)
    assert summary["gaps"] == 0 and summary["eos"] is True and summary["stop_reason"] == "eos"
    expected = np.stack([image_for(i) for i in range(n)])
    if kind == "npz":
        frames, cols = read_npz(out)
        np.testing.assert_array_equal(frames, expected)
        assert frames.dtype == np.float32
        assert list(cols["seq"]) == list(range(n)) and set(cols["stream_id"]) == {"s1"}
        assert np.all(cols["recv_t_ns"] >= cols["publish_t_ns"])
    elif kind == "folder":
        frames, cols = read_folder(out)
        np.testing.assert_array_equal(np.stack(frames), expected)
        assert list(cols["seq"]) == list(range(n))
    else:
        import imageio.v2 as imageio

        with imageio.get_reader(out) as reader:
            assert reader.count_frames() == n
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()], "temporary files left behind"


def test_record_cli_frames_limit(tmp_path):
    out = tmp_path / "few.npz"
    with publishing(range(40), eos=False, until_stopped=True) as pub:
        res = spike_host("record", pub.url, "--out", str(out), "--frames", "5")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["frames"] == 5 and summary["stop_reason"] == "frames"
    assert read_npz(out)[0].shape == (5, *SHAPE)


def test_record_cli_nothing_arrives(tmp_path):
    out = tmp_path / "none.npz"
    t0 = time.monotonic()
    res = spike_host("record", f"tcp://127.0.0.1:{free_port()}", "--out", str(out), "--timeout-s", "0.5")
    assert res.returncode != 0 and time.monotonic() - t0 < 15
    assert "nothing recorded" in res.stderr and not out.exists()


# -- stats / watch CLI ---------------------------------------------------------


def test_stats_cli_json(tmp_path):
    n = 30
    with publishing(range(n)) as pub:
        res = spike_host("stats", pub.url, "--seconds", "10", "--warmup-s", "0", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["frames"] == n and report["frames_measured"] == n and report["eos"] is True
    assert report["fps"] > 0 and report["duration_s"] < 10
    assert tuple(report["latency_ms"]) == hstats.STAGE_NAMES
    for stage in report["latency_ms"].values():
        assert stage["n"] == n and set(stage) >= {"p50_ms", "p90_ms", "p99_ms", "max_ms"}
    assert report["latency_ms"]["inference"]["p50_ms"] == pytest.approx(2.0)
    assert report["daemon"]["ring_overrun_planes"] == 0 and report["daemon"]["discontinuities"] == 0
    assert report["subscriber"]["gaps"] == 0 and report["subscriber"]["malformed"] == 0
    assert report["heartbeats"] >= 1


def test_stats_cli_dead_endpoint():
    res = spike_host("stats", f"tcp://127.0.0.1:{free_port()}", "--seconds", "0.5", "--json")
    assert res.returncode == ExitCode.NO_STREAM and "nothing arrived" in res.stderr


def test_watch_cli_prints_lines():
    with publishing(range(10_000), period_s=0.01, eos=False) as pub:
        res = spike_host("watch", pub.url, "--seconds", "1.6", "--interval-s", "0.5")
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) >= 2 and any(ln.startswith("fps") and "capture->recv" in ln for ln in lines), res.stdout


# -- ctl ----------------------------------------------------------------------


@contextmanager
def rep_server(n_requests: int):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    seen: list[dict] = []

    def run() -> None:
        for _ in range(n_requests):
            if not sock.poll(20_000):
                return
            req = msgpack.unpackb(sock.recv())
            seen.append(req)
            ok = req.get("params", {}).get("bad") is None
            reply = {"ok": ok, "cmd": req["cmd"], "params": req.get("params"), "error": None if ok else "bad key"}
            sock.send(msgpack.packb(reply))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{port}", seen
    finally:
        thread.join(25)
        sock.close(linger=0)
        ctx.term()


def test_ctl_cli_against_rep_server():
    with rep_server(3) as (url, seen):
        describe = spike_host("ctl", url, "describe", "--timeout-s", "5")
        setting = spike_host("ctl", url, "set", "gain=2.5", "policy=latest", "--timeout-s", "5")
        failing = spike_host("ctl", url, "set", "bad=1", "--timeout-s", "5")
    assert describe.returncode == 0, describe.stderr
    assert json.loads(describe.stdout) == {"ok": True, "cmd": "describe", "params": None, "error": None}
    assert setting.returncode == 0, setting.stderr
    assert json.loads(setting.stdout)["params"] == {"gain": 2.5, "policy": "latest"}
    assert failing.returncode == ExitCode.BAD_INPUT and "bad key" in failing.stderr
    assert [r["cmd"] for r in seen] == ["describe", "set", "set"]
    usage = spike_host("ctl", url, "set")
    assert usage.returncode == 2 and "KEY=VALUE" in usage.stderr


def test_ctl_cli_dead_endpoint_times_out():
    t0 = time.monotonic()
    res = spike_host("ctl", f"tcp://127.0.0.1:{free_port()}", "health", "--timeout-s", "0.5")
    assert res.returncode == ExitCode.NO_STREAM and "no reply" in res.stderr
    assert time.monotonic() - t0 < 10


# -- end to end with the real daemon --------------------------------------------


def test_end_to_end_with_daemon(start_daemon, tmp_path):
    pytest.importorskip("edge.live.daemon")
    d = start_daemon(["--simulate", "--planes", "800", "--hop", "40", "--policy", "all",
                      "--height", "50", "--width", "80", "--wait-subscribers", "1"])
    describe = spike_host("ctl", d.ctl, "describe", "--timeout-s", "15")
    assert describe.returncode == 0, describe.stderr + d.text()
    info = json.loads(describe.stdout)
    assert info["ok"] is True and info["geometry"] == [50, 80]
    out = tmp_path / "live.npz"
    res = spike_host("record", d.pub, "--out", str(out), "--timeout-s", "20")
    assert res.returncode == 0, res.stderr + d.text()
    summary = json.loads(res.stdout)
    assert summary["eos"] is True and summary["frames"] == summary["eos_frames"] > 0
    assert summary["gaps"] == 0 and summary["malformed"] == 0
    frames, cols = read_npz(out)
    assert frames.shape == (summary["frames"], 50, 80)
    assert list(cols["seq"]) == list(range(summary["frames"]))
    assert set(cols["stream_id"]) == {info["stream_id"]}
    assert d.wait(20) == 0, d.text()


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_record_folder_survives_kill_and_stops_cleanly_on_sigterm(tmp_path, sig):
    import signal

    out = tmp_path / "rec"
    with publishing(range(100_000), period_s=0.005, eos=False) as pub:
        proc = subprocess.Popen([sys.executable, "-m", "host", "record", pub.url, "--out", str(out)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                index = out / FOLDER_INDEX
                if index.exists() and index.read_text().count("\n") >= 5:
                    break
                time.sleep(0.05)
            proc.send_signal(getattr(signal, sig))
            stdout, _ = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    frames, cols = read_folder(out)
    assert len(frames) >= 5
    for frame, seq in zip(frames, cols["seq"]):
        np.testing.assert_array_equal(frame, image_for(int(seq)))
    if sig == "SIGTERM":
        assert proc.returncode == 0
        summary = json.loads(stdout)
        assert summary["stop_reason"] == "interrupt" and summary["frames"] == len(frames)
