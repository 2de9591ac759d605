"""First-use behaviour of the offline commands: ``simulate`` never writes fewer planes than asked
without saying so, and ``reconstruct --scale`` gives pictures a brightness comparable across frames."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from firmware_io.contract import Geometry
from firmware_io.dat import DatReader, write_dat

EDGE = [sys.executable, "-m", "edge"]


def run(*args):
    return subprocess.run([*EDGE, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray((rng.random((16, 24)) * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def test_simulate_refuses_more_planes_than_the_images_make(images, tmp_path):
    out = tmp_path / "sim.dat"
    result = run("simulate", "--images", images, "--planes", 30, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (f"error: --planes 30 asks for more than the 20 images in {images} make: 20 frames x 1 plane(s) per "
            "frame = 20 planes; give --planes 20 or fewer, or --planes-per-frame 2 (40 planes)") in result.stderr
    assert not out.exists()
    # what the message offers works: 2 planes per image make the 30 planes asked for
    ok = run("simulate", "--images", images, "--planes", 30, "--planes-per-frame", 2, "--out", out)
    assert ok.returncode == 0 and json.loads(ok.stdout)["planes"] == 30 and ok.stderr == "", ok.stderr
    with DatReader(out, Geometry(16, 24)) as reader:
        assert reader.n_planes == 30


def test_simulate_warns_when_a_video_runs_out(images, tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="reading video needs the 'video' extra (imageio-ffmpeg)")
    import imageio.v2 as imageio

    video = tmp_path / "clip.mp4"
    with imageio.get_writer(video, fps=25, codec="libx264", macro_block_size=1) as writer:
        for path in sorted(images.iterdir()):
            writer.append_data(np.asarray(Image.open(path)))
    out = tmp_path / "sim.dat"
    result = run("simulate", "--video", video, "--planes", 30, "--out", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["planes"], summary["planes_requested"]) == (20, 30)
    assert result.stderr.startswith(f"warning: --planes 30 asks for more than the 20 frames of {video} make")
    assert result.stderr.rstrip().endswith("wrote the 20 planes they make")


@pytest.fixture
def brightening(tmp_path):
    """Three 40-plane windows in which the right half fires every 4th, every 2nd and every plane (TFP
    0.25, 0.5, 1.0) and the left half never: per frame the pictures look alike, on a fixed scale they brighten."""
    planes = np.zeros((120, 8, 16), dtype=np.uint8)
    for i, every in enumerate((4, 2, 1)):
        planes[40 * i : 40 * (i + 1) : every, :, 8:] = 1
    return write_dat(tmp_path / "brightening.dat", planes)


def pictures(folder):
    return [np.asarray(Image.open(p)) for p in sorted(folder.iterdir())]


def test_reconstruct_scale_makes_brightness_comparable_across_frames(brightening, tmp_path):
    common = ["reconstruct", brightening, "--height", 8, "--width", 16, "--method", "tfp", "--window", 40]
    for name, scale in (("auto", "auto"), ("fixed", "1")):
        result = run(*common, "--every", 40, "--out", tmp_path / name, "--scale", scale)
        assert result.returncode == 0, result.stderr
    auto, fixed = pictures(tmp_path / "auto"), pictures(tmp_path / "fixed")
    assert len(auto) == len(fixed) == 3
    assert all(int(p[:, 8:].min()) == 255 and int(p[:, :8].max()) == 0 for p in auto)  # each frame on its own
    assert [int(p[0, 12]) for p in fixed] == [64, 128, 255]  # v / 1 * 255: 0.25, 0.5, 1.0
    assert all(int(p[:, :8].max()) == 0 for p in fixed)


@pytest.mark.parametrize("scale, out, message", [
    ("bright", "x.png", "scale must be 'auto' or a positive number (the value shown white), got 'bright'"),
    ("0", "x.png", "got '0'"),
    ("0.5", "x.npy", "x.npy holds raw values; a display scale (0.5) applies to pictures only"),
])
def test_reconstruct_refuses_a_bad_scale(brightening, tmp_path, scale, out, message):
    result = run("reconstruct", brightening, "--height", 8, "--width", 16, "--method", "tfp", "--window", 40,
                 "--out", tmp_path / out, "--scale", scale)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / out).exists()
