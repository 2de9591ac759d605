"""The host tools under hostile input and abrupt stops: a malicious publisher (out-of-range integers, absurd
geometries, oversize messages, garbage) among good frames, message-size limits, an ``.npz`` recording that
streams to disk, double signals during its final write, and statistics in fixed memory.

Everything runs against real sockets on loopback and real ``spike-host`` subprocesses.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.protocol.wire import (TOPIC_EOS, TOPIC_FRAME, TOPIC_HEARTBEAT, TOPICS, EndOfStream, FrameHeader, Heartbeat,
                                int_fields)
from host import stats as hstats
from host.record import (FOLDER_INDEX, FolderRecorder, NpzRecorder, crc32_replace_prefix, crc32_shift, read_folder,
                         read_npz)
from host.subscriber import Received
from host.subscriber import DEFAULT_MAX_MESSAGE_BYTES, Subscriber, message_limit_bytes
from host_harness import REPO, SHAPE, Pub, image_for, make_header, publishing, spike_host, wait_frame

U64_MAX = 2**64 - 1


def _pack(d) -> bytes:
    return msgpack.packb(d, use_bin_type=True)


def bad_messages() -> tuple[list[list[bytes]], list[list[bytes]]]:
    """Crafted messages a hostile publisher sends: ``(before the first frame, after it)``. Every one must be
    counted as malformed and skipped; none may stop or corrupt a tool."""
    good = make_header(0).to_dict()
    payload = image_for(0).tobytes()
    heartbeat = Heartbeat("s1", time.monotonic_ns(), 0, {"fps": 1.0}).to_dict()
    eos = EndOfStream("s1", time.monotonic_ns(), 0, 1, "end").to_dict()
    early = [[TOPIC_FRAME, _pack({**good, name: U64_MAX}), payload] for name in int_fields(FrameHeader)]
    early += [[TOPIC_HEARTBEAT, _pack({**heartbeat, name: U64_MAX}), b""] for name in int_fields(Heartbeat)]
    early += [[TOPIC_EOS, _pack({**eos, name: U64_MAX}), b""] for name in int_fields(EndOfStream)]
    early += [
        [TOPIC_FRAME, _pack({**good, "seq": -5}), payload],
        [TOPIC_FRAME, _pack({**good, "shape": [100_000, 100_000]}), payload],
        [TOPIC_FRAME, _pack({**good, "rate_hz": math.nan}), payload],
        [TOPIC_FRAME, _pack({**good, "capture_t_ns": -(2**63)}), payload],
        [TOPIC_HEARTBEAT, _pack({**heartbeat, "stats": {b"fps": 1.0}}), b""],  # a bin key: JSON output would fail
        [TOPIC_EOS, _pack({**eos, "last_seq": -7}), b""],
    ]
    # valid alone, but the stream declared 16x24 float32 with its first frame
    late = [[TOPIC_FRAME, _pack({**good, "shape": [SHAPE[1], SHAPE[0]]}), payload],
            [TOPIC_FRAME, _pack({**good, "dtype": "uint8", "shape": [SHAPE[0], SHAPE[1] * 4]}), payload]]
    return early, late


def _hostile_stream(n: int):
    early, late = bad_messages()
    return publishing(range(n), inject={0: early, 3: late}), len(early) + len(late)


# -- malicious publisher ------------------------------------------------------------------------------


def test_subscriber_counts_and_skips_every_crafted_message():
    n = 8
    stream, n_bad = _hostile_stream(n)
    with stream as pub, Subscriber(pub.url, topics=("frame", "eos"), timeout_s=10) as sub:
        items = []
        while not items or items[-1].kind != "eos":
            items.append(sub.recv())
    frames = [i for i in items if i.kind == "frame"]
    assert [f.seq for f in frames] == list(range(n))
    for f in frames:
        np.testing.assert_array_equal(f.image, image_for(f.seq))
    s = sub.stats
    assert s.malformed == n_bad, s.last_error
    assert (s.gaps, s.lost_frames, s.stream_restarts, s.eos) == (0, 0, 0, 1)


def test_stats_cli_reports_despite_crafted_messages():
    n = 20
    stream, n_bad = _hostile_stream(n)
    with stream as pub:
        res = spike_host("stats", pub.url, "--seconds", "15", "--warmup-s", "0", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["frames"] == n and report["eos"] is True
    assert report["subscriber"]["malformed"] == n_bad and report["subscriber"]["gaps"] == 0
    assert all(stage["n"] == n for stage in report["latency_ms"].values())
    assert report["latency_ms"]["inference"]["max_ms"] == pytest.approx(2.0)


@pytest.mark.parametrize("kind", ["npz", "folder"])
def test_record_cli_keeps_every_good_frame_despite_crafted_messages(tmp_path, kind):
    n = 20
    out = tmp_path / ("rec.npz" if kind == "npz" else "rec")
    stream, n_bad = _hostile_stream(n)
    with stream as pub:
        res = spike_host("record", pub.url, "--out", str(out), "--timeout-s", "15")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["frames"] == n and summary["malformed"] == n_bad and summary["stop_reason"] == "eos"
    frames, cols = read_npz(out) if kind == "npz" else read_folder(out)
    assert list(cols["seq"]) == list(range(n))
    np.testing.assert_array_equal(np.stack(frames), np.stack([image_for(i) for i in range(n)]))


garbage_parts = st.one_of(
    st.lists(st.binary(max_size=40), min_size=1, max_size=4),
    st.tuples(st.sampled_from(TOPICS + (b"frame-x",)),
              st.dictionaries(st.sampled_from(sorted(FrameHeader.__dataclass_fields__) + ["kind", "stats"]),
                              st.one_of(st.integers(-(2**63), U64_MAX), st.floats(), st.text(max_size=5),
                                        st.binary(max_size=5), st.lists(st.integers(0, 2**20), max_size=3)),
                              max_size=8),
              st.binary(max_size=64)).map(lambda t: [t[0], _pack(t[1]), t[2]]),
    st.tuples(st.sampled_from(list(FrameHeader.__dataclass_fields__)),
              st.one_of(st.integers(-(2**63), U64_MAX), st.floats(), st.text(max_size=5), st.none()))
    .map(lambda kv: [TOPIC_FRAME, _pack({**make_header(0, stream_id="g").to_dict(), kv[0]: kv[1]}),
                     image_for(0).tobytes()]),
)


def test_subscriber_never_dies_on_garbage():
    """Hypothesis-made garbage, then a marker frame: the marker always arrives, nothing raises."""
    pub = Pub()
    marker = itertools.count()
    try:
        with Subscriber(pub.url, timeout_s=10) as sub:
            pub.wait_subscribed((TOPIC_FRAME, TOPIC_HEARTBEAT, TOPIC_EOS))

            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
            @given(st.lists(garbage_parts, min_size=1, max_size=6))
            def garbage_then_marker(messages):
                for parts in messages:
                    pub.raw(parts)
                seq = next(marker)
                pub.frame(seq, stream_id="marker")
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    item = wait_frame(sub, deadline - time.monotonic())
                    if item.header.stream_id == "marker" and item.seq == seq:
                        return
                raise AssertionError(f"marker {seq} did not arrive; stats {sub.stats}")

            garbage_then_marker()
            assert sub.stats.malformed > 0
    finally:
        pub.close()


# -- message size ---------------------------------------------------------------------------------------


def test_limit_follows_the_declared_geometry_without_losing_a_frame():
    n = 300
    with publishing(range(n), period_s=0.0005) as pub, Subscriber(pub.url, topics=("frame", "eos"), timeout_s=10) as sub:
        assert sub.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES
        seqs = []
        while True:
            item = sub.recv()
            if item.kind == "eos":
                break
            seqs.append(item.seq)
        assert sub.max_message_bytes == message_limit_bytes(SHAPE, "float32")
    assert seqs == list(range(n))  # the swap to the new limit neither lost nor repeated a frame
    assert (sub.stats.gaps, sub.stats.stream_restarts, sub.stats.malformed) == (0, 0, 0)


def _send_until_marker(pub: Pub, sub: Subscriber, first_seq: int, **frame_kw) -> list:
    """Send frames from ``first_seq`` until one arrives (a refused message drops the connection for a moment)."""
    got = []
    deadline = time.monotonic() + 15
    seq = first_seq
    while not got and time.monotonic() < deadline:
        pub.heartbeat(seq, stream_id=frame_kw.get("stream_id", "s1"))
        pub.frame(seq, **frame_kw)
        seq += 1
        item = sub.next(0.2)
        while item is not None:
            if item.kind == "frame":
                got.append(item)
            item = sub.next(0.05)
    assert got, f"no frame from {first_seq} on arrived; stats {sub.stats}"
    return got


def _pump_until_limit(pub: Pub, sub: Subscriber, first_seq: int, limit: int, **frame_kw) -> int:
    """Keep frames flowing until the subscriber's socket swap to ``limit`` is done; returns the next seq."""
    deadline = time.monotonic() + 10
    seq = first_seq
    while sub.max_message_bytes != limit and time.monotonic() < deadline:
        pub.frame(seq, **frame_kw)
        seq += 1
        sub.next(0.02)
    assert sub.max_message_bytes == limit
    return seq


