"""The photo set (`spike-train data`) and the REDS-like generator, on pictures the tests draw themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from training.datasets import RATE_PER_INTENSITY, PairedSpikeDataset, natural_like_image
from training.photos import collect, find_candidates, load_photo_set, picture_key, read_manifest, split_of
from training.reds_like import RedsLikeSettings, make_reds_like_sample, mean_gradient, render_scene, warp_frames


def _picture_folder(root: Path, n: int = 8, size: tuple[int, int] = (400, 640)) -> Path:
    """``n`` procedural RGB 'photographs', plus files that must be skipped or merged."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        grey = natural_like_image(np.random.default_rng(i), *size)
        rgb = np.stack([grey, grey ** 1.1, grey ** 0.9], -1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(root / f"picture_{i}.jpg", quality=92)
    # the same picture at a lower resolution (merged with picture_0 by picture_key), a screenshot,
    # a flat image and one too small: none may add a photo
    Image.open(root / "picture_0.jpg").resize((320, 200)).save(root / "picture_0_320x200.jpg")
    Image.open(root / "picture_1.jpg").save(root / "screenshot.jpg")
    Image.fromarray(np.full((400, 640), 128, np.uint8)).save(root / "flat.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100), dtype=np.uint8)).save(root / "tiny.png")
    return root


def test_picture_key_merges_resolutions_and_variants():
    assert picture_key(Path("/w/Elephants_3840x2160.jpg")) == picture_key(Path("/w/Elephants.jpg"))
    assert picture_key(Path("/g/adwaita-d.webp")) == picture_key(Path("/g/adwaita-l.webp"))
    assert picture_key(Path("/p/Kite/contents/images/2560x1600.jpg")) == picture_key(
        Path("/p/Kite/contents/images/1920x1080.jpg"))
    assert picture_key(Path("/w/a.jpg")) != picture_key(Path("/w/b.jpg"))


def test_collect_writes_grey_scaled_split_digested_set(tmp_path):
    pictures = _picture_folder(tmp_path / "pictures")
    assert len(find_candidates([pictures])) == 10  # 8 pictures, flat, tiny (screenshot skipped, 320x200 merged)
    out = tmp_path / "set"
    records = collect(out, sources=[pictures], short_side_px=256, val_fraction=0.3)
    assert len(records) == 8  # the flat and the tiny pictures are not scenes
    for record in records:
        with Image.open(out / record.file) as image:
            assert image.mode == "L" and min(image.size) == 256
        assert record.split == split_of(record.source_sha256, 0.3)
    assert read_manifest(out) == records
    # splits are a pure function of the source: collecting again changes nothing
    assert collect(tmp_path / "again", sources=[pictures], short_side_px=256, val_fraction=0.3) == [
        type(r)(**{**r.__dict__}) for r in records]
    n_train = sum(r.split == "train" for r in records)
    if 0 < n_train < len(records):
        assert len(load_photo_set(out, "train")) == n_train
    # a changed file is refused, not silently trained on
    victim = next(r for r in records)
    (out / victim.file).write_bytes((out / victim.file).read_bytes()[:-10])
    with pytest.raises(ValueError, match="manifest digest"):
        load_photo_set(out, victim.split)


def test_collect_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no usable photographs"):
        collect(tmp_path / "out", sources=[tmp_path])
    with pytest.raises(ValueError, match="val_fraction"):
        collect(tmp_path / "out", sources=[tmp_path], val_fraction=1.0)
    with pytest.raises(FileNotFoundError, match="spike-train data"):
        read_manifest(tmp_path / "nothing")


def test_warp_frames_translates_by_velocity():
    canvas = natural_like_image(np.random.default_rng(3), 96, 96)
    times = np.array([0.0, 10.0], np.float32)
    frames = warp_frames(canvas, times, 32, 40, (0.5, -0.3), 0.0)
    # at t = 10 the window has moved by (5, -3) pixels
    np.testing.assert_allclose(frames[1][:-5, 3:], frames[0][5:, :-3], atol=1e-5)
    zoomed = warp_frames(canvas, np.array([0.0], np.float32), 32, 40, (0.0, 0.0), 0.01)
    np.testing.assert_allclose(zoomed[0], frames[0], atol=1e-6)  # zoom only acts for t != 0


def _photos(n: int = 4) -> list[np.ndarray]:
    return [(natural_like_image(np.random.default_rng(10 + i), 300, 400) * 255).astype(np.uint8) for i in range(n)]


def test_reds_like_sample_follows_the_rate_convention_and_is_deterministic():
    settings = RedsLikeSettings(window_planes=61, crop=32, procedural_fraction=0.0)
    photos = _photos()
    a = make_reds_like_sample(settings, photos, np.random.default_rng([1, 2]))
    b = make_reds_like_sample(settings, photos, np.random.default_rng([1, 2]))
    np.testing.assert_array_equal(a.planes, b.planes)
    assert a.planes.shape == (61, 32, 32) and a.planes.dtype == np.uint8 and set(np.unique(a.planes)) <= {0, 1}
    assert a.target.shape == (32, 32) and 0.0 <= a.target.min() and a.target.max() <= RATE_PER_INTENSITY + 1e-6
    # firing rate = 0.6 x intensity: over many samples the spike rate matches the targets' mean
    samples = [make_reds_like_sample(settings, photos, np.random.default_rng([7, i])) for i in range(12)]
    rate = np.mean([s.planes.mean() for s in samples])
    target = np.mean([s.target.mean() for s in samples])
    assert abs(rate - target) < 0.1 * target


def test_render_scene_prefers_detailed_regions():
    photos = _photos(2)
    times = np.zeros(1, np.float32)
    detailed = RedsLikeSettings(window_planes=1, crop=64, min_gradient=1.0, region_tries=8, collage_probability=0.0,
                                object_probability=0.0)
    single = RedsLikeSettings(window_planes=1, crop=64, region_tries=1, collage_probability=0.0, object_probability=0.0)
    best = np.mean([mean_gradient(render_scene(detailed, photos, np.random.default_rng(i), times, 64, 64)[0])
                    for i in range(6)])
    first = np.mean([mean_gradient(render_scene(single, photos, np.random.default_rng(i), times, 64, 64)[0])
                     for i in range(6)])
    assert best > first


def test_data_command_writes_photos_and_eval_clips(tmp_path):
    from training.cli import main

    pictures = _picture_folder(tmp_path / "pictures", n=10)
    out, val = tmp_path / "photos", tmp_path / "val"
    result = CliRunner().invoke(main, ["data", "--out", str(out), "--source", str(pictures), "--short-side", "256",
                                       "--val-fraction", "0.5", "--val-clips", "1", "--val-out", str(val)])
    assert result.exit_code == 0, result.output
    assert "photo set: 10 photos" in result.output
    clips = PairedSpikeDataset(val, 61)
    sample = clips[0]
    assert sample.planes.shape == (61, 250, 400) and sample.target.shape == (250, 400)
    generator = json.loads((val / "generator.json").read_text())
    assert generator["generator"]["version"] >= 1 and generator["generator"]["rate_per_intensity"] == RATE_PER_INTENSITY


def test_fit_on_reds_like_data_validates_on_held_out_photos(tmp_path):
    pytest.importorskip("torch")
    from training.fit import FitConfig, fit

    collect(tmp_path / "photos", sources=[_picture_folder(tmp_path / "pictures", n=10)], short_side_px=256,
            val_fraction=0.5)
    config = FitConfig(model="lrn", data="reds-like", photos=str(tmp_path / "photos"), steps=2, batch=2, crop=16,
                       val_every=2, val_samples=1, val_crop=16, out=str(tmp_path / "run"), threads=1, progress=False,
                       precision="bf16")
    result = fit(config)
    assert result.step == 2 and np.isfinite(result.best_val_psnr) and np.isfinite(result.last_loss)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data_generator"]["version"] >= 1 and summary["config"]["precision"] == "bf16"
