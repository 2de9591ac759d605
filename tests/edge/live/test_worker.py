"""The reconstruction worker over a real in-process ring: the window grid, policies, losses, end, configure.

The test writes the ring itself (the capture process's part), so every plane index and every loss
is chosen exactly; frames are checked against TFP computed offline on the same planes.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge.live.ring import SpikeRing, WriterPolicy, WriterState
from edge.live.worker import Worker, WorkerPolicy
from edge.reconstruction.backends import make_reconstructor
from edge.reconstruction.windows import keys_every, window_range
from firmware_io.contract import Geometry
from firmware_io.dat import write_dat
from firmware_io.recording import open_recording
from firmware_io.replay import ReplaySource

GEOM = Geometry(16, 32)  # 64-byte planes
WINDOW = 16


def packed_planes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, GEOM.plane_bytes), dtype=np.uint8)


def tfp(window_planes: int = WINDOW):
    return make_reconstructor("tfp", GEOM, window_planes=window_planes)


@pytest.fixture
def make_ring():
    rings: list[SpikeRing] = []

    def make(capacity: int, policy: WriterPolicy = WriterPolicy.OVERWRITE) -> SpikeRing:
        rings.append(SpikeRing.create(capacity, GEOM, policy=policy))
        return rings[-1]

    yield make
    for ring in rings:
        ring.close()


def write(ring: SpikeRing, planes: np.ndarray, first: int, stop: int, t_ns: int = 0) -> None:
    """Planes ``[first, stop)`` of ``planes`` into the ring under their own indices."""
    assert ring.write(first, planes[first:stop], t_ns) == stop - first


def drain(worker: Worker) -> list:
    """Frames from steps until one returns ``[]`` or ``None``."""
    frames = []
    while batch := worker.step():
        frames.extend(batch)
    return frames


def finish(worker: Worker) -> list:
    """Mark the source ended and step until ``None``: every frame still to come."""
    worker.ring.set("state", int(WriterState.ENDED))
    frames = []
    for _ in range(10_000):
        batch = worker.step()
        if batch is None:
            return frames
        frames.extend(batch)
    raise AssertionError("step() never returned None after the source ended")


def offline(planes: np.ndarray, key: int, window_planes: int = WINDOW) -> np.ndarray:
    start, stop = window_range(key, window_planes)
    return tfp(window_planes).reconstruct(planes[None, start:stop])[0]


def test_replay_gives_the_offline_key_grid_and_frames(make_ring, tmp_path):
    n_planes, hop, block = 537, 13, 40
    upright = (np.random.default_rng(1).random((n_planes, *GEOM.shape)) < 0.3).astype(np.uint8)
    path = write_dat(tmp_path / "clip.dat", upright)
    ring = make_ring(96, WriterPolicy.BLOCK)  # deterministic replay: the writer would wait, never lose
    worker = Worker(ring, tfp(), hop_planes=hop, policy=WorkerPolicy.ALL)
    block_t_ns = {}
    frames = []
    with ReplaySource(path, GEOM, block_planes=block) as source:
        for b in source:
            # should_stop: fail rather than wait, since the reader is this same thread
            assert ring.write(b.first_plane, b.planes, b.capture_t_ns, should_stop=lambda: True) == b.n_planes
            block_t_ns.update(dict.fromkeys(range(b.first_plane, b.stop_plane), b.capture_t_ns))
            frames += drain(worker)
    frames += finish(worker)
    assert worker.step() is None

    keys = keys_every(n_planes, WINDOW, hop)
    assert [f.key_plane for f in frames] == keys
    with open_recording(path, GEOM) as rec:
        packed = np.array(rec.packed(0, n_planes))
    for f in frames:
        assert (f.plane_start, f.plane_stop) == window_range(f.key_plane, WINDOW)
        np.testing.assert_array_equal(f.image, offline(packed, f.key_plane))
        assert f.capture_t_ns == block_t_ns[f.plane_stop - 1]  # the newest plane of the window
        assert f.dequeue_t_ns <= f.infer_start_t_ns <= f.infer_end_t_ns
        assert not f.discontinuity
    assert worker.windows == len(keys)
    assert (worker.overrun_planes, worker.source_gap_planes, worker.lost_windows, worker.skipped_windows) == (0, 0, 0, 0)
    assert ring.get("writer_waits") == 0 and ring.get("overwritten_unread") == 0


def test_all_batches_ready_windows_up_to_max_batch(make_ring):
    planes = packed_planes(64)
    ring = make_ring(128)
    worker = Worker(ring, tfp(), hop_planes=8, policy=WorkerPolicy.ALL, max_batch=3)
    assert worker.step() == []  # nothing written yet
    write(ring, planes, 0, 64)  # windows at starts 0, 8, ..., 48: seven ready
    batches = [worker.step() for _ in range(4)]
    assert [len(b) for b in batches] == [3, 3, 1, 0]
    frames = [f for b in batches for f in b]
    assert [f.key_plane for f in frames] == [8 + 8 * m for m in range(7)]
    for f in frames:  # batched windows are strided views of one copy: each must be its own window
        np.testing.assert_array_equal(f.image, offline(planes, f.key_plane))
    first = batches[0]
    assert len({(f.dequeue_t_ns, f.infer_start_t_ns, f.infer_end_t_ns) for f in first}) == 1  # one inference
    assert worker.windows == 7 and worker.skipped_windows == 0
    assert ring.get("release") == 64 - WINDOW // 2  # released up to the next window's first plane


def test_latest_skips_to_the_newest_window_and_counts(make_ring):
    planes = packed_planes(120)
    ring = make_ring(128)
    worker = Worker(ring, tfp(), hop_planes=8, policy=WorkerPolicy.LATEST)
    write(ring, planes, 0, 64)
    (start,) = worker.step()  # a live start: the newest complete window, nothing counted as skipped
    assert start.key_plane == 56 and worker.skipped_windows == 0 and not start.discontinuity
    write(ring, planes, 64, 88)  # windows at keys 64, 72, 80 ready: the first two are skipped
    (newest,) = worker.step()
    assert newest.key_plane == 80 and newest.plane_stop == 88 and newest.discontinuity
    assert worker.skipped_windows == 2 and worker.lost_windows == 0
    np.testing.assert_array_equal(newest.image, offline(planes, 80))
    assert worker.step() == []
    write(ring, planes, 88, 96)
    (following,) = worker.step()
    assert following.key_plane == 88 and not following.discontinuity and worker.skipped_windows == 2
    assert worker.windows == 3


def test_latest_keeps_every_window_while_within_its_latency_budget(make_ring):
    """Two windows ready at once is scheduling jitter, not falling behind: ``latest`` skips only when the
    oldest ready window has waited longer than the budget since its capture."""
    planes = packed_planes(200)
    ring = make_ring(256)
    worker = Worker(ring, tfp(), hop_planes=8, policy=WorkerPolicy.LATEST, latency_budget_ns=50_000_000)
    write(ring, planes, 0, 24, t_ns=time.monotonic_ns())
    (first,) = worker.step()  # a live start: the newest window
    assert first.key_plane == 16
    write(ring, planes, 24, 48, t_ns=time.monotonic_ns())  # three windows ready at once, all fresh
    frames = drain(worker)
    assert [f.key_plane for f in frames] == [24, 32, 40] and worker.skipped_windows == 0
    assert not any(f.discontinuity for f in frames)
    for f in frames:
        np.testing.assert_array_equal(f.image, offline(planes, f.key_plane))
    write(ring, planes, 48, 80, t_ns=time.monotonic_ns() - 200_000_000)  # four ready, captured 200 ms ago
    (newest,) = worker.step()
    assert newest.key_plane == 72 and newest.discontinuity and worker.skipped_windows == 3
    write(ring, planes, 80, 88, t_ns=time.monotonic_ns() - 200_000_000)  # one ready, however old: no skip
    (only,) = worker.step()
    assert only.key_plane == 80 and not only.discontinuity and worker.skipped_windows == 3
    assert worker.lost_windows == 0 and worker.overrun_planes == 0


def test_a_source_discontinuity_without_a_gap_flags_the_next_frame(make_ring):
    """A camera whose plane counter restarted is rebased by the capture (no gap in the ring) and counted in
    the ring's ``discontinuities``: the first window reaching past it carries the flag, once."""
    planes = packed_planes(120)
    ring = make_ring(256)
    worker = Worker(ring, tfp(), hop_planes=8, policy=WorkerPolicy.ALL)
    write(ring, planes, 0, 40)
    before = drain(worker)
    assert before and not any(f.discontinuity for f in before)
    ring.add("discontinuities")  # what the capture does before writing the rebased block
    write(ring, planes, 40, 120)
    after = drain(worker)
    flagged = [f for f in after if f.discontinuity]
    assert len(flagged) == 1 and flagged[0].plane_stop > 40 and flagged[0] is after[0]
    assert worker.lost_windows == 0 and worker.skipped_windows == 0


