"""Raw recording while streaming (``spike-edge run --record``) end to end, and recording folders as inputs:
real daemons on loopback, real files, real signals.

The stream a looping replay delivers is known exactly (stream plane ``i`` is plane ``i % n`` of the
clip), so whatever the recorder kept can be checked plane for plane at its stream index.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from edge.cli.processes import EDGE, loopback_urls
from edge.live.config import DaemonConfig, parse_record_buffer_mb, parse_record_max_mb, parse_record_min_free_mb
from edge.live.config import parse_record_segment_mb
from edge.live.recorder import MB, RecordSettings, _Counters, _Recording
from edge.live.ring import SpikeRing, WriterPolicy, WriterState
from edge.protocol.client import ControlTimeout
from edge.protocol.client import request as control_request
from edge.protocol.wire import EndOfStream, Heartbeat, decode
from edge.reconstruction.backends import make_reconstructor
from edge.reconstruction.windows import keys_every, window_range
from firmware_io.contract import Geometry
from firmware_io.plane_range import MissingCause
from firmware_io.recording import open_recording
from firmware_io.dat import write_dat
from firmware_io.segments import SegmentedWriter

GEOM = Geometry(32, 48)  # 192 bytes per plane


def write_clip(path: Path, geometry: Geometry, n_planes: int, seed: int = 0) -> Path:
    return write_dat(path, (np.random.default_rng(seed).random((n_planes, *geometry.shape)) < 0.3).astype(np.uint8))


def live_args(path: Path, geometry: Geometry, rate_hz: int, *extra: str) -> list[str]:
    """A replay paced like a camera, looping: the daemon's live mode (the capture never waits)."""
    return ["--replay", str(path), "--realtime", "--loop", "--rate-hz", str(rate_hz), "--height",
            str(geometry.height), "--width", str(geometry.width), *extra]


def sub_socket(ctx: zmq.Context, url: str, rcvhwm: int = 1000) -> zmq.Socket:
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, rcvhwm)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(url)
    return s


def clip_planes(path: Path, geometry: Geometry) -> np.ndarray:
    with open_recording(path, geometry) as rec:
        return np.array(rec.packed())


def check_against_stream(folder: Path, clip: np.ndarray) -> None:
    """Every plane the folder holds is the looping clip's plane at its stream index."""
    with open_recording(folder) as rec:
        assert rec.recorded_planes > 0
        for start, stop in rec.present_runs():
            index = (rec.first_plane + np.arange(start, stop)) % len(clip)
            assert np.array_equal(rec.packed(start, stop), clip[index]), f"planes [{start}, {stop}) differ"


def wait_for(d, predicate, what: str, timeout_s: float = 20.0) -> dict:
    """Poll ``stats`` until ``predicate(stats)``; the stats then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = d.request("stats")["stats"]
        if predicate(stats):
            return stats
        time.sleep(0.05)
    pytest.fail(f"{what} not seen within {timeout_s} s; last stats {stats}; log:\n{d.text()}")


def info_json(path: Path, *extra: str) -> dict:
    r = subprocess.run([*EDGE, "info", str(path), "--json", *extra], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def reconstruct(path: Path, out: Path, *extra: str) -> dict:
    r = subprocess.run([*EDGE, "reconstruct", str(path), "--method", "tfp", "--every", "40", "--out", str(out), *extra],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- the settings -----------------------------------------------------------------------------------------
def test_record_options_are_checked_and_given_in_bytes():
    assert parse_record_segment_mb("0.5") == 0.5 and parse_record_min_free_mb(0) == 0.0
    for parse, bad in ((parse_record_segment_mb, "0"), (parse_record_buffer_mb, -1), (parse_record_max_mb, "lots"),
                       (parse_record_min_free_mb, -1.0)):
        with pytest.raises(ValueError) as error:
            parse(bad)
        assert repr(bad) in str(error.value)
    config = DaemonConfig.from_options({"replay": "x.dat", "record": "out", "record_segment_mb": 2.5,
                                        "record_max_mb": 10.0})
    assert config.recording == RecordSettings(folder="out", segment_bytes=2_500_000, buffer_bytes=512 * MB,
                                              max_bytes=10_000_000, min_free_bytes=1024 * MB)
    assert DaemonConfig.from_options({"replay": "x.dat"}).recording is None
    with pytest.raises(ValueError, match="--record-segment-mb, --record-max-mb apply with --record DIR"):
        DaemonConfig.from_options({"replay": "x.dat", "record_segment_mb": 1.0, "record_max_mb": 1.0},
                                  given={"record_segment_mb", "record_max_mb"})


def test_bad_record_settings_exit_with_bad_input(tmp_path):
    clip = write_clip(tmp_path / "clip.dat", GEOM, 200)
    base = [*EDGE, "run", "--replay", str(clip), "--height", "32", "--width", "48"]
    r = subprocess.run([*base, "--record-segment-mb", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--record-segment-mb applies with --record DIR" in r.stderr, r.stderr
    taken = tmp_path / "taken"
    with SegmentedWriter(taken, GEOM, 40_000.0, segment_bytes=10_000) as w:
        w.write(0, clip_planes(clip, GEOM)[:10])
    pub, ctl = loopback_urls()
    r = subprocess.run([*base, "--record", str(taken), "--bind", pub, "--control", ctl], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "already holds a recording" in r.stderr, r.stderr


# -- the recorder's loop on a real ring, in a thread -------------------------------------------------------
class RecorderThread:
    """``_Recording`` (the recorder process's loop) over a real ring and a real folder, in a thread."""

    def __init__(self, ring: SpikeRing, folder: Path) -> None:
        self.writer = SegmentedWriter(folder, GEOM, 20_000.0, segment_bytes=192 * 100)
        self.counters, self.events = _Counters([0] * 8), queue.Queue()
        loop = _Recording(ring, self.writer, self.counters, self.events, {"flag": False}, os.getppid())
        self.thread = threading.Thread(target=loop.run)

    def caught_up(self, ring: SpikeRing, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.counters.get("cursor") < ring.committed and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.counters.get("cursor") == ring.committed

    def end(self, ring: SpikeRing) -> None:
        ring.set("state", int(WriterState.ENDED))
        self.thread.join(10)
        assert not self.thread.is_alive()


def write_stream(ring: SpikeRing, clip: np.ndarray, start: int, stop: int, pace: RecorderThread | None = None) -> None:
    """Planes ``[start, stop)`` of the looping ``clip`` in blocks of 10; ``pace``: let it catch up after each."""
    for first in range(start, stop, 10):
        ring.write(first, clip[np.arange(first, min(first + 10, stop)) % len(clip)], time.monotonic_ns())
        if pace is not None:
            pace.caught_up(ring)


def test_an_outage_longer_than_the_buffer_is_a_source_gap_not_a_drop(tmp_path):
    clip = np.random.default_rng(2).integers(0, 256, (500, GEOM.plane_bytes), dtype=np.uint8)
    ring = SpikeRing.create(64, GEOM, policy=WriterPolicy.OVERWRITE)
    try:
        rec = RecorderThread(ring, tmp_path / "rec")
        rec.thread.start()
        write_stream(ring, clip, 0, 100, pace=rec)
        write_stream(ring, clip, 5000, 5050, pace=rec)  # the source skipped 4,900 planes: 76 buffers' worth
        rec.end(ring)
    finally:
        ring.close()
    assert rec.counters.get("source_gap_planes") == 4900
    assert rec.counters.get("dropped_planes") == rec.counters.get("drops") == 0
    assert [rec.events.get_nowait()[0] for _ in range(rec.events.qsize())] == ["record-ended"]
    with open_recording(tmp_path / "rec") as got:
        assert [(g.start, g.stop, g.cause) for g in got.gaps] == [(100, 5000, MissingCause.SOURCE_GAP)]
    check_against_stream(tmp_path / "rec", clip)


def test_planes_overwritten_before_the_recorder_read_them_are_counted_drops(tmp_path):
    clip = np.random.default_rng(3).integers(0, 256, (500, GEOM.plane_bytes), dtype=np.uint8)
    ring = SpikeRing.create(64, GEOM, policy=WriterPolicy.OVERWRITE)
    try:
        rec = RecorderThread(ring, tmp_path / "rec")
        write_stream(ring, clip, 0, 100)
        rec.thread.start()
        rec.caught_up(ring)  # it started 100 planes late, with room for 64: drops, then records
        write_stream(ring, clip, 100, 130, pace=rec)
        write_stream(ring, clip, 140, 200, pace=rec)  # and a source gap it sees in its buffer
        rec.end(ring)
    finally:
        ring.close()
    kind, text = rec.events.get_nowait()
    assert kind == "record-dropped" and "dropped 68 planes" in text
    assert (rec.counters.get("dropped_planes"), rec.counters.get("drops")) == (68, 1)  # resumed half a buffer back
    assert rec.counters.get("source_gap_planes") == 10
    with open_recording(tmp_path / "rec") as got:
        assert got.first_plane == 68 and [(g.start, g.stop, g.cause) for g in got.gaps] == [(62, 72, MissingCause.SOURCE_GAP)]
    check_against_stream(tmp_path / "rec", clip)


# -- recording ------------------------------------------------------------------------------------------
def test_recording_a_deterministic_replay_gives_back_the_source_bytes(start_daemon, tmp_path):
    clip = write_clip(tmp_path / "clip.dat", Geometry(48, 80), 1234)
    folder = tmp_path / "rec"
    d = start_daemon(["--replay", str(clip), "--height", "48", "--width", "80", "--ring-planes", "300",
                      "--record", str(folder), "--record-segment-mb", "0.1", "--record-buffer-mb", "0.05",
                      "--wait-subscribers", "0"])  # nobody subscribes: the recording is what is checked
    assert d.wait(60) == 0, d.text()
    dats = sorted(folder.glob("segment-*.dat"))
    assert len(dats) == 6, "0.1 MB segments of 480-byte planes: 208 planes each"
    joined = hashlib.sha256(b"".join(p.read_bytes() for p in dats)).hexdigest()
    assert joined == hashlib.sha256(clip.read_bytes()).hexdigest()
    for dat in dats:
        meta = json.loads(dat.with_suffix(".json").read_text())
        assert meta["status"] == "closed" and meta["sha256"] == hashlib.sha256(dat.read_bytes()).hexdigest()
        assert (meta["height"], meta["width"], meta["rate_hz"], meta["gaps"]) == (48, 80, 40_000.0, [])
        assert meta["stream_id"] and meta["source"] == f"replay {clip}"
    assert "recorded 1234 planes" in d.text() and "recording ended" in d.text()
    info = info_json(folder)  # the folder reads as the file it recorded
    file_info = info_json(clip, "--height", "48", "--width", "80")
    assert (file_info.pop("layout"), file_info.pop("offset_bytes")) == ("dat", 0)  # a raw file's own keys
    assert info == {**file_info, "path": str(folder), "format": "folder", "segments": 6, "open_segments": 0,
                    "first_plane": 0, "gaps": []}
    summary = reconstruct(folder, tmp_path / "from_folder.npy")
    reconstruct(clip, tmp_path / "from_file.npy", "--height", "48", "--width", "80")
    assert summary["skipped_windows"] == 0
    assert np.array_equal(np.load(tmp_path / "from_folder.npy"), np.load(tmp_path / "from_file.npy"))


def test_a_quota_stops_the_recording_with_a_counted_event_and_the_stream_goes_on(start_daemon, tmp_path):
    clip = write_clip(tmp_path / "clip.dat", GEOM, 400)
    folder = tmp_path / "rec"
    d = start_daemon(live_args(clip, GEOM, 20000, "--record", str(folder), "--record-max-mb", "0.2"))
    ctx = zmq.Context()
    try:
        sock = sub_socket(ctx, d.pub)
        stats = wait_for(d, lambda s: s["record_state"] == "stopped", "the recording stopping at its quota")
        assert stats["record_bytes"] == (200_000 // 192) * 192 and stats["record_planes"] == 200_000 // 192
        health = d.request("health")
        assert health["record_state"] == "stopped" and "quota" in health["record_stop_reason"]
        assert any(e.startswith("record-stopped: ") for e in health["recent_events"]), health
        deadline = time.monotonic() + 5
        while health["record_alive"] and time.monotonic() < deadline:  # the recorder ends once stopped
            time.sleep(0.05)
            health = d.request("health")
        assert not health["record_alive"]
        frames_then = stats["frames"]
        heartbeats = []  # the ones queued before the stop say "recording"; a later one must say "stopped"
        deadline = time.monotonic() + 5
        while not (heartbeats and heartbeats[-1]["record_state"] == "stopped") and time.monotonic() < deadline:
            if sock.poll(50):
                msg = decode(sock.recv_multipart())
                if isinstance(msg, Heartbeat):
                    heartbeats.append(msg.stats)
        assert heartbeats and heartbeats[-1]["record_state"] == "stopped", heartbeats[-1:]
        assert heartbeats[-1]["record_planes"] == stats["record_planes"]
        wait_for(d, lambda s: s["frames"] > frames_then + 20, "frames after the recording stopped")
        sock.close(0)
    finally:
        ctx.destroy(0)
    d.terminate(within_s=2.0)
    assert sum(p.stat().st_size for p in folder.glob("*.dat")) <= 200_000
    check_against_stream(folder, clip_planes(clip, GEOM))
    assert info_json(folder)["recorded_planes"] == 200_000 // 192


def test_a_recorder_that_falls_behind_drops_planes_counted_and_the_stream_goes_on(start_daemon, tmp_path):
    """The recorder is stopped (SIGSTOP) longer than its 0.1 MB buffer lasts: the capture overwrites its
    buffer meanwhile, it drops what it lost when it resumes, and says so everywhere."""
    clip = write_clip(tmp_path / "clip.dat", GEOM, 400)
    folder = tmp_path / "rec"
    d = start_daemon(live_args(clip, GEOM, 20000, "--record", str(folder), "--record-buffer-mb", "0.1"))
    wait_for(d, lambda s: s["record_planes"] > 2000, "planes recorded")
    pid = d.request("health")["record_pid"]
    before = d.request("stats")["stats"]
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(d, lambda s: s["frames"] > before["frames"] + 200, "frames while the recorder is stopped")
        assert d.request("stats")["stats"]["record_behind_planes"] > 520  # more than its buffer holds
    finally:
        os.kill(pid, signal.SIGCONT)
    stats = wait_for(d, lambda s: s["record_drops"] >= 1, "a counted drop")
    assert stats["record_state"] == "recording" and stats["record_dropped_planes"] > 0
    wait_for(d, lambda s: s["record_planes"] > stats["record_planes"] + 2000, "recording going on after the drop")
    events = d.request("health")["recent_events"]
    assert any(e.startswith("record-dropped: the recorder fell behind and dropped") for e in events), events
    d.terminate(within_s=2.0)
    assert "record-dropped" in d.text()
    with open_recording(folder) as rec:
        dropped = [g for g in rec.gaps if g.cause is MissingCause.DROPPED]
        assert dropped and rec.open_segments == 0
        assert sum(g.n_planes for g in dropped) >= stats["record_dropped_planes"]
    check_against_stream(folder, clip_planes(clip, GEOM))


def test_sigkill_mid_recording_leaves_a_folder_info_and_reconstruct_read(tmp_path):
    clip = write_clip(tmp_path / "clip.dat", GEOM, 400)
    folder = tmp_path / "rec"
    pub, ctl = loopback_urls()
    with open(tmp_path / "daemon.log", "wb") as log_f:
        proc = subprocess.Popen([*EDGE, "run", *live_args(clip, GEOM, 20000, "--record", str(folder),
                                                          "--record-segment-mb", "0.05"),
                                 "--bind", pub, "--control", ctl],
                                stdout=log_f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        recorded = 0
        while recorded < 3000 and time.monotonic() < deadline:
            try:
                recorded = control_request(ctl, {"cmd": "stats"}, timeout_s=1.0)["stats"]["record_planes"]
            except ControlTimeout:
                pass
            time.sleep(0.05)
        assert recorded >= 3000, (tmp_path / "daemon.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the daemon, its capture and its recorder at once: a crash
        proc.wait(10)
        for leftover in glob.glob(f"/dev/shm/spkring-{proc.pid}-*"):  # nobody was left to remove the rings
            os.unlink(leftover)
    info = info_json(folder)
    assert info["open_segments"] >= 1 and info["recorded_planes"] >= 3000 and info["format"] == "folder"
    assert info["gaps"] == []
    clip_packed = clip_planes(clip, GEOM)
    check_against_stream(folder, clip_packed)
    summary = reconstruct(folder, tmp_path / "frames.npy")
    frames = np.load(tmp_path / "frames.npy")
    keys = keys_every(info["planes"], 41, 40)
    assert summary["frames"] == len(keys) == len(frames) and summary["skipped_windows"] == 0
    tfp = make_reconstructor("tfp", GEOM)
    for i in (0, len(keys) // 2, len(keys) - 1):
        start, stop = window_range(keys[i], 41)
        window = clip_packed[(info["first_plane"] + np.arange(start, stop)) % len(clip_packed)]
        assert np.array_equal(tfp.reconstruct(window[None])[0], frames[i])


# -- a recording folder as the input of a replay --------------------------------------------------------
def test_replay_of_a_folder_with_gaps_flags_discontinuities_and_equals_offline(start_daemon, tmp_path):
    clip = clip_planes(write_clip(tmp_path / "clip.dat", GEOM, 2000), GEOM)
    folder = tmp_path / "rec"
    with SegmentedWriter(folder, GEOM, 20_000.0, segment_bytes=192 * 250) as w:
        w.write(0, clip[:600])
        w.gap(600, 630, MissingCause.SOURCE_GAP)  # shorter than the ring
        w.write(630, clip[630:1000])
        w.gap(1000, 1900, MissingCause.DROPPED)  # three rings long
        w.write(1900, clip[1900:2000])
    offline = tmp_path / "offline.npy"
    summary = reconstruct(folder, offline)
    with open_recording(folder) as rec:
        all_keys = keys_every(rec.n_planes, 41, 40)
        expected_keys = [k for k in all_keys if rec.gap_in(*window_range(k, 41)) is None]
    assert summary["frames"] == len(expected_keys) and summary["skipped_windows"] == len(all_keys) - len(expected_keys)
    d = start_daemon(["--replay", str(folder), "--hop", "40", "--ring-planes", "300", "--wait-subscribers", "1"])
    ctx = zmq.Context()
    try:
        sock = sub_socket(ctx, d.pub, rcvhwm=4)
        frames, eos = [], None
        deadline = time.monotonic() + 30
        while eos is None and time.monotonic() < deadline:
            if sock.poll(50):
                msg = decode(sock.recv_multipart())
                if isinstance(msg, EndOfStream):
                    eos = msg
                elif isinstance(msg, tuple):
                    frames.append(msg)
        sock.close(0)
    finally:
        ctx.destroy(0)
    assert eos is not None and eos.reason == "end-of-stream", d.text()
    assert d.wait(10) == 0
    keys = [h.key_plane for h, _ in frames]
    assert keys == expected_keys
    flagged = [h.key_plane for h, _ in frames if h.discontinuity]
    assert flagged == [k for i, k in enumerate(keys) if i and k - keys[i - 1] > 40] and len(flagged) == 2
    assert np.array_equal(np.stack([img for _, img in frames]), np.load(offline))
    assert frames[0][0].rate_hz == 20_000.0  # the folder's recorded rate
