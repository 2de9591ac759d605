"""The ring's creation checks (cap and free shared memory, before the segment exists) and the sweep of segments
left by owners that are gone, on real segments in /dev/shm."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from edge.live.ring import (HEADER_BYTES, HEADER_FIELDS, MAGIC, RING_PREFIX, SHM_DIR, RingTooLarge, SpikeRing,
                            check_ring_fits, shm_free_bytes, sweep_stale_rings)
from firmware_io.contract import Geometry

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason=f"no {SHM_DIR} here (POSIX shared memory on Linux)")
GEOM = Geometry(8, 32)


def own_segments() -> set[str]:
    return {p.name for p in SHM_DIR.glob(f"{RING_PREFIX}{os.getpid()}-*")}


def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_segment(name: str, owner_pid: int | None, start_ticks: int = 0, size: int = 1 << 16) -> os.PathLike:
    """A file in /dev/shm shaped like a ring segment: a header naming its owner (or none), then zeros."""
    header = np.zeros(HEADER_BYTES // 8, dtype="<i8")
    if owner_pid is not None:
        header[HEADER_FIELDS.index("magic")] = MAGIC
        header[HEADER_FIELDS.index("owner_pid")] = owner_pid
        header[HEADER_FIELDS.index("owner_start_ticks")] = start_ticks
    path = SHM_DIR / name
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.truncate(size)
    return path


def test_create_refuses_a_ring_over_its_cap_before_creating_it():
    before = own_segments()
    with pytest.raises(RingTooLarge, match=r"the ring needs 0.2 MB of shared memory, but the cap is 0.1 MB and /dev/shm has") as info:
        SpikeRing.create(3000, GEOM, max_bytes=120_000)  # 3000 x 32 bytes + stamps and times
    assert info.value.needed_bytes > info.value.max_bytes == 120_000
    assert own_segments() == before
    ring = SpikeRing.create(3000, GEOM, max_bytes=200_000)
    try:
        assert ring.nbytes <= 200_000 and ring.get("owner_pid") == os.getpid()
    finally:
        ring.close()


def test_a_ring_must_fit_the_free_shared_memory():
    free = shm_free_bytes()
    assert free is not None and free > 0
    with pytest.raises(RingTooLarge, match=rf"but {SHM_DIR} has [\d,.]+ MB free") as info:
        check_ring_fits(free + (1 << 30), None)
    assert info.value.free_bytes is not None and info.value.needed_bytes > info.value.free_bytes
    huge_planes = (free // Geometry(250, 400).plane_bytes) * 2
    before = own_segments()
    with pytest.raises(RingTooLarge, match="MB free"):
        SpikeRing.create(huge_planes, Geometry(250, 400))
    assert own_segments() == before
    check_ring_fits(4096, 8192)  # fits both


def test_sweep_removes_only_segments_whose_owner_is_gone(caplog):
    gone = dead_pid()
    live = SpikeRing.create(4, GEOM)
    paths = {
        "dead owner (header)": fake_segment(f"{RING_PREFIX}{os.getpid()}-test-a{gone}", gone),
        "dead owner (name only)": fake_segment(f"{RING_PREFIX}{gone}-test-b", None),
        "reused PID": fake_segment(f"{RING_PREFIX}{os.getpid()}-test-c", os.getpid(),
                                   start_ticks=live.get("owner_start_ticks") + 12345),
        "live owner": fake_segment(f"{RING_PREFIX}{os.getpid()}-test-d", os.getpid(),
                                   start_ticks=live.get("owner_start_ticks")),
        "owner unknown": fake_segment(f"{RING_PREFIX}nopid-test-e", None),
    }
    try:
        assert live.get("owner_start_ticks") > 0  # Linux: read from /proc
        with caplog.at_level(logging.WARNING, logger="edge.live.ring"):
            removed = sweep_stale_rings()
        removed_names = {r.name for r in removed}
        for case in ("dead owner (header)", "dead owner (name only)", "reused PID"):
            assert not os.path.exists(paths[case]), case
            assert os.path.basename(paths[case]) in removed_names, case
            assert f"removed stale spike ring {os.path.basename(paths[case])} (0.1 MB)" in caplog.text
        for case in ("live owner", "owner unknown"):
            assert os.path.exists(paths[case]), case
        assert live.name in own_segments(), "a live ring is never swept"
        assert f"left by PID {gone}, which is no longer running" in caplog.text
    finally:
        live.close()
        for path in paths.values():
            if os.path.exists(path):
                os.unlink(path)