def test_overrun_by_a_writer_lapping_the_worker(make_ring):
    planes = packed_planes(248)
    ring = make_ring(64)  # overwrite policy: the writer never waits
    worker = Worker(ring, tfp(), hop_planes=8, policy=WorkerPolicy.ALL)
    write(ring, planes, 0, 40)
    assert [f.key_plane for f in drain(worker)] == [8, 16, 24, 32]  # next window starts at 32
    for first in range(40, 240, 20):  # the writer runs 200 planes ahead: planes below 176 are gone
        write(ring, planes, first, first + 20)
    assert ring.get("overwritten_unread") == 176 - 32
    frames = drain(worker)
    # Resumed at the first window on the grid a hop clear of the oldest plane (start 184, not 176);
    # the planes given up on the way (32..183) count as overrun, the windows starting there as lost.
    assert [f.key_plane for f in frames] == list(range(192, 233, 8))
    assert worker.overrun_planes == 184 - 32 and worker.lost_windows == (184 - 32) // 8
    assert worker.source_gap_planes == 0 and worker.skipped_windows == 0
    assert [f.discontinuity for f in frames] == [True] + [False] * 5
    for f in frames:
        np.testing.assert_array_equal(f.image, offline(planes, f.key_plane))
    assert worker.step() == []
    write(ring, planes, 240, 248)
    (following,) = worker.step()
    assert following.key_plane == 240 and not following.discontinuity and worker.overrun_planes == 184 - 32


