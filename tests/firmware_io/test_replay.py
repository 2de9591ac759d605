"""ReplaySource: deterministic blocks that join up to the file, real-time pacing, looping."""

from __future__ import annotations

import time

import numpy as np
import pytest

from firmware_io.contract import Geometry, ReadStatus
from firmware_io.dat import write_dat
from firmware_io.recording import open_recording
from firmware_io.replay import ReplaySource

GEOM = Geometry(16, 24)


@pytest.fixture
def dat(tmp_path):
    rng = np.random.default_rng(7)
    planes = (rng.random((101, *GEOM.shape)) < 0.2).astype(np.uint8)
    return write_dat(tmp_path / "clip.dat", planes)


@pytest.mark.parametrize("block", [1, 7, 40, 101, 500])
def test_deterministic_blocks_join_up_to_the_file(dat, block):
    with open_recording(dat, GEOM) as rec:
        whole = np.array(rec.packed())
    with ReplaySource(dat, GEOM, block_planes=block) as src:
        blocks = list(src)
        again = src.read()
        assert again.status is ReadStatus.END_OF_STREAM
    assert all(b.n_planes == block for b in blocks[:-1])
    assert [b.first_plane for b in blocks] == list(range(0, 101, block))[: len(blocks)]
    assert np.array_equal(np.concatenate([b.planes for b in blocks]), whole)


def test_statuses_on_every_read(dat):
    src = ReplaySource(dat, GEOM, block_planes=100)
    assert src.read().status is ReadStatus.OK
    assert src.read().status is ReadStatus.OK  # the short last block
    assert src.read().status is ReadStatus.END_OF_STREAM
    src.close()
    closed = src.read()
    assert closed.status is ReadStatus.ERROR and "closed" in closed.message


def test_loop_keeps_indices_increasing(dat):
    with open_recording(dat, GEOM) as rec:
        whole = np.array(rec.packed())
    with ReplaySource(dat, GEOM, block_planes=40, loop=True) as src:
        blocks = [src.read().block for _ in range(8)]
    firsts = [b.first_plane for b in blocks]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)
    stream = np.concatenate([b.planes for b in blocks])
    assert blocks[-1].stop_plane == len(stream)
    assert np.array_equal(stream, np.concatenate([whole] * 4)[: len(stream)])


def test_realtime_pacing_follows_the_absolute_schedule(dat):
    rate_hz = 2000.0  # 40-plane blocks every 20 ms
    with ReplaySource(dat, GEOM, block_planes=40, realtime=True, rate_hz=rate_hz, loop=True) as src:
        start = time.monotonic_ns()
        blocks = []
        for _ in range(10):
            r = src.read(timeout_s=1.0)
            assert r.status is ReadStatus.OK
            blocks.append(r.block)
            time.sleep(0.003 if len(blocks) % 3 else 0.0)  # consumer jitter must not accumulate
        elapsed_s = (time.monotonic_ns() - start) / 1e9
    expected_s = blocks[-1].stop_plane / rate_hz
    assert expected_s - 0.002 <= elapsed_s <= expected_s + 0.05
    # capture times are the schedule: block [a, b) is due at t0 + b / rate, whatever the consumer did
    gaps = np.diff([b.capture_t_ns for b in blocks])
    planes = np.diff([b.stop_plane for b in blocks])
    assert np.all(np.abs(gaps - planes * 1e9 / rate_hz) <= 1)


def test_realtime_speed_and_timeout(dat):
    with ReplaySource(dat, GEOM, block_planes=40, realtime=True, rate_hz=100.0, speed=2.0) as src:
        r = src.read(timeout_s=0.01)  # first block is due after 40 / 200 s = 0.2 s
        assert r.status is ReadStatus.TIMEOUT
        t = time.monotonic()
        r = src.read(timeout_s=1.0)
        assert r.status is ReadStatus.OK
        assert 0.15 <= time.monotonic() - t + 0.01 <= 0.35


def test_bad_options(dat, tmp_path):
    with pytest.raises(ValueError, match="block_planes"):
        ReplaySource(dat, GEOM, block_planes=0)
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(dat, GEOM, speed=0)
    with pytest.raises(FileNotFoundError):
        ReplaySource(tmp_path / "missing.dat", GEOM)
