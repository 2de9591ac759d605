"""The offline CLI contracts (info, reconstruct, bench decode) through real subprocesses, and the
TFP image of the shared REDS_BASE recordings against their ground truth."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from firmware_io.dat import write_dat

CLI = [sys.executable, "-m", "edge"]


def run(*args, check=True):
    result = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result


def reference_planes(path, h=250, w=400):
    """Independent decoding with numpy's own unpackbits, rows flipped."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, h * w // 8)
    return np.unpackbits(raw, axis=1, bitorder="little").reshape(-1, h, w)[:, ::-1]


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.fixture()
def recording(tmp_path):
    planes = (np.random.default_rng(1).random((120, 250, 400)) < 0.2).astype(np.uint8)
    return write_dat(tmp_path / "rec.dat", planes), planes


def test_info_json_fields(recording):
    path, planes = recording
    info = json.loads(run("info", path, "--json").stdout)
    assert (info["planes"], info["height"], info["width"]) == (120, 250, 400)
    assert info["firing_rate"] == pytest.approx(planes.mean())
    assert info["duration_s"] == pytest.approx(120 / 40_000)
    assert json.loads(run("info", path, "--json", "--rate-hz", 20000).stdout)["duration_s"] == pytest.approx(120 / 20_000)


def test_reconstruct_default_key_is_the_centre_plane(recording, tmp_path):
    path, planes = recording
    run("reconstruct", path, "--method", "tfp", "--window", 20, "--out", tmp_path / "a.npy")
    out = np.load(tmp_path / "a.npy")
    assert out.shape == (1, 250, 400) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], planes[50:70].mean(axis=0), atol=1e-6)  # key 60: [60-10, 60+10)


def test_reconstruct_every_keys_and_windows(recording, tmp_path):
    path, planes = recording
    summary = json.loads(run("reconstruct", path, "--method", "tfp", "--window", 41, "--every", 30,
                             "--out", tmp_path / "e.npy").stdout)
    keys = [20, 50, 80]  # first key whose window fits is 20; window of 110 would end at 131 > 120
    assert (summary["frames"], summary["first_key"], summary["last_key"]) == (3, 20, 80)
    out = np.load(tmp_path / "e.npy")
    for frame, key in zip(out, keys):
        np.testing.assert_allclose(frame, planes[key - 20 : key + 21].mean(axis=0), atol=1e-6)


def test_reconstruct_png_and_folder_outputs(recording, tmp_path):
    path, _ = recording
    run("reconstruct", path, "--method", "tfi", "--out", tmp_path / "one.png")
    assert Image.open(tmp_path / "one.png").size == (400, 250)
    run("reconstruct", path, "--method", "tfp", "--every", 40, "--out", tmp_path / "frames")
    assert len(list((tmp_path / "frames").glob("*.png"))) == 2


def test_reconstruct_errors_are_clear(recording, tmp_path):
    path, _ = recording
    bad_key = run("reconstruct", path, "--method", "tfp", "--key", 5, "--out", tmp_path / "x.npy", check=False)
    assert bad_key.returncode == 2 and "valid keys are 20..99" in bad_key.stderr
    truncated = tmp_path / "t.dat"
    truncated.write_bytes(path.read_bytes()[:-10])
    result = run("reconstruct", truncated, "--method", "tfp", "--out", tmp_path / "y.npy", check=False)
    assert result.returncode == 2 and "12490 trailing bytes" in result.stderr
    result = run("reconstruct", truncated, "--method", "tfp", "--allow-partial", "--out", tmp_path / "y.npy")
    assert np.load(tmp_path / "y.npy").shape == (1, 250, 400)
    assert not (tmp_path / "x.npy").exists()


def test_bench_decode_prints_rates():
    result = json.loads(run("bench", "decode", "--planes", 400, "--repeats", 1, "--json").stdout)
    assert result["planes"] == 400
    assert result["decode_planes_per_s"] > 0 and result["decode_tfp_planes_per_s"] > 0


def test_tfp_of_redsbase_matches_ground_truth(redsbase_clips, tmp_path):
    for dat, png in redsbase_clips:
        gt = np.asarray(Image.open(png).convert("L"), dtype=np.float64) / 255.0
        run("reconstruct", dat, "--method", "tfp", "--out", tmp_path / "r.npy")  # default window 41, key 150
        image = np.load(tmp_path / "r.npy")[0]
        # independent decoding agrees with the CLI; then the documented 0.6 rate scaling
        np.testing.assert_allclose(image, reference_planes(dat)[130:171].mean(axis=0), atol=1e-6)
        value = psnr(np.clip(image / 0.6, 0, 1), gt)
        flipped = psnr(np.clip(image[::-1] / 0.6, 0, 1), gt)
        assert value >= 22.0, f"{dat.name}: TFP PSNR {value:.2f} dB"
        assert flipped < value - 5, "rows must be flipped on read"