def test_source_gap_loses_exactly_the_windows_touching_it(make_ring):
    planes = packed_planes(200)
    ring = make_ring(256)
    hop = 10
    worker = Worker(ring, tfp(), hop_planes=hop, policy=WorkerPolicy.ALL, max_batch=1)
    write(ring, planes, 0, 100)
    write(ring, planes, 130, 200)  # the source skipped planes 100..129
    assert ring.get("source_gap_planes") == 30
    frames = finish(worker)
    grid = [start + WINDOW // 2 for start in range(0, 200 - WINDOW + 1, hop)]
    touching = [k for k in grid if window_range(k, WINDOW)[1] > 100 and window_range(k, WINDOW)[0] < 130]
    assert touching == [98, 108, 118, 128]
    assert [f.key_plane for f in frames] == [k for k in grid if k not in touching]
    assert worker.lost_windows == len(touching) and worker.overrun_planes == 0
    # Read window by window: [90, 106) misses planes 100..105; resumed at [110, 126), which misses
    # all 16; resumed at [130, 146), intact.
    assert worker.source_gap_planes == 6 + 16
    assert [f.key_plane for f in frames if f.discontinuity] == [138]
    for f in frames:
        np.testing.assert_array_equal(f.image, offline(planes, f.key_plane))


def test_source_gaps_count_missing_planes_not_the_planes_between(make_ring):
    planes = packed_planes(160)
    ring = make_ring(256)
    worker = Worker(ring, tfp(), hop_planes=10, policy=WorkerPolicy.ALL, max_batch=1)
    write(ring, planes, 0, 100)
    write(ring, planes, 102, 104)  # 100, 101 and 104, 105 never delivered; 102, 103 were
    write(ring, planes, 106, 160)
    frames = finish(worker)
    # Window [90, 106) holds both holes: 4 planes lost, and the windows at 90 and 100 with them.
    assert worker.source_gap_planes == 4 and worker.lost_windows == 2
    keys = [f.key_plane for f in frames]
    assert 98 not in keys and 108 not in keys and keys[keys.index(88) + 1] == 118
    assert [f.key_plane for f in frames if f.discontinuity] == [118]


def test_a_gap_inside_a_batch_loses_no_intact_window_before_it(make_ring):
    planes = packed_planes(200)
    ring = make_ring(256)
    worker = Worker(ring, tfp(), hop_planes=10, policy=WorkerPolicy.ALL, max_batch=8)
    write(ring, planes, 0, 100)
    write(ring, planes, 130, 200)
    keys = [f.key_plane for f in finish(worker)]
    assert 88 in keys  # window [80, 96) is intact
    assert worker.lost_windows == 4


def test_end_of_stream_returns_none(make_ring):
    ring = make_ring(64)
    worker = Worker(ring, tfp(), hop_planes=8)
    ring.set("state", int(WriterState.ENDED))
    assert worker.step() is None  # ended before any plane

    ring = make_ring(64)
    worker = Worker(ring, tfp(), hop_planes=8)
    write(ring, packed_planes(10), 0, 10)
    assert worker.step() == []  # not a window yet, more may come
    ring.set("state", int(WriterState.FAILED))
    assert worker.step() is None  # no window can complete any more

    ring = make_ring(64)
    planes = packed_planes(30)
    worker = Worker(ring, tfp(), hop_planes=8)
    write(ring, planes, 0, 30)
    assert [f.key_plane for f in finish(worker)] == keys_every(30, WINDOW, 8)
    assert worker.step() is None


def test_configure_applies_from_the_next_window(make_ring):
    planes = packed_planes(200)
    ring = make_ring(128)
    worker = Worker(ring, tfp(), hop_planes=10, policy=WorkerPolicy.ALL, max_batch=2)
    write(ring, planes, 0, 100)
    assert [f.key_plane for f in worker.step()] == [8, 18]
    worker.configure(hop_planes=25)
    assert worker.hop_planes == 25 and worker.next_key == 28
    assert [f.key_plane for f in drain(worker)] == [28, 53, 78]  # window [70, 86) is the last in 100

    with pytest.raises(ValueError, match="window 16 \\+ hop 120 planes do not fit the 128-plane ring"):
        worker.configure(hop_planes=120)
    assert (worker.hop_planes, worker.policy) == (25, WorkerPolicy.ALL)  # a rejected change changes nothing

    worker.configure(reconstructor=tfp(32), policy=WorkerPolicy.LATEST)  # keys stay on the grid, windows widen
    write(ring, planes, 100, 200)
    (frame,) = worker.step()
    assert frame.key_plane == 178 and (frame.plane_start, frame.plane_stop) == (162, 194)
    assert worker.skipped_windows == 3  # keys 103, 128, 153
    np.testing.assert_array_equal(frame.image, offline(planes, 178, 32))


def test_constructor_rejects_settings_the_ring_cannot_hold(make_ring):
    ring = make_ring(20)
    with pytest.raises(ValueError, match="a 16-plane window with hop 8 needs at least 24"):
        Worker(ring, tfp(), hop_planes=8)
    with pytest.raises(ValueError, match="max_batch must be >= 1, got 0"):
        Worker(ring, tfp(), hop_planes=4, max_batch=0)
