"""``spike-host record --scale``: a video of a live stream on a fixed brightness scale, so frames are
comparable (the default normalises each frame on its own); a scale for raw recordings is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge.cli.processes import free_port
from firmware_io.dat import write_dat

HOST = [sys.executable, "-m", "host"]


@pytest.fixture
def brightening(tmp_path):
    """Three 40-plane windows whose right half fires every 4th, 2nd and every plane (TFP 0.25, 0.5, 1)."""
    planes = np.zeros((120, 32, 32), dtype=np.uint8)
    for i, every in enumerate((4, 2, 1)):
        planes[40 * i : 40 * (i + 1) : every, :, 16:] = 1
    return write_dat(tmp_path / "brightening.dat", planes)


def right_half_means(path) -> list[float]:
    import imageio.v2 as imageio

    with imageio.get_reader(path) as reader:
        return [float(np.asarray(f)[:, 20:, 0].mean()) for f in reader]


@pytest.mark.parametrize("scale, expected", [("1", [64, 128, 255]), ("auto", [255, 255, 255])])
def test_recorded_video_brightness_follows_the_scale(start_daemon, brightening, tmp_path, scale, expected):
    pytest.importorskip("imageio_ffmpeg", reason="writing video needs the 'video' extra (imageio-ffmpeg)")
    daemon = start_daemon(["--replay", str(brightening), "--height", "32", "--width", "32", "--method", "tfp",
                           "--window", "40", "--hop", "40", "--wait-subscribers", "1"])
    out = tmp_path / f"{scale}.mp4"
    result = subprocess.run([*HOST, "record", daemon.pub, "--out", str(out), "--scale", scale, "--timeout-s", "30"],
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr + daemon.text()
    assert json.loads(result.stdout)["frames"] == 3
    assert daemon.wait(30) == 0
    assert right_half_means(out) == pytest.approx(expected, abs=6)  # lossy codec


@pytest.mark.parametrize("out, scale, message", [
    ("rec.npz", "0.6", "a display scale applies to video output (.mp4/.mkv/.avi/.gif); "),
    ("rec", "0.6", "keeps the raw values"),
    ("rec.mp4", "-2", "scale must be 'auto' or a positive number (the value shown white), got '-2'"),
])
def test_a_scale_that_cannot_apply_is_refused_before_subscribing(tmp_path, out, scale, message):
    result = subprocess.run([*HOST, "record", f"tcp://127.0.0.1:{free_port()}", "--out", str(tmp_path / out),
                             "--scale", scale, "--timeout-s", "30"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []
