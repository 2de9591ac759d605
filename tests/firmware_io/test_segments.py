"""Recording folders (``firmware_io.segments``): rotation, sidecars, gaps, limits, crash leftovers, and reading
them back through ``open_recording`` and ``ReplaySource`` like any recording."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from firmware_io.contract import FormatError, Geometry, ReadStatus
from firmware_io.bitpack import unpack_planes
from firmware_io.plane_range import MissingCause, MissingPlanesError, MissingRange
from firmware_io.recording import open_recording, recording_defaults
from firmware_io.replay import ReplaySource
from firmware_io.segments import FullReason, RecordingFull, SegmentedWriter, prepare_folder

GEOM = Geometry(6, 20)  # 15 bytes per plane: segments never fall on round byte counts


def stream(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, GEOM.plane_bytes), dtype=np.uint8)


def sidecars(folder):
    return [json.loads(p.read_text()) for p in sorted(folder.glob("segment-*.json"))]


def test_rotation_keeps_every_plane_in_order_and_each_closed_sidecar_describes_its_segment(tmp_path):
    planes = stream(100)
    folder = tmp_path / "rec"
    before = time.time_ns()
    with SegmentedWriter(folder, GEOM, 20_000.0, segment_bytes=15 * 30 + 7, meta={"stream_id": "s1"}) as w:
        for first in range(0, 100, 13):
            w.write(first, planes[first: first + 13])
    assert w.planes_written == 100 and w.segments == 4
    dats = sorted(folder.glob("segment-*.dat"))
    assert [p.name for p in dats] == [f"segment-00000{i}.dat" for i in range(4)]
    assert b"".join(p.read_bytes() for p in dats) == planes.tobytes()
    firsts = []
    for meta, dat in zip(sidecars(folder), dats):
        assert meta["status"] == "closed" and meta["file"] == dat.name and meta["layout"] == "packed"
        assert (meta["height"], meta["width"], meta["plane_bytes"], meta["rate_hz"]) == (6, 20, 15, 20_000.0)
        assert meta["sha256"] == hashlib.sha256(dat.read_bytes()).hexdigest()
        assert meta["n_planes"] * 15 == meta["bytes"] == dat.stat().st_size
        assert meta["stop_plane"] == meta["first_plane"] + meta["n_planes"] and meta["gaps"] == []
        assert before <= meta["started_unix_ns"] <= time.time_ns() and meta["started_utc"].endswith("Z")
        assert meta["stream_id"] == "s1"
        firsts.append(meta["first_plane"])
    assert firsts == [0, 30, 60, 90]
    with open_recording(folder) as rec:
        assert (rec.geometry, rec.n_planes, rec.gaps, rec.rate_hz, rec.open_segments) == (GEOM, 100, (), 20_000.0, 0)
        assert np.array_equal(rec.packed(), planes) and np.array_equal(rec.packed(25, 65), planes[25:65])
        assert np.array_equal(rec.unpacked(3, 5), unpack_planes(planes[3:5], GEOM))
        assert rec.verify() == []
    assert recording_defaults(folder) == (GEOM, 20_000.0)


def test_gaps_are_recorded_with_their_cause_and_read_back_as_missing_ranges(tmp_path):
    planes = stream(200)
    folder = tmp_path / "rec"
    with SegmentedWriter(folder, GEOM, 40_000.0, segment_bytes=15 * 50) as w:
        w.write(10, planes[10:40])
        w.gap(40, 55, MissingCause.SOURCE_GAP)
        w.gap(55, 60, MissingCause.DROPPED)
        w.write(60, planes[60:95])  # crosses a segment boundary
        w.write(120, planes[120:130])  # an undeclared jump: cause unknown
        w.gap(130, 170, MissingCause.DROPPED)
        w.write(170, planes[170:200])
    metas = sidecars(folder)
    assert metas[0]["gaps"] == [{"start": 40, "stop": 55, "cause": "source-gap"}, {"start": 55, "stop": 60, "cause": "dropped"}]
    with open_recording(folder) as rec:
        assert rec.first_plane == 10 and rec.n_planes == 190  # stream planes [10, 200)
        assert rec.gaps == (MissingRange(30, 45, MissingCause.SOURCE_GAP), MissingRange(45, 50, MissingCause.DROPPED),
                            MissingRange(85, 110, MissingCause.UNKNOWN), MissingRange(120, 160, MissingCause.DROPPED))
        assert rec.recorded_planes == 30 + 35 + 10 + 30
        assert np.array_equal(rec.packed(50, 85), planes[60:95])
        with pytest.raises(MissingPlanesError, match=r"\[30, 45\).*source-gap"):
            rec.packed(25, 35)
        assert rec.gap_in(0, 30) is None and rec.gap_in(29, 31).start == 30
        assert rec.next_present(31) == 45 + 5 and rec.next_present(50) == 50
        chunks = list(rec.iter_packed(8))
        assert np.array_equal(np.concatenate([c for _, c in chunks]),
                              np.concatenate([planes[10:40], planes[60:95], planes[120:130], planes[170:200]]))


def test_replay_of_a_folder_jumps_over_gaps_and_never_straddles_segments(tmp_path):
    planes = stream(120)
    folder = tmp_path / "rec"
    with SegmentedWriter(folder, GEOM, 40_000.0, segment_bytes=15 * 25) as w:
        w.write(0, planes[:30])
        w.gap(30, 70, MissingCause.SOURCE_GAP)
        w.write(70, planes[70:120])
    with ReplaySource(folder, block_planes=10) as src:
        blocks = list(src)
        assert src.read().status is ReadStatus.END_OF_STREAM
    firsts = [b.first_plane for b in blocks]
    assert firsts == [0, 10, 20, 25, 70, 80, 90, 100, 110, 115], "blocks end at segment boundaries and skip the gap"
    for b in blocks:
        assert np.array_equal(b.planes, planes[b.first_plane: b.stop_plane])
    with ReplaySource(folder, block_planes=40, loop=True) as src:
        looped = [src.read().block for _ in range(8)]
    assert [b.first_plane for b in looped][:7] == [0, 25, 70, 90, 115, 120, 145]  # the next pass keeps indices going


def test_an_open_segment_is_read_up_to_its_last_whole_plane(tmp_path):
    """A writer killed mid-segment: the sidecar says open (or is gone), the .dat ends in a partial plane."""
    folder = tmp_path / "rec"
    code = f"""
import os, numpy as np
from firmware_io.contract import Geometry
from firmware_io.plane_range import MissingCause
from firmware_io.segments import SegmentedWriter
planes = np.random.default_rng(0).integers(0, 256, (200, 15), dtype=np.uint8)
w = SegmentedWriter({str(folder)!r}, Geometry(6, 20), 40000.0, segment_bytes=15 * 60)
w.write(0, planes[:70]); w.gap(70, 80, MissingCause.SOURCE_GAP); w.write(80, planes[80:100])
w.gap(100, 110, MissingCause.DROPPED)
while '"closed"' not in open({str(folder / "segment-000000.json")!r}).read():
    pass  # the rotated-out segment is closed in the background: let that finish, then die mid-segment
os.kill(os.getpid(), 9)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()
    planes = stream(200)
    metas = sidecars(folder)
    assert [m["status"] for m in metas] == ["closed", "open"] and metas[1]["sha256"] is None
    with open(folder / "segment-000001.dat", "ab") as f:
        f.write(b"\x01" * 7)  # a partial plane, as a kill between two write calls leaves it
    with open_recording(folder) as rec:
        assert rec.open_segments == 1 and rec.n_planes == 100 and rec.recorded_planes == 90
        assert rec.gaps == (MissingRange(70, 80, MissingCause.SOURCE_GAP),)  # the trailing gap has no planes after it
        assert np.array_equal(rec.packed(80, 100), planes[80:100])
        assert rec.verify() == []  # only closed segments have a digest to check
    (folder / "segment-000001.json").unlink()  # a missing sidecar: the segment follows the previous one
    with open_recording(folder) as rec:
        assert rec.n_planes == 90 and rec.gaps == ()  # nothing says where its planes were in the stream
        assert np.array_equal(rec.packed(), np.concatenate([planes[:70], planes[80:100]]))


