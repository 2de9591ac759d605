"""The shared-memory plane ring: exact planes or explicit gaps, totals add up, across processes."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.live.ring import GapCause, RingReader, SpikeRing, WriterPolicy, WriterState
from firmware_io.contract import Geometry

GEOM = Geometry(8, 32)  # 32 bytes per plane


def plane_content(index: int, plane_bytes: int) -> np.ndarray:
    """A plane that names its index: 8 bytes of index, then a fill byte derived from it."""
    plane = np.full(plane_bytes, index % 251, dtype=np.uint8)
    plane[:8] = np.frombuffer(np.int64(index).tobytes(), dtype=np.uint8)
    return plane


def planes_for(first: int, n: int, plane_bytes: int) -> np.ndarray:
    return np.stack([plane_content(i, plane_bytes) for i in range(first, first + n)]) if n else np.empty((0, plane_bytes), np.uint8)


def check_planes(read, plane_bytes: int) -> None:
    expected = planes_for(read.first_plane, read.n_planes, plane_bytes)
    assert np.array_equal(read.planes, expected), f"torn or wrong planes at {read.first_plane}"


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
        next_index = 0
        cursor = 0
        got_planes = gaps_overrun = gaps_source = 0

        def do_read(max_planes):
            nonlocal cursor, got_planes, gaps_overrun, gaps_source
            r = reader.read(max_planes, timeout_s=0.0)
            if r.kind in ("timeout", "end"):
                assert ring.committed <= cursor or cursor == 0 and not written
                return False
            assert r.first_plane == cursor, "reads must be contiguous"
            if r.kind == "planes":
                assert 1 <= r.n_planes <= max_planes
                check_planes(r, GEOM.plane_bytes)
                assert all(i in written for i in range(cursor, cursor + r.n_planes))
                assert cursor >= ring.committed - capacity
                got_planes += r.n_planes
                cursor += r.n_planes
            else:
                assert r.kind == "gap" and r.n_lost > 0
                lost = range(cursor, cursor + r.n_lost)
                if r.cause is GapCause.OVERRUN:
                    assert cursor < ring.committed - capacity or any(i in written for i in lost)
                    gaps_overrun += r.n_lost
                else:
                    assert not any(i in written for i in lost)
                    gaps_source += r.n_lost
                cursor += r.n_lost
            return True

        for op, n, jump in script:
            if op == "write":
                if jumps and jump and written:
                    next_index += jump
                ring.write(next_index, planes_for(next_index, n, GEOM.plane_bytes), time.monotonic_ns())
                written.update(range(next_index, next_index + n))
                next_index += n
            else:
                do_read(n)
        ring.set("state", int(WriterState.ENDED))
        while do_read(17):
            pass
        end = reader.read(1)
        assert end.kind == "end"
        first = min(written) if written else 0
        # Totals add up: every index from the first plane to the end was delivered or reported lost.
        assert got_planes + gaps_overrun + gaps_source == (next_index - first if written else 0)
        assert reader.overrun_planes == gaps_overrun and reader.source_gap_planes == gaps_source
        if not jumps:
            assert gaps_source == 0
            assert ring.get("overwritten_unread") == gaps_overrun
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
        while time.monotonic() < deadline:
            r = reader.read(5, timeout_s=0.5)
            if r.kind == "end":
                break
            if r.kind == "planes":
                assert r.first_plane == received
                check_planes(r, GEOM.plane_bytes)
                received += r.n_planes
                if received % 50 < 5:
                    time.sleep(0.002)  # a slow reader
            assert r.kind != "gap"
        thread.join(5)
        assert received == total
        assert ring.get("overwritten_unread") == 0
        assert ring.get("writer_waits") > 0
    finally:
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
        out = np.empty((3, GEOM.plane_bytes), np.uint8)
        t = np.empty(3, np.int64)
        assert other.copy_range(0, 3, out, t).all() and (t == 123).all()
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
        delivered = lost = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = reader.read(9, timeout_s=1.0)
            if r.kind == "end":
                break
            if r.kind == "planes":
                check_planes(r, geometry.plane_bytes)
                delivered += r.n_planes
            elif r.kind == "gap":
                assert r.cause is GapCause.OVERRUN
                lost += r.n_lost
        proc.join(10)
        assert proc.exitcode == 0
        assert delivered + lost == total
        assert reader.overrun_planes == lost
        if policy is WriterPolicy.BLOCK:
            assert lost == 0
    finally:
        if proc.is_alive():
            proc.kill()
        ring.close()
