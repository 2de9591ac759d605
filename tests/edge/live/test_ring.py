"""The shared-memory plane ring: exact planes or explicit gaps, totals add up, across processes."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.live.ring import Gap, GapCause, Planes, RingRead, RingReader, SpikeRing, WriterPolicy, WriterState
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