def test_quota_stops_after_the_planes_that_fit(tmp_path):
    planes = stream(100)
    folder = tmp_path / "rec"
    w = SegmentedWriter(folder, GEOM, 40_000.0, segment_bytes=15 * 20, max_bytes=15 * 45 + 3)
    w.write(0, planes[:40])
    with pytest.raises(RecordingFull) as full:
        w.write(40, planes[40:60])
    assert full.value.reason is FullReason.QUOTA and full.value.planes_written == 5 and "quota" in str(full.value)
    with pytest.raises(RecordingFull):
        w.write(60, planes[60:61])  # stays stopped
    w.close()
    with open_recording(folder) as rec:
        assert rec.n_planes == 45 and np.array_equal(rec.packed(), planes[:45]) and rec.open_segments == 0
    assert sum(p.stat().st_size for p in folder.glob("*.dat")) <= 15 * 45 + 3


def test_free_space_reserve_stops_before_writing(tmp_path):
    w = SegmentedWriter(tmp_path / "rec", GEOM, 40_000.0, segment_bytes=1000, min_free_bytes=1 << 62)
    with pytest.raises(RecordingFull) as full:
        w.write(0, stream(3))
    assert full.value.reason is FullReason.DISK_FULL and full.value.planes_written == 0
    w.close()
    assert not list((tmp_path / "rec").glob("*.dat"))


def test_a_write_the_file_system_refuses_stops_at_the_last_whole_plane(tmp_path):
    """A real failing write (a file-size limit: EFBIG, like ENOSPC) part-way through a block."""
    folder = tmp_path / "rec"
    code = f"""
import resource, signal, numpy as np
from firmware_io.contract import Geometry
from firmware_io.segments import RecordingFull, SegmentedWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
planes = np.random.default_rng(0).integers(0, 256, (1000, 15), dtype=np.uint8)
w = SegmentedWriter({str(folder)!r}, Geometry(6, 20), 40000.0, segment_bytes=10**6)
try:
    for first in range(0, 1000, 100):
        w.write(first, planes[first:first + 100])
except RecordingFull as exc:
    print(exc.reason.value, exc.planes_written, w.planes_written, exc)
w.close()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("disk-full 0 600 recording stopped (disk-full)"), result.stdout
    assert "File too large" in result.stdout
    with open_recording(folder) as rec:
        assert rec.n_planes == 600 and rec.open_segments == 0 and rec.verify() == []
        assert np.array_equal(rec.packed(), stream(1000)[:600])


def test_folders_that_cannot_be_read_or_written_are_clear_errors(tmp_path):
    folder = tmp_path / "rec"
    with SegmentedWriter(folder, GEOM, 40_000.0, segment_bytes=15 * 10) as w:
        w.write(0, stream(25))
    with pytest.raises(ValueError, match="already holds a recording"):
        prepare_folder(folder)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        prepare_folder(tmp_path / "file")
    with pytest.raises(ValueError, match="holds 6x20 planes, but 250x400 was requested"):
        open_recording(folder, Geometry(250, 400))
    with pytest.raises(ValueError, match="--with-head does not apply"):
        open_recording(folder, with_head=True)
    with open(folder / "segment-000001.dat", "ab") as f:
        f.write(b"\0" * 15)  # a closed segment that is longer than its sidecar says
    with pytest.raises(FormatError, match="allow_partial"):
        open_recording(folder)
    with pytest.warns(UserWarning, match="reading 10 planes"), open_recording(folder, allow_partial=True) as rec:
        assert rec.n_planes == 25
        seg = folder / "segment-000000.dat"
        seg.write_bytes(bytes([seg.read_bytes()[0] ^ 1]) + seg.read_bytes()[1:])
        problems = rec.verify()
    assert len(problems) == 2 and "segment-000000.dat: sha256" in problems[0]  # and the lengthened one
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="holds no segments"):
        open_recording(tmp_path / "empty")
