"""The shared-memory plane ring: exact planes or explicit gaps, totals add up, across processes, under stress."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.live import ringsync
from edge.live.ring import Gap, GapCause, Planes, RingRead, RingReader, SpikeRing, WriterPolicy, WriterState
from edge.live.ringsync import SyncMode
from firmware_io.contract import Geometry

GEOM = Geometry(8, 32)  # 32 bytes per plane


def plane_content(index: int, plane_bytes: int) -> np.ndarray:
    """A plane that names its index: 8 bytes of index, then a fill byte derived from it."""
    plane = np.full(plane_bytes, index % 251, dtype=np.uint8)
    plane[:8] = np.frombuffer(np.int64(index).tobytes(), dtype=np.uint8)
    return plane


def planes_for(first: int, n: int, plane_bytes: int) -> np.ndarray:
    return np.stack([plane_content(i, plane_bytes) for i in range(first, first + n)]) if n else np.empty((0, plane_bytes), np.uint8)


def check_planes(read: Planes, plane_bytes: int) -> None:
    expected = planes_for(read.first_plane, read.n_planes, plane_bytes)
    assert np.array_equal(read.planes, expected), f"torn or wrong planes at {read.first_plane}"


def read_next(reader: RingReader, cursor: int, max_planes: int) -> RingRead:
    """One step of an in-order stream over ``reader.read``: the planes from ``cursor`` on, or the gap
    at ``cursor`` (intact planes ahead of a gap are delivered first)."""
    got = reader.read(cursor, min(reader.ring.committed, cursor + max_planes))
    if isinstance(got, Gap) and got.first_plane > cursor:
        got = reader.read(cursor, got.first_plane)
    return got


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 40), st.integers(0, 3)),  # n planes, source jump
        st.tuples(st.just("read"), st.integers(1, 50), st.just(0)),
    ),
    min_size=1, max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity=st.integers(2, 48), script=ops, jumps=st.booleans())
def test_interleavings_give_exact_planes_or_explicit_gaps(capacity, script, jumps):
    ring = SpikeRing.create(capacity, GEOM, policy=WriterPolicy.OVERWRITE)
    try:
        reader = RingReader(ring)
        written: set[int] = set()
        holder = [-1] * capacity  # the model: the plane each slot holds
        next_index = 0
        cursor = None
        got_planes = gaps_overrun = gaps_source = passed_over = 0

        def do_read(max_planes):
            nonlocal cursor, got_planes, gaps_overrun, gaps_source, passed_over
            if not written or ring.committed <= cursor:
                return False
            r = read_next(reader, cursor, max_planes)
            if isinstance(r, Planes):
                assert r.first_plane == cursor, "reads must be contiguous"
                assert 1 <= r.n_planes <= max_planes
                check_planes(r, GEOM.plane_bytes)
                assert all(holder[i % capacity] == i for i in range(cursor, cursor + r.n_planes))
                assert cursor >= ring.committed - capacity
                got_planes += r.n_planes
                cursor += r.n_planes
            else:
                assert r.first_plane == cursor and r.stop_plane > cursor and 1 <= r.n_lost
                lost = range(cursor, r.stop_plane)
                if r.cause is GapCause.OVERRUN:  # only a lapped reader, without a concurrent writer
                    assert cursor < ring.committed - capacity and r.stop_plane == ring.committed - capacity
                    assert r.n_lost == len(lost)
                    gaps_overrun += r.n_lost
                else:  # exactly the planes never delivered, both ends among them
                    missing = [i for i in lost if i not in written]
                    assert r.n_lost == len(missing) and missing[0] == cursor and missing[-1] == r.stop_plane - 1
                    gaps_source += r.n_lost
                    passed_over += len(lost) - r.n_lost  # intact planes between missing ones
                cursor = r.stop_plane
            reader.release(cursor)
            return True

        for op, n, jump in script:
            if op == "write":
                if jumps and jump and written:
                    next_index += jump
                ring.write(next_index, planes_for(next_index, n, GEOM.plane_bytes), time.monotonic_ns())
                stored = range(max(next_index, next_index + n - capacity), next_index + n)
                for i in stored:
                    holder[i % capacity] = i
                written.update(stored)
                if cursor is None:
                    cursor = next_index
                next_index += n
            else:
                do_read(n)
        ring.set("state", int(WriterState.ENDED))
        while do_read(17):
            pass
        assert ring.finished and (not written or cursor == ring.committed)
        first = ring.get("first_plane") if written else 0
        # Totals add up: every index from the first plane to the end was delivered, reported lost,
        # or passed over inside a gap.
        assert got_planes + gaps_overrun + gaps_source + passed_over == next_index - first
        if not jumps:
            assert gaps_source == 0
            assert ring.get("overwritten_unread") == gaps_overrun
    finally:
        ring.close()


def test_read_names_source_gaps_and_overruns():
    ring = SpikeRing.create(8, GEOM)
    try:
        reader = RingReader(ring)
        ring.write(0, planes_for(0, 3, GEOM.plane_bytes), 10)
        ring.write(5, planes_for(5, 2, GEOM.plane_bytes), 20)  # planes 3, 4 never delivered
        got = reader.read(0, 7)
        assert got == Gap(3, 5, 2, GapCause.SOURCE_GAP)
        first = reader.read(0, 3)
        assert isinstance(first, Planes) and list(first.t_ns) == [10, 10, 10]
        check_planes(first, GEOM.plane_bytes)
        ring.write(7, planes_for(7, 6, GEOM.plane_bytes), 30)  # committed 13: planes below 5 are gone
        assert reader.read(1, 6) == Gap(1, 5, 4, GapCause.OVERRUN)  # lapped: reaches the oldest plane
        assert reader.lapped(5) is None and reader.lapped(4) == Gap(4, 5, 1, GapCause.OVERRUN)
        tail = reader.read(5, 13)  # wraps around the end of the slots
        assert isinstance(tail, Planes) and tail.first_plane == 5 and list(tail.t_ns) == [20] * 2 + [30] * 6
        check_planes(tail, GEOM.plane_bytes)
        ring.stamps[9 % 8] = -1  # plane 9's slot open for writing, as mid-write by a concurrent writer
        assert reader.read(8, 12) == Gap(9, 10, 1, GapCause.OVERRUN)
        with pytest.raises(ValueError, match="only 13 committed"):
            reader.read(10, 14)
        with pytest.raises(ValueError, match=r"\[6, 5\) must start at >= 0 and not end before it"):
            reader.read(6, 5)
        assert reader.read(0, 13) == Gap(0, 5, 5, GapCause.OVERRUN)  # longer than the ring: lapped
    finally:
        ring.close()


def test_block_policy_loses_nothing_with_a_slow_reader():
    ring = SpikeRing.create(16, GEOM, policy=WriterPolicy.BLOCK)
    total = 500
    try:
        def writer():
            for first in range(0, total, 7):
                n = min(7, total - first)
                ring.write(first, planes_for(first, n, GEOM.plane_bytes), time.monotonic_ns())
            ring.set("state", int(WriterState.ENDED))

        thread = threading.Thread(target=writer)
        thread.start()
        reader = RingReader(ring)
        received = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (ring.finished and received == ring.committed):
            if ring.committed <= received:
                time.sleep(0.0005)
                continue
            r = read_next(reader, received, 5)
            assert isinstance(r, Planes), f"lost planes under the block policy: {r}"
            assert r.first_plane == received
            check_planes(r, GEOM.plane_bytes)
            received += r.n_planes
            reader.release(received)
            if received % 50 < 5:
                time.sleep(0.002)  # a slow reader
        thread.join(5)
        assert received == total
        assert ring.get("overwritten_unread") == 0
        assert ring.get("writer_waits") > 0
    finally:
        ring.close()


def test_block_policy_passes_a_source_gap_longer_than_the_ring():
    """A block after a gap of many ring lengths neither leaves writer and reader both waiting nor makes the
    intact planes before the gap look lapped: the gap reads as a source gap, then the block arrives."""
    pb = GEOM.plane_bytes
    ring = SpikeRing.create(16, GEOM, policy=WriterPolicy.BLOCK)
    try:
        ring.write(0, planes_for(0, 10, pb), 0)
        thread = threading.Thread(target=ring.write, args=(100, planes_for(100, 5, pb), 0))
        thread.start()
        reader = RingReader(ring)
        got = reader.read(0, 10)
        assert isinstance(got, Planes), got
        check_planes(got, pb)
        cursor, gaps = 10, []
        reader.release(cursor)
        deadline = time.monotonic() + 10
        while cursor < 105 and time.monotonic() < deadline:
            if ring.committed <= cursor:
                time.sleep(0.0005)
                continue
            r = read_next(reader, cursor, 8)
            if isinstance(r, Gap):
                assert r.cause is GapCause.SOURCE_GAP and r.first_plane == cursor, r
                gaps.append(r)
                cursor = r.stop_plane
            else:
                check_planes(r, pb)
                assert r.first_plane >= 100
                cursor += r.n_planes
            reader.release(cursor)
        assert cursor == 105, f"stuck at plane {cursor} (committed {ring.committed})"
        assert sum(g.n_lost for g in gaps) == 90 and ring.get("source_gap_planes") == 90
        thread.join(5)
        assert not thread.is_alive()
    finally:
        ring.request_stop()  # a writer still waiting gives up
        thread.join(5)
        ring.close()


def test_block_policy_writer_stops_when_asked():
    ring = SpikeRing.create(4, GEOM, policy=WriterPolicy.BLOCK)
    try:
        assert ring.write(0, planes_for(0, 4, GEOM.plane_bytes), 0) == 4
        ring.request_stop()
        assert ring.write(4, planes_for(4, 4, GEOM.plane_bytes), 0) == 0  # would wait forever otherwise
    finally:
        ring.close()


def test_write_rejects_bad_input():
    ring = SpikeRing.create(4, GEOM)
    try:
        with pytest.raises(ValueError, match="packed planes"):
            ring.write(0, np.zeros((2, 5), np.uint8), 0)
        ring.write(5, planes_for(5, 2, GEOM.plane_bytes), 0)
        with pytest.raises(ValueError, match="must increase"):
            ring.write(3, planes_for(3, 1, GEOM.plane_bytes), 0)
        with pytest.raises(ValueError, match="capacity"):
            SpikeRing.create(1, GEOM)
    finally:
        ring.close()


def test_attach_by_name_sees_the_same_memory():
    ring = SpikeRing.create(8, GEOM, rate_hz=40_000.0)
    try:
        other = SpikeRing.attach(ring.name)
        ring.write(0, planes_for(0, 3, GEOM.plane_bytes), 123)
        assert other.committed == 3 and other.geometry == GEOM and other.capacity == 8
        got = RingReader(other).read(0, 3)
        assert isinstance(got, Planes) and (got.t_ns == 123).all()
        check_planes(got, GEOM.plane_bytes)
        del got  # a view of the reader's buffer, not of the segment; close is safe either way
        other.close()
    finally:
        ring.close()
    with pytest.raises(FileNotFoundError):
        SpikeRing.attach(ring.name)


def _fast_writer(name: str, total: int, block: int) -> None:
    ring = SpikeRing.attach(name)
    try:
        ring.set("state", int(WriterState.RUNNING))
        for first in range(0, total, block):
            n = min(block, total - first)
            ring.write(first, planes_for(first, n, ring.plane_bytes), time.monotonic_ns())
        ring.set("state", int(WriterState.ENDED))
    finally:
        ring.close()


@pytest.mark.parametrize("policy", [WriterPolicy.OVERWRITE, WriterPolicy.BLOCK])
def test_cross_process_writer(policy):
    geometry = Geometry(64, 64)  # 512-byte planes: copies long enough to race
    ring = SpikeRing.create(32, geometry, policy=policy)
    total = 6000
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_fast_writer, args=(ring.name, total, 5))
    try:
        proc.start()
        reader = RingReader(ring)
        cursor = delivered = lost = passed_over = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (ring.finished and cursor == ring.committed):
            if ring.committed <= cursor:
                time.sleep(0.0002)
                continue
            r = read_next(reader, cursor, 9)
            if isinstance(r, Planes):
                check_planes(r, geometry.plane_bytes)
                delivered += r.n_planes
                cursor += r.n_planes
            else:
                assert r.cause is GapCause.OVERRUN and r.first_plane == cursor
                lost += r.n_lost
                passed_over += r.stop_plane - r.first_plane - r.n_lost
                cursor = r.stop_plane
            reader.release(cursor)
        proc.join(10)
        assert proc.exitcode == 0
        assert cursor == total and delivered + lost + passed_over == total
        if policy is WriterPolicy.BLOCK:
            assert lost == 0 and passed_over == 0
    finally:
        if proc.is_alive():
            proc.kill()
        ring.close()


# -- the seqlock under stress: a writer process and a reader hammering a small ring ------------------
STRESS_GEOMETRY = Geometry(64, 512)  # 4096-byte planes: copies long enough to race
STRESS_WORDS = STRESS_GEOMETRY.plane_bytes // 8
STRESS_BLOCK = 8  # planes per write; a block's capture time is its first plane's index
STRESS_SECONDS = 2.0


def stress_planes(first: int, n: int) -> np.ndarray:
    """Planes whose every int64 word names the plane and the word (index * 4096 + word), so a plane
    mixing bytes of two writes of its slot differs from this anywhere the writes differ."""
    index = np.arange(first, first + n, dtype=np.int64)[:, None]
    return (index * 4096 + np.arange(STRESS_WORDS, dtype=np.int64)[None, :]).view(np.uint8)


def _stress_writer(name: str, seconds: float) -> None:
    ring = SpikeRing.attach(name)
    try:
        ring.set("state", int(WriterState.RUNNING))
        first, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            ring.write(first, stress_planes(first, STRESS_BLOCK), first)
            first += STRESS_BLOCK
        ring.set("state", int(WriterState.ENDED))
    finally:
        ring.close()


@pytest.mark.parametrize("sync", list(SyncMode))
def test_stress_every_plane_read_whole_is_bit_exact(sync):
    if sync is SyncMode.ATOMIC and ringsync.helper() is None:
        pytest.skip(f"the ring's atomic helper is {ringsync.helper_status()}")
    ring = SpikeRing.create(64, STRESS_GEOMETRY, sync=sync)
    proc = mp.get_context("spawn").Process(target=_stress_writer, args=(ring.name, STRESS_SECONDS))
    rng = np.random.default_rng(7)
    reads = planes_ok = gaps = 0
    try:
        proc.start()
        reader = RingReader(ring)
        deadline = time.monotonic() + STRESS_SECONDS + 120  # the writer's start-up is slow under emulation
        while time.monotonic() < deadline:
            finished = ring.finished
            committed = ring.committed
            if committed < ring.capacity:
                if finished:
                    break
                time.sleep(0.001)
                continue
            # any span of the newest ring's worth, often one starting at the plane being overwritten next
            start = committed - ring.capacity + int(rng.integers(0, ring.capacity))
            got = reader.read(start, int(rng.integers(start + 1, committed + 1)))
            reads += 1
            if isinstance(got, Gap):
                assert got.cause is GapCause.OVERRUN, got  # the writer never skips a plane
                gaps += 1
            else:
                words = got.planes.view(np.int64)
                expected = stress_planes(got.first_plane, got.n_planes).view(np.int64)
                torn = np.flatnonzero((words != expected).any(axis=1))
                assert len(torn) == 0, f"torn plane {got.first_plane + int(torn[0])} returned as valid ({sync.value})"
                index = np.arange(got.first_plane, got.first_plane + got.n_planes)
                assert np.array_equal(got.t_ns, index // STRESS_BLOCK * STRESS_BLOCK), "capture times torn"
                planes_ok += got.n_planes
            if finished:
                break
        proc.join(30)
        assert proc.exitcode == 0
        assert ring.finished, "the writer did not finish in time"
        assert planes_ok >= 1000, f"only {planes_ok} planes read whole in {reads} reads"
        assert gaps > 0, f"no read of {reads} met the writer: the race was not exercised"
    finally:
        if proc.is_alive():
            proc.kill()
        ring.close()


def test_attaching_uses_the_creators_sync_mode():
    with SpikeRing.create(4, GEOM, sync=SyncMode.LOCK) as ring:
        other = SpikeRing.attach(ring.name)
        try:
            assert ring.sync_mode is SyncMode.LOCK and other.sync_mode is SyncMode.LOCK
            other.write(0, planes_for(0, 3, GEOM.plane_bytes), 5)
            got = RingReader(ring).read(0, 3)
            assert isinstance(got, Planes) and list(got.t_ns) == [5, 5, 5]
            check_planes(got, GEOM.plane_bytes)
        finally:
            other.close()
    with pytest.raises(ValueError, match="'fast' is not a valid SyncMode"):
        SpikeRing.create(4, GEOM, sync="fast")


def test_without_the_helper_new_rings_lock_and_atomic_rings_refuse_to_attach(tmp_path):
    """A process with no C compiler (CC names a missing one, empty cache) falls back to the lock for
    its own rings and refuses an atomic ring rather than reading it unordered."""
    if ringsync.helper() is None:
        pytest.skip(f"the ring's atomic helper is {ringsync.helper_status()}")
    with SpikeRing.create(4, GEOM, sync=SyncMode.ATOMIC) as ring:
        script = (
            "import sys\n"
            "from edge.live.ring import SpikeRing\n"
            "from edge.live.ringsync import RingSyncError, SyncMode, choose_mode, helper_status\n"
            "from firmware_io.contract import Geometry\n"
            "assert choose_mode() is SyncMode.LOCK, choose_mode()\n"
            "with SpikeRing.create(4, Geometry(8, 32)) as own:\n"
            "    assert own.sync_mode is SyncMode.LOCK\n"
            "try:\n"
            "    SpikeRing.attach(sys.argv[1])\n"
            "except RingSyncError as exc:\n"
            "    print('refused:', exc)\n"
        )
        env = {**os.environ, "CC": "no-such-compiler-xyz", "SPIKE_EDGE_CACHE": str(tmp_path)}
        result = subprocess.run([sys.executable, "-c", script, ring.name], env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        assert "refused: this ring uses C11 atomics, but the helper is unavailable" in result.stdout
        assert "no-such-compiler-xyz" in result.stdout
