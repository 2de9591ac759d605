"""``spike-edge run`` against inputs and leftovers that used to slip through, as real processes: a replay shorter
than a window, rings that do not fit, the segments of a daemon killed with its process group, and a recording
truncated under a running replay."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from daemon_harness import daemon_env
from edge.cli.processes import EDGE, loopback_urls
from edge.live.ring import RING_PREFIX, SHM_DIR, shm_free_bytes
from edge.protocol.client import ControlTimeout, build_request
from edge.protocol.client import request as control_request
from firmware_io.contract import Geometry
from firmware_io.dat import write_dat

GEOM = Geometry(48, 80)
GEOM_ARGS = ["--height", str(GEOM.height), "--width", str(GEOM.width)]


def clip(path: Path, n_planes: int) -> Path:
    return write_dat(path, (np.random.default_rng(0).random((n_planes, *GEOM.shape)) < 0.2).astype(np.uint8))


def run_to_end(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    pub, ctl = loopback_urls()
    return subprocess.run([*EDGE, "run", *args, "--bind", pub, "--control", ctl], capture_output=True, text=True,
                          timeout=timeout, env=daemon_env())


def wait_running(ctl: str, log, timeout_s: float = 30.0) -> None:
    """Until the daemon at ``ctl`` reports state ``running``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reply = control_request(ctl, build_request("health", None), timeout_s=1.0)
        except ControlTimeout:
            continue
        if reply.get("ok") and reply.get("state") == "running":
            return
        time.sleep(0.05)
    pytest.fail(f"daemon not running within {timeout_s} s; log:\n{log()}")


def test_replay_shorter_than_a_window_exits_2_like_reconstruct(tmp_path):
    path = clip(tmp_path / "short.dat", 30)
    result = run_to_end("--replay", str(path), *GEOM_ARGS)
    assert result.returncode == 2, result.stderr
    assert "short.dat has 30 planes, fewer than one 41-plane window (tfp): there is no frame to publish" in result.stderr
    offline = subprocess.run([*EDGE, "reconstruct", str(path), *GEOM_ARGS, "--method", "tfp", "--every", "40",
                              "--out", str(tmp_path / "o.npy")], capture_output=True, text=True, timeout=60)
    assert offline.returncode == 2 and "fewer than one 41-plane window" in offline.stderr
    looped = run_to_end("--replay", str(path), *GEOM_ARGS, "--window", "20",  # a window that fits: it runs
                        "--wait-subscribers", "0")
    assert looped.returncode == 0, looped.stderr


def test_ring_over_the_cap_or_the_free_shared_memory_exits_2(tmp_path):
    result = run_to_end("--simulate", "--ring-planes", "100000")  # 100,000 x 12,500 bytes
    assert result.returncode == 2, result.stderr
    assert ("the ring needs 1,251.6 MB of shared memory, but the cap is 1,024.0 MB" in result.stderr
            and "lower --ring-planes (100000 planes of 250x400) or raise --max-ring-mb (1024)" in result.stderr)
    assert run_to_end("--simulate", "--ring-planes", "4000", "--max-ring-mb", "10").returncode == 2
    free = shm_free_bytes()
    if free is None:
        pytest.skip(f"no {SHM_DIR} here")
    planes = free // 12_500 + 100_000
    result = run_to_end("--simulate", "--ring-planes", str(planes), "--max-ring-mb", str(10**9))
    assert result.returncode == 2, result.stderr
    assert f"MB free: lower --ring-planes ({planes} planes of 250x400)" in result.stderr
    assert f"{SHM_DIR} has" in result.stderr and "the cap is 1,000,000,000.0 MB" in result.stderr
    bad = run_to_end("--simulate", "--max-ring-mb", "0")
    assert bad.returncode == 2 and "max_ring_mb must be >= 1, got '0'" in bad.stderr


def shm_files_mapped_by(pgid: int) -> set[Path]:
    """The /dev/shm files mapped by the processes of group ``pgid`` (its ring and its semaphores)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[2]) != pgid:
                continue
            maps = (proc / "maps").read_text()
        except (OSError, ValueError):
            continue
        found |= {Path(line.split(None, 5)[5]) for line in maps.splitlines()
                  if len(line.split(None, 5)) == 6 and line.split(None, 5)[5].startswith(f"{SHM_DIR}/")}
    return found


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason=f"no {SHM_DIR} here (POSIX shared memory on Linux)")
def test_segments_of_a_daemon_killed_with_its_group_are_swept_by_the_next(tmp_path, start_daemon):
    pub, ctl = loopback_urls()
    log_path = tmp_path / "killed.log"
    with open(log_path, "wb") as log:
        first = subprocess.Popen([*EDGE, "run", "--simulate", "--bind", pub, "--control", ctl], stdout=log,
                                 stderr=subprocess.STDOUT, env=daemon_env(), start_new_session=True)
    leftovers: set[Path] = set()
    try:
        wait_running(ctl, log_path.read_text)
        rings = sorted(SHM_DIR.glob(f"{RING_PREFIX}{first.pid}-*"))
        assert len(rings) == 1, rings
        leftovers = shm_files_mapped_by(first.pid)
        assert rings[0] in leftovers
        os.killpg(first.pid, signal.SIGKILL)  # the daemon, its capture process, its resource tracker
        first.wait(10)
        time.sleep(0.2)
        assert rings[0].exists(), "nobody is left to remove it"
        second = start_daemon(["--simulate"])
        wait_running(second.ctl, second.text)
        assert not rings[0].exists()
        assert (f"removed stale spike ring {rings[0].name} (50.1 MB) left by PID {first.pid}, which is no longer "
                f"running") in second.text()
        second.terminate()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        for path in leftovers:  # the killed group's own semaphores, which nothing can attribute later
            path.unlink(missing_ok=True)


def test_recording_truncated_under_a_running_replay_is_a_source_failure(tmp_path, start_daemon):
    path = clip(tmp_path / "clip.dat", 4000)  # 0.1 s at 40 kHz, looped in real time
    d = start_daemon(["--replay", str(path), *GEOM_ARGS, "--realtime", "--loop"])
    wait_running(d.ctl, d.text)
    time.sleep(0.3)
    os.truncate(path, 100 * GEOM.plane_bytes)
    assert d.wait(10) == 3, d.text()
    text = d.text()
    assert "clip.dat shrank from 1920000 to 48000 bytes while open" in text, text
    assert "source failed" in text
