"""The live sources behind ``spike-edge run``, end to end: the camera (fake SpikeLink library built from C,
dummy-file link; 250x400 .dat planes and the 1000x1000 camera's PCIe rows) and the simulated camera, each in a
real daemon subprocess on loopback, received with ``host.subscriber.Subscriber``; plus the CLI's usage errors.

Daemons come from ``start_daemon`` (``daemon_harness``): every wait has a deadline and every daemon
still alive at the end of a test is killed.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from daemon_harness import Daemon

from edge.cli import main as edge_main
from edge.cli.processes import EDGE, loopback_urls
from firmware_io.contract import Geometry
from firmware_io.fake_spikelink import FakeState
from firmware_io.layouts import PCIE_GEOMETRY
from firmware_io.pcie import write_pcie
from firmware_io.spikelink import LIBRARY_ENV
from host.subscriber import Received, Subscriber

CAMERA_GEOMETRY = Geometry(250, 400)  # the fake SDK knows the SDK's modes only: 400x250 is the smallest
CAMERA_RATE_HZ = 4000  # dummy-file replay rate: 100 blocks of 40 planes per second
HOP = 40


def collect(sub: Subscriber, until, timeout_s: float, what: str, daemon: Daemon) -> list[Received]:
    """Receive until ``until(items)`` is true; fail with the daemon's log at the deadline."""
    items: list[Received] = []
    deadline = time.monotonic() + timeout_s
    while not until(items):
        left = deadline - time.monotonic()
        if left <= 0 or daemon.proc.poll() is not None:
            frames = [i for i in items if i.kind == "frame"]
            pytest.fail(f"{what}: not within {timeout_s} s ({len(frames)} frames, daemon exit "
                        f"{daemon.proc.poll()}); log:\n{daemon.text()}")
        item = sub.next(timeout_s=min(left, 0.5))
        if item is not None:
            items.append(item)
    return items


def endpoints() -> list[str]:
    """``--bind PUB --control CTL`` on free loopback ports, for a daemon run to completion here."""
    pub, ctl = loopback_urls()
    return ["--bind", pub, "--control", ctl]


def frames_of(items: list[Received]) -> list[Received]:
    return [i for i in items if i.kind == "frame"]


# -- the camera, through the fake SDK ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def camera_dat(tmp_path_factory) -> Path:
    """400 raw planes of the 400x250 mode (a .dat has no header: any bytes of whole planes are valid)."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("camera") / "camera.dat"
    path.write_bytes(rng.integers(0, 256, 400 * CAMERA_GEOMETRY.plane_bytes, dtype=np.uint8).tobytes())
    return path


def camera_args(fake_lib: str, dat: Path, *extra: str) -> list[str]:
    return ["--camera", "--camera-library", fake_lib, "--camera-link", "dummy-file", "--camera-file", str(dat),
            "--camera-mode", "400x250-40k", "--loop", "--rate-hz", str(CAMERA_RATE_HZ), "--hop", str(HOP), *extra]


def test_camera_dummy_file_streams_frames(fake_lib, camera_dat, start_daemon):
    d = start_daemon(camera_args(fake_lib, camera_dat))
    with Subscriber(d.pub, topics=("frame",), heartbeat_timeout_s=10) as sub:
        items = collect(sub, lambda got: len(frames_of(got)) >= 10, 20, "10 camera frames", d)
        described = d.request("describe")
        assert described["geometry"] == [250, 400] and described["rate_hz"] == CAMERA_RATE_HZ
        assert described["source"]["kind"] == "camera" and described["source"]["camera_link"] == "dummy-file"
        assert described["source"]["camera_mode"] == "400x250-40k"
        frames = frames_of(items)
        assert all(f.image.shape == (250, 400) for f in frames)
        keys = [f.header.key_plane for f in frames]
        assert keys == sorted(keys) and all(k % HOP == 20 for k in keys)
        stats = d.request("stats")["stats"]
        assert stats["source_errors"] == 0 and stats["camera_reconnects"] == 0
        # what the library said: IsOpen, GetState's number (the fake's RUNNING), no error
        status = d.request("health")["source_status"]
        assert status["sdk_is_open"] is True and status["sdk_state"] == FakeState.RUNNING and status["connected"]
        assert status["link"] == "dummy-file" and status["layout"] == "dat" and status["cusum"] == 50
        assert status["last_error"] is None and status["errors"] == 0 and status["reconnects"] == 0
        assert d.request("describe")["source_status"]["library"] == fake_lib
        d.terminate(within_s=1.0)


def test_camera_vanishing_is_reported_and_frames_continue(fake_lib, camera_dat, start_daemon):
    # the device vanishes after 80 blocks (0.8 s of stream) and is back 300 ms later
    d = start_daemon(camera_args(fake_lib, camera_dat),
                     env={"FAKE_SPIKELINK_VANISH_AFTER_BLOCKS": "80", "FAKE_SPIKELINK_COMEBACK_MS": "300"})
    with Subscriber(d.pub, heartbeat_timeout_s=10) as sub:
        outage_planes = int(0.3 * CAMERA_RATE_HZ)  # at least the comeback time at the replay rate

        def after_outage(got: list[Received]) -> bool:
            keys = [f.header.key_plane for f in frames_of(got)]
            jumps = [i for i in range(1, len(keys)) if keys[i] - keys[i - 1] >= outage_planes]
            return bool(jumps) and len(keys) - jumps[0] >= 10  # 10 frames from the reconnected camera

        items = collect(sub, after_outage, 25, "frames after the camera came back", d)
        frames = frames_of(items)
        keys = [f.header.key_plane for f in frames]
        jump = next(i for i in range(1, len(keys)) if keys[i] - keys[i - 1] >= outage_planes)
        assert frames[jump].header.discontinuity, "the first frame after the outage must carry discontinuity"
        assert keys == sorted(keys), "plane indices keep increasing across the reconnect"
        # the counters are in the heartbeats, and in stats
        heartbeat_stats = collect(sub, lambda got: any(i.kind == "heartbeat" for i in got), 3, "a heartbeat", d)
        hb = [i.heartbeat.stats for i in heartbeat_stats if i.kind == "heartbeat"][-1]
        stats = d.request("stats")["stats"]
        for s in (hb, stats):
            assert s["source_errors"] >= 1 and s["camera_reconnects"] >= 1 and s["source_discontinuities"] >= 1, s
            assert s["discontinuities"] == s["source_discontinuities"], "the deprecated alias"
            assert s["capture_gap_planes"] >= outage_planes, s
        health = d.request("health")
        assert any(e.startswith("error:") for e in health["recent_events"]), health
        assert any(e.startswith("reconnect:") for e in health["recent_events"]), health
        status = health["source_status"]  # the library's side of it: its refusals while gone, then back
        assert status["reconnects"] >= 1 and status["errors"] >= 1 and status["last_error"], status
        d.terminate(within_s=1.0)
    log = d.text()
    assert "capture error: camera disconnected" in log and "capture reconnect" in log, log


def test_camera_missing_library_exits_with_source_failure(tmp_path, camera_dat):
    missing = tmp_path / "libspikelink-missing.so"
    base = {k: v for k, v in os.environ.items() if k != LIBRARY_ENV}
    by_option = subprocess.run([*EDGE, "run", "--camera", "--camera-library", str(missing),
                                *endpoints()], capture_output=True, timeout=30, env=base)
    by_env = subprocess.run([*EDGE, "run", "--camera", "--camera-file", str(camera_dat), *endpoints()],
                            capture_output=True, timeout=30, env={**base, LIBRARY_ENV: str(missing)})
    neither = subprocess.run([*EDGE, "run", "--camera", *endpoints()], capture_output=True, timeout=30, env=base)
    for result in (by_option, by_env, neither):
        err = result.stderr.decode()
        assert result.returncode == 3, err  # ExitCode.SOURCE_FAILED
        assert LIBRARY_ENV in err and "--camera-library" in err, err
    assert str(missing) in by_option.stderr.decode() and str(missing) in by_env.stderr.decode()


@pytest.fixture(params=["pcie1k", "redsbase"])
def camera_recording(request, tmp_path_factory) -> tuple[Path, str, str]:
    """(raw file, --camera-mode, layout): the 1000x1000 camera's PCIe rows made from a known array, or a
    REDS_BASE clip (250x400 .dat planes)."""
    if request.param == "pcie1k":
        rng = np.random.default_rng(11)
        rate = rng.random(PCIE_GEOMETRY.shape) * 0.3  # a static scene: per-pixel firing rates
        planes = rng.random((200, *PCIE_GEOMETRY.shape)) < rate
        path = tmp_path_factory.mktemp("camera") / "pcie.dat"
        write_pcie(path, planes)
        return path, "1000x1000-20k", "pcie1k"
    clips = request.getfixturevalue("redsbase_clips")
    return clips[0][0], "400x250-40k", "dat"


def test_camera_dummy_link_stream_equals_offline_reconstruction(fake_lib, camera_recording, start_daemon, tmp_path):
    """The library replays the file itself (dummy link, no repeat); with --policy all every window of it is
    published, equal to ``spike-edge reconstruct --every 40`` of the same file frame for frame."""
    path, mode, layout = camera_recording
    offline = tmp_path / "offline.npy"
    r = subprocess.run([*EDGE, "reconstruct", str(path), "--method", "tfp", "--every", str(HOP), "--out", str(offline)],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    expected = np.load(offline)
    d = start_daemon(["--camera", "--camera-library", fake_lib, "--camera-file", str(path), "--camera-mode", mode,
                      "--rate-hz", "2000", "--hop", str(HOP), "--policy", "all", "--ring-planes", "400",
                      "--wait-subscribers", "1"])
    deadline = time.monotonic() + 20
    while (status := d.request("health")["source_status"]) is None:
        assert time.monotonic() < deadline, d.text()
        time.sleep(0.05)
    assert status["layout"] == layout and status["link"] == "dummy-file" and status["errors"] == 0, status
    with Subscriber(d.pub, heartbeat_timeout_s=10) as sub:
        frames = []
        while sub.last_eos is None:
            assert time.monotonic() < deadline, f"no end-of-stream; log:\n{d.text()}"
            item = sub.next(timeout_s=0.5)
            if item is not None and item.kind == "frame":
                frames.append(item)
    assert d.wait(10) == 0, d.text()
    assert [f.header.key_plane for f in frames] == [HOP // 2 + HOP * i for i in range(len(expected))]
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), expected)


# -- the simulated camera --------------------------------------------------------------------------
def test_simulate_publishes_frames_and_exits_on_sigterm(start_daemon):
    d = start_daemon(["--simulate", "shapes", "--height", "64", "--width", "96"])
    with Subscriber(d.pub, heartbeat_timeout_s=10) as sub:
        items = collect(sub, lambda got: len(frames_of(got)) >= 10 and any(i.kind == "heartbeat" for i in got),
                        20, "10 simulated frames and a heartbeat", d)
        frames = frames_of(items)
        assert all(f.image.shape == (64, 96) and np.isfinite(f.image).all() for f in frames)
        assert any(f.image.max() > 0 for f in frames), "the scene produced spikes"
        described = d.request("describe")
        assert described["source"]["kind"] == "simulate" and described["source"]["scene"] == "shapes"
        assert described["rate_hz"] == 2000.0  # the simulated camera's default rate, not the camera's 40 kHz
        hb = [i.heartbeat.stats for i in items if i.kind == "heartbeat"][-1]
        for key in ("source_late_blocks", "source_behind_ms", "capture_gap_planes", "ring_overwritten_unread"):
            assert key in hb, f"{key} missing from the heartbeat's stats"
        assert hb["capture_gap_planes"] == 0, "the simulator never skips planes"
        d.terminate(within_s=1.0)
        deadline = time.monotonic() + 1.0
        while sub.last_eos is None and time.monotonic() < deadline:
            sub.next(timeout_s=0.1)
        assert sub.last_eos is not None and "SIGTERM" in sub.last_eos.reason, "end-of-stream announced"


# -- usage errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["--camera", "--height", "64"], "disagree with --camera-mode"),
    (["--camera", "--camera-mode", "1000x1000-20k", "--width", "400"], "disagree with --camera-mode"),
    (["--camera", "--rate-hz", "1000"], "disagrees with --camera-mode"),
    (["--camera", "--camera-link", "dummy-file"], "--camera-file"),
    (["--camera", "--camera-link", "usb", "--camera-file", "x.dat"], "dummy-file"),
    (["--camera", "--camera-link", "usb"], "init structure of the USB link (type 0x21) is not published"),
    (["--camera", "--camera-link", "ethernet"], "init structure of the ETHERNET link"),
    (["--camera", "--camera-layout", "pcie1k"], "does not fit --camera-mode 400x250-40k"),
    (["--camera", "--camera-cusum", "0"], "--camera-cusum"),
    (["--camera", "--camera-channels", "4"], "0..3"),
    (["--camera", "--block-planes", "40"], "--block-planes applies to --replay or --simulate, not --camera"),
    (["--camera", "--loop"], "--loop"),
    (["--camera", "--camera-link", "serial"], "dummy-file"),  # not a choice: the choices are listed
    (["--camera", "--camera-mode", "640x480-40k"], "400x250-40k"),
    (["--simulate", "--camera-library", "lib.so"], "--camera-library applies to --camera"),
    (["--simulate", "shapes", "--camera-file", "x.dat"], "--camera-file applies to --camera"),
    (["--simulate", "--loop"], "--loop applies to"),
    (["--simulate", "--speed", "2"], "--speed applies to --replay"),
    (["--replay", "x.dat", "--camera-mode", "400x250-20k"], "--camera-mode applies to --camera"),
    (["--replay", "x.dat", "--planes", "100"], "--planes applies to --simulate"),
    (["--camera", "--simulate"], "exactly one source"),
    (["--simulate", "--rate-hz", "0"], "--rate-hz"),
])
def test_bad_source_combinations_are_usage_errors(args, expected):
    result = CliRunner().invoke(edge_main, ["run", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output, result.output


def test_camera_file_of_the_wrong_size_is_bad_input(fake_lib, tmp_path):
    bad = tmp_path / "odd.dat"
    bad.write_bytes(b"\x00" * (CAMERA_GEOMETRY.plane_bytes + 1))
    result = subprocess.run([*EDGE, "run", *camera_args(fake_lib, bad), *endpoints()],
                            capture_output=True, timeout=30)
    assert result.returncode == 2, result.stderr.decode()
    assert "odd.dat" in result.stderr.decode() and "12500-byte planes" in result.stderr.decode()