def test_oversize_messages_are_refused_before_and_after_the_geometry_is_known():
    pub = Pub()
    try:
        with Subscriber(pub.url, timeout_s=5) as sub:
            pub.wait_subscribed((TOPIC_FRAME, TOPIC_HEARTBEAT))
            big = np.zeros((2560, 4096), np.float32)  # 40 MiB: over the default limit
            pub.raw([TOPIC_FRAME, _pack(make_header(0, shape=big.shape).to_dict()), big.tobytes()])
            got = _send_until_marker(pub, sub, 1)
            assert all(item.image.shape == SHAPE for item in got)
            _pump_until_limit(pub, sub, got[-1].seq + 1, message_limit_bytes(SHAPE, "float32"))
            # the stream declared 16x24 float32: a 256x256 frame (256 KiB) now exceeds the limit
            wide = np.zeros((256, 256), np.float32)
            pub.raw([TOPIC_FRAME, _pack(make_header(100, shape=wide.shape).to_dict()), wide.tobytes()])
            got = _send_until_marker(pub, sub, 101)
            assert all(item.image.shape == SHAPE and item.seq > 100 for item in got)
            assert sub.stats.malformed == 0  # refused by the socket, never decoded
            # a new stream (a restarted daemon) may declare a larger geometry: heartbeats of it reset the limit
            got = _send_until_marker(pub, sub, 0, stream_id="s2", shape=(256, 256))
            assert got[-1].header.stream_id == "s2" and got[-1].image.shape == (256, 256)
            _pump_until_limit(pub, sub, got[-1].seq + 1, message_limit_bytes((256, 256), "float32"),
                              stream_id="s2", shape=(256, 256))
    finally:
        pub.close()


# ``spike-host`` that writes its own peak resident memory (VmHWM of its process image, in kB) to a file at
# exit. (The kernel's ru_maxrss of a child also counts the forking test process's pages before exec.)
_MEASURED = (
    "import atexit, os, runpy, sys\n"
    "def _report():\n"
    "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "    open(os.environ['PEAK_RSS_FILE'], 'w').write(hwm)\n"
    "atexit.register(_report)\n"
    "sys.argv[0] = 'spike-host'\n"
    "runpy.run_module('host', run_name='__main__')\n"
)


def spike_host_measured(tmp_path, *args: str) -> tuple[subprocess.Popen, Path]:
    """Start ``spike-host ARGS``; its peak RSS (kB) lands in the returned file when it exits."""
    report = tmp_path / "peak_rss_kb"
    proc = subprocess.Popen([sys.executable, "-c", _MEASURED, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PEAK_RSS_FILE": str(report)})
    return proc, report


def test_record_cli_memory_is_bounded_under_64_mb_frames(tmp_path):
    out = tmp_path / "rec.npz"
    big = np.zeros((4096, 4096), np.float32)  # 64 MiB
    big_parts = [TOPIC_FRAME, _pack(make_header(0, shape=big.shape).to_dict()), big.tobytes()]
    with publishing(range(60), period_s=0.01, inject={0: [big_parts] * 3, 10: [big_parts] * 5}) as pub:
        proc, report = spike_host_measured(tmp_path, "record", pub.url, "--out", str(out))
        stdout, stderr = proc.communicate(timeout=60)
    code, peak_mb = proc.returncode, int(report.read_text()) / 1024
    assert code in (0, 7), stderr  # 7: the refused messages cost the stream its end-of-stream
    summary = json.loads(stdout)
    frames, cols = read_npz(out)
    assert frames.shape[1:] == SHAPE and len(frames) == summary["frames"] >= 20
    assert summary["disconnects"] >= 1
    assert peak_mb < 100, f"spike-host record peaked at {peak_mb:.0f} MiB"


# -- .npz streamed to disk, and signals ---------------------------------------------------------------------

BIG_SHAPE = (250, 400)  # a Vidar frame: 400 kB of float32


def test_npz_recording_streams_with_flat_memory(tmp_path):
    n = 600  # 240 MB of frames
    out = tmp_path / "big.npz"
    with publishing(range(n), shape=BIG_SHAPE, period_s=0.001) as pub:
        proc, report = spike_host_measured(tmp_path, "record", pub.url, "--out", str(out), "--timeout-s", "30")
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    peak_mb = int(report.read_text()) / 1024
    summary = json.loads(stdout)
    frames, cols = read_npz(out)
    assert summary["frames"] == n and frames.shape == (n, *BIG_SHAPE) and list(cols["seq"]) == list(range(n))
    for seq in (0, n // 2, n - 1):
        np.testing.assert_array_equal(frames[seq], image_for(seq, BIG_SHAPE))
    assert peak_mb < 120, f"recording {n * 0.4:.0f} MB peaked at {peak_mb:.0f} MiB"
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None  # every member's CRC-32 is right
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz", "peak_rss_kb"], "staging or temporary files left"


@pytest.mark.parametrize(
    "kind, signals",
    [("npz", ("SIGINT", "SIGTERM")), ("npz", ("SIGTERM", "SIGINT")), ("npz", ("SIGINT", "SIGINT", "SIGINT")),
     ("npz", ("SIGTERM", "SIGTERM")), ("folder", ("SIGTERM", "SIGINT"))],
)
def test_record_cli_any_signals_in_any_order_leave_a_readable_recording(tmp_path, kind, signals):
    out = tmp_path / ("rec.npz" if kind == "npz" else "rec")
    with publishing(range(100_000), shape=BIG_SHAPE, period_s=0.0005, eos=False) as pub:
        proc = subprocess.Popen([sys.executable, "-m", "host", "record", pub.url, "--out", str(out)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while pub.sent_frames < 300 and time.monotonic() < deadline:  # 120 MB: the final write takes a while
                time.sleep(0.02)
            assert pub.sent_frames >= 300
            for i, name in enumerate(signals):
                proc.send_signal(getattr(signal, name))
                time.sleep(0.03 * i)  # the second one lands while the recording is being finished
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["stop_reason"] == "interrupt" and summary["signals"] >= 1
    frames, cols = read_npz(out) if kind == "npz" else read_folder(out)
    assert len(frames) == summary["frames"] >= 100
    if kind == "npz":
        with zipfile.ZipFile(out) as zf:
            assert zf.testzip() is None
    for i in (0, len(frames) - 1):
        np.testing.assert_array_equal(frames[i], image_for(int(cols["seq"][i]), BIG_SHAPE))
    assert not [p for p in tmp_path.rglob(".*")], "staging or temporary files left behind"


# -- bounded statistics ------------------------------------------------------------------------------------


def _timestamps(i: int, rng: np.random.Generator) -> dict[str, int]:
    recv = 1_000_000_000 + i * 1_000_000  # 1,000 frames/s
    inference = int(rng.integers(1_000_000, 3_000_000))  # 1..3 ms, uniform
    return {"capture_t_ns": recv - 5_000_000, "dequeue_t_ns": recv - 4_000_000,
            "infer_start_t_ns": recv - 3_500_000, "infer_end_t_ns": recv - 3_500_000 + inference,
            "publish_t_ns": recv - 500_000, "recv_t_ns": recv}


def test_stream_accumulator_equals_the_column_report_while_frames_fit():
    rng = np.random.default_rng(1)
    rows = [_timestamps(i, rng) for i in range(3000)]
    acc = hstats.StreamAccumulator(warmup_s=0.5, capacity=4096)
    for row in rows:
        acc.add(row)
    cols = {name: np.array([r[name] for r in rows], dtype=np.int64) for name in hstats.TIMESTAMP_FIELDS}
    expected = hstats.stream_report(cols, warmup_s=0.5)
    got = acc.report()
    assert {k: got[k] for k in ("frames", "frames_measured", "warmup_s")} == \
        {k: expected[k] for k in ("frames", "frames_measured", "warmup_s")}
    assert got["fps"] == pytest.approx(expected["fps"])
    for stage, summary in expected["latency_ms"].items():
        assert got["latency_ms"][stage] == pytest.approx(summary), stage


def test_stream_accumulator_memory_does_not_grow_with_frames():
    rng = np.random.default_rng(2)
    capacity = 2048
    acc = hstats.StreamAccumulator(capacity=capacity)
    for i in range(capacity):
        acc.add(_timestamps(i, rng))
    buffers = {name: (r.sample.base if r.sample.base is not None else r.sample) for name, r in acc.stages.items()}
    sizes = {name: b.nbytes for name, b in buffers.items()}
    for i in range(capacity, 25 * capacity):
        acc.add(_timestamps(i, rng))
    for name, r in acc.stages.items():
        assert len(r.sample) == capacity and r.n == 25 * capacity
        assert (r.sample.base if r.sample.base is not None else r.sample) is buffers[name]
        assert buffers[name].nbytes == sizes[name]
    report = acc.report()
    inference = report["latency_ms"]["inference"]
    assert report["frames"] == 25 * capacity and report["fps"] == pytest.approx(1000.0)
    assert 1.0 <= inference["min_ms"] and inference["max_ms"] < 3.0  # exact extremes
    assert inference["p50_ms"] == pytest.approx(2.0, abs=0.1)  # the sample is uniform: p50 of U(1, 3) ms
    assert inference["p90_ms"] == pytest.approx(2.8, abs=0.1)


# -- the .npz writer's pieces -----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=3000), st.data())
def test_crc32_of_a_replaced_prefix_equals_zlib(prefix, rest, data):
    other = data.draw(st.binary(min_size=len(prefix), max_size=len(prefix)))
    assert crc32_shift(zlib.crc32(prefix), len(rest)) ^ zlib.crc32(rest) == zlib.crc32(prefix + rest)
    assert crc32_replace_prefix(zlib.crc32(prefix + rest), prefix, other, len(rest)) == zlib.crc32(other + rest)


@pytest.mark.parametrize("n, dtype", [(0, "float32"), (1, "float16"), (37, "uint8"), (1000, "float32")])
def test_npz_recorder_writes_what_numpy_reads(tmp_path, n, dtype):
    out = tmp_path / "r.npz"
    rec = NpzRecorder(out)
    images = [image_for(i, (7, 5), dtype) for i in range(n)]
    for i, image in enumerate(images):
        rec.append(Received("frame", 10 + i, header=make_header(i, shape=(7, 5), dtype=dtype), image=image))
        if i == 0:
            assert rec.partial_path is not None and rec.partial_path.name.startswith(".r.npz.")
    assert not out.exists()
    rec.close()
    frames, cols = read_npz(out)
    assert frames.shape == ((n, 7, 5) if n else (0, 0, 0)) and list(cols["recv_t_ns"]) == [10 + i for i in range(n)]
    if n:
        assert frames.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(frames, np.stack(images))
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]


def test_npz_recorder_abort_leaves_nothing(tmp_path):
    rec = NpzRecorder(tmp_path / "r.npz")
    rec.append(Received("frame", 1, header=make_header(0), image=image_for(0)))
    rec.abort()
    assert list(tmp_path.iterdir()) == []


def test_folder_recording_with_an_unfit_line_stays_readable(tmp_path, caplog):
    """A folder written before decode checked ranges (a 2**64-1 in a line) is read without that line."""
    out = tmp_path / "rec"
    rec = FolderRecorder(out)
    for seq in range(3):
        rec.append(Received("frame", 5, header=make_header(seq), image=image_for(seq)))
    rec.close()
    lines = (out / FOLDER_INDEX).read_text().splitlines()
    bad = json.loads(lines[1])
    bad["capture_t_ns"] = U64_MAX
    (out / FOLDER_INDEX).write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n")
    frames, cols = read_folder(out)
    assert list(cols["seq"]) == [0, 2] and len(frames) == 2
    np.testing.assert_array_equal(frames[1], image_for(2))
    assert "line 2 skipped" in caplog.text
