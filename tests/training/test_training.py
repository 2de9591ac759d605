"""Training stack: datasets, metrics, fit (loss, resume, DDP), SpikeCLIP recipe, evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from firmware_io.dat import write_dat  # noqa: E402
from firmware_io.npz import write_uhsr_npz  # noqa: E402
from training.datasets import (  # noqa: E402
    RATE_PER_INTENSITY,
    PairedSpikeDataset,
    SyntheticSettings,
    SyntheticSpikeDataset,
    UHSRDataset,
    class_name_of,
    find_pairs,
    intensity_to_rate,
    rate_to_intensity,
)
from training.fit import FitConfig, Losses, StepBatches, build_model, fit  # noqa: E402
from training.metrics import psnr, ssim  # noqa: E402


def _write_png(path: Path, grey: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grey).save(path)


# ------------------------------------------------------------------------------------ datasets


def test_rate_convention_round_trip():
    intensity = np.linspace(0, 1, 11, dtype=np.float32)
    assert RATE_PER_INTENSITY == 0.6
    np.testing.assert_allclose(rate_to_intensity(intensity_to_rate(intensity)), intensity, atol=1e-6)
    assert rate_to_intensity(np.float32(0.9)) == 1.0 and rate_to_intensity(np.float32(-0.1)) == 0.0
    t = torch.tensor([0.3, 0.7])
    assert torch.allclose(rate_to_intensity(t), torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize("layout", ["spike_gt", "flat", "nested"])
def test_paired_dataset_layouts(tmp_path, layout):
    rng = np.random.default_rng(1)
    planes = (rng.random((21, 16, 24)) < 0.3).astype(np.uint8)
    gt = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    if layout == "spike_gt":
        dat, png = tmp_path / "spike" / "a.dat", tmp_path / "gt" / "a.png"
    elif layout == "nested":
        dat, png = tmp_path / "spike" / "000" / "00000001.dat", tmp_path / "gt" / "000" / "00000001.png"
    else:
        dat, png = tmp_path / "a.dat", tmp_path / "a.png"
    dat.parent.mkdir(parents=True, exist_ok=True)
    write_dat(dat, planes)
    _write_png(png, gt)
    assert find_pairs(tmp_path) == [(dat, png)]
    sample = PairedSpikeDataset(tmp_path, window_planes=11)[0]
    np.testing.assert_array_equal(sample.planes, planes[5:16])  # centre plane 10, window [5, 16)
    np.testing.assert_allclose(sample.target, gt.astype(np.float32) / 255 * 0.6, atol=1e-6)


def test_paired_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no spike/ground-truth pairs"):
        find_pairs(tmp_path)
    with pytest.raises(FileNotFoundError):
        find_pairs(tmp_path / "missing")


def test_uhsr_dataset_splits(tmp_path):
    rng = np.random.default_rng(2)
    for number, label, name in [(0, 3, "1_cat.jpg"), (1, 5, "2_sea_horse.jpg"), (5000, 3, "9_cat.jpg")]:
        write_uhsr_npz(tmp_path / f"{number}.npz", (rng.random((8, 6, 6)) < 0.5), label, name)
    train, test = UHSRDataset(tmp_path, "train"), UHSRDataset(tmp_path, "test")
    assert [p.stem for p in train.files] == ["0", "1"] and [p.stem for p in test.files] == ["5000"]
    assert train.class_names() == {3: "cat", 5: "sea horse"}
    sample = train[1]
    assert sample.label == 5 and sample.planes.shape == (8, 6, 6) and sample.target is None
    assert class_name_of("4144_helicopter.jpg") == "helicopter"


def test_synthetic_dataset_is_deterministic_and_rate_scaled():
    settings = SyntheticSettings(window_planes=41, crop=24, static_fraction=1.0, foreground_fraction=0.0)
    data = SyntheticSpikeDataset(settings, length=4, seed=3)
    a, b = data[2], data[2]
    np.testing.assert_array_equal(a.planes, b.planes)
    assert a.planes.shape == (41, 24, 24) and a.planes.dtype == np.uint8 and a.target.shape == (24, 24)
    assert 0 <= a.target.min() and a.target.max() <= RATE_PER_INTENSITY + 1e-6
    # static scene: the firing rate over the window matches the rate-image target
    assert abs(float(a.planes.mean()) - float(a.target.mean())) < 0.02
    low = SyntheticSpikeDataset(SyntheticSettings(window_planes=41, crop=24, low_light_fraction=1.0), length=2, seed=0)[0]
    assert low.target.max() <= RATE_PER_INTENSITY * 0.3 + 1e-6
    scene = SyntheticSpikeDataset(SyntheticSettings(window_planes=21, crop=24, scene_fraction=1.0), length=2, seed=0)[1]
    assert scene.planes.shape == (21, 24, 24) and 0 < scene.target.mean() <= RATE_PER_INTENSITY


# ------------------------------------------------------------------------------------- metrics


def _ssim_direct(x: np.ndarray, y: np.ndarray) -> float:
    """Independent SSIM: full 2-D Gaussian window by torch conv2d ('valid')."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = torch.tensor(np.outer(g, g) / np.outer(g, g).sum())[None, None]
    tx, ty = torch.tensor(x, dtype=torch.float64)[None, None], torch.tensor(y, dtype=torch.float64)[None, None]
    f = lambda a: torch.nn.functional.conv2d(a, w)  # noqa: E731
    mx, my = f(tx), f(ty)
    sxx, syy, sxy = f(tx * tx) - mx**2, f(ty * ty) - my**2, f(tx * ty) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean())


def test_psnr_ssim():
    rng = np.random.default_rng(4)
    x = rng.random((40, 50))
    y = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1)
    assert psnr(x, y) == pytest.approx(10 * np.log10(1 / np.mean((x - y) ** 2)))
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, y) == pytest.approx(_ssim_direct(x, y), abs=1e-10)
    with pytest.raises(ValueError):
        psnr(x, y[:10])


# -------------------------------------------------------------------------------------------- fit


def _tiny_config(tmp_path: Path, **kw) -> FitConfig:
    base = dict(model="lrn", data="synthetic", steps=4, batch=2, crop=16, val_every=2, val_samples=1, val_crop=16,
                out=str(tmp_path / "run"), threads=1, progress=False, log_every=1, lr=1e-3)
    base.update(kw)
    return FitConfig(**base)


def test_short_fit_lowers_loss_on_fixed_batch(tmp_path):
    torch.manual_seed(0)
    config = _tiny_config(tmp_path)
    net = build_model(config)
    planes, targets, _ = StepBatches(config, net.window_planes, rank=0)[0]
    losses_fn = Losses(config, torch.device("cpu"))
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    history = []
    for _ in range(40):
        loss = losses_fn([net(net.prepare(planes))], targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.5 * history[0]


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_resume_continues_with_identical_state(tmp_path):
    straight = fit(_tiny_config(tmp_path / "a", steps=4))
    fit(_tiny_config(tmp_path / "b", steps=2))
    resumed = fit(_tiny_config(tmp_path / "b", steps=4, resume=True))
    assert straight.step == resumed.step == 4
    assert len(resumed.losses) == 2  # only steps 3 and 4 ran after resuming
    assert resumed.losses == pytest.approx(straight.losses[2:], rel=0, abs=0)
    a, b = _state(tmp_path / "a" / "run" / "train_state.pt"), _state(tmp_path / "b" / "run" / "train_state.pt")
    assert a["step"] == b["step"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    rows = [json.loads(line) for line in (tmp_path / "b" / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # the weights files are plain state_dicts that load strictly into the shared network definition
    from edge.reconstruction.networks import load_network

    loaded = load_network("lrn", tmp_path / "b" / "run" / "best.pt")
    assert loaded.window_planes == 200


def test_ddp_two_processes_keep_replicas_identical(tmp_path):
    script = Path(sys.executable).with_name("spike-train")
    if not script.exists():
        pytest.skip(f"console script {script} not installed")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "fit", "--model", "lrn", "--steps", "3", "--batch", "1", "--crop", "16", "--val-every", "3",
           "--val-samples", "1", "--out", str(out), "--threads", "1", "--no-progress", "--seed", "5"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert summary["replica_max_abs_diff"] == 0.0


def test_fit_on_a_folder_with_folder_validation(tmp_path):
    rng = np.random.default_rng(7)
    folder = tmp_path / "clips"
    for name in ("a", "b"):
        folder.mkdir(exist_ok=True)
        write_dat(folder / f"{name}.dat", (rng.random((201, 20, 24)) < 0.3).astype(np.uint8))
        _write_png(folder / f"{name}.png", rng.integers(0, 256, (20, 24), dtype=np.uint8))
    result = fit(_tiny_config(tmp_path, data=str(folder), val_data=str(folder), steps=2, val_samples=2))
    assert result.step == 2 and np.isfinite(result.best_val_psnr)
    with pytest.raises(ValueError, match="does not fit"):
        fit(_tiny_config(tmp_path / "big", data=str(folder), crop=32, steps=1))


def test_fit_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        FitConfig(model="nope")
    with pytest.raises(ValueError, match="multiples of 16"):
        FitConfig(model="stir", crop=20)
    from training.fit import load_config

    config_file = tmp_path / "c.toml"
    config_file.write_text('[fit]\nmodel = "lrn"\nsteps = 7\n')
    assert load_config(config_file, {"steps": None, "batch": 3}).steps == 7
    config_file.write_text("bogus = 1\n")
    with pytest.raises(ValueError, match="unknown settings"):
        load_config(config_file, {})


# ------------------------------------------------------------------------------------- SpikeCLIP


def test_spikeclip_recipe_runs_on_tiny_clip(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    from open_clip.tokenizer import SimpleTokenizer

    from training.spikeclip import SpikeClipConfig, run_spikeclip

    rng = np.random.default_rng(6)
    data = tmp_path / "uhsr"
    data.mkdir()
    for i, (label, name) in enumerate([(0, "1_cat.jpg"), (1, "2_dog.jpg"), (0, "3_cat.jpg"), (1, "4_dog.jpg")]):
        write_uhsr_npz(data / f"{i}.npz", rng.random((200, 32, 32)) < 0.05, label, name)
    torch.manual_seed(0)
    clip = open_clip.model.CLIP(
        embed_dim=16,
        vision_cfg={"layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    tokenizer = SimpleTokenizer(context_length=16)
    config = SpikeClipConfig(data=str(data), out=str(tmp_path / "run"), batch=2, max_steps_per_stage=2,
                             threads=1, progress=False, lr=1e-3)
    summary = run_spikeclip(config, clip_model=clip, tokenizer=tokenizer)
    stages = [row["stage"] for row in summary["history"]]
    assert stages == ["coarse"] * 2 + ["prompt"] * 2 + ["fine"] * 2
    assert all(np.isfinite(row["loss"]) for row in summary["history"])
    assert summary["classes"] == ["cat", "dog"]
    from edge.reconstruction.networks import load_network

    coarse = load_network("lrn", tmp_path / "run" / "lrn_coarse.pt").model.state_dict()
    fine = load_network("lrn", tmp_path / "run" / "lrn_spikeclip.pt").model.state_dict()
    assert any(not torch.equal(coarse[k], fine[k]) for k in coarse)  # the fine stage trained LRN
    assert (tmp_path / "run" / "prompts.pt").exists()


# ------------------------------------------------------------------------------------ evaluation


def _independent_tfp_psnr(dat: Path, png: Path, window: int) -> float:
    from PIL import Image

    from fixtures_catalogue import REDSBASE_SHAPE

    height, width = REDSBASE_SHAPE
    raw = np.fromfile(dat, dtype=np.uint8).reshape(-1, height * width // 8)
    planes = np.unpackbits(raw, axis=1, bitorder="little").reshape(-1, height, width)[:, ::-1, :]
    key = planes.shape[0] // 2
    start = key - window // 2
    rate = planes[start : start + window].astype(np.float64).mean(axis=0)
    image = np.clip(rate / 0.6, 0, 1)
    gt = np.asarray(Image.open(png).convert("L"), dtype=np.float64) / 255
    return 10 * np.log10(1.0 / np.mean((image - gt) ** 2))


def test_eval_tfp_matches_independent_computation(redsbase_clips):
    from training.evaluate import evaluate

    data = redsbase_clips[0][0].parent
    report = evaluate(["tfp"], data, tfp_window=41, tfp_sweep=(21,))
    tfp41 = report["results"]["tfp-41"]
    expected = {dat.stem: _independent_tfp_psnr(dat, png, 41) for dat, png in redsbase_clips}
    for name, value in expected.items():
        assert tfp41["clips"][name]["psnr"] == pytest.approx(value, abs=1e-6)
    assert tfp41["mean_psnr"] == pytest.approx(np.mean(list(expected.values())), abs=1e-6)
    assert report["results"]["tfp-21"]["clips"][redsbase_clips[0][0].stem]["psnr"] == pytest.approx(
        _independent_tfp_psnr(*redsbase_clips[0], 21), abs=1e-6)
    assert "tfi-41" in report["results"] and report["tfp_best_window"] == 21


def test_eval_cli_json(redsbase_clips):
    from click.testing import CliRunner

    from training.cli import main

    result = CliRunner().invoke(main, ["eval", "--method", "tfi", "--data", str(redsbase_clips[0][0].parent), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"tfp-41", "tfi-41"} <= set(report["results"])


def test_export_cli_defaults_come_from_the_closed_sets(tmp_path):
    """``spike-train export``'s choices and defaults are the reconstruction package's: an ONNX export without
    ``--opset`` records ``ONNX_OPSET``; an opset under ``ONNX_MIN_OPSET`` is refused before any work."""
    pytest.importorskip("onnxruntime")
    from click.testing import CliRunner

    from edge.reconstruction.engines import read_manifest
    from edge.reconstruction.methods import LEARNED_METHOD_NAMES
    from edge.reconstruction.models import EXPORT_FORMATS, ONNX_MIN_OPSET, ONNX_OPSET, PRECISIONS
    from training.cli import main
    from training.cli.export import export

    params = {p.name: p for p in export.params}
    assert list(params["model"].type.choices) == LEARNED_METHOD_NAMES
    assert list(params["fmt"].type.choices) == EXPORT_FORMATS and list(params["precision"].type.choices) == PRECISIONS
    out = tmp_path / "engine"
    result = CliRunner().invoke(main, ["export", "--model", "lrn", "--format", "onnx", "--height", "16", "--width", "24",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["opset"] == ONNX_OPSET and manifest["precision"] == "fp32" and manifest["input"]["shape"] == [1, 50, 16, 24]
    result = CliRunner().invoke(main, ["export", "--model", "lrn", "--format", "onnx", "--height", "16", "--width", "24",
                                       "--opset", str(ONNX_MIN_OPSET - 1), "--out", str(tmp_path / "low")])
    assert result.exit_code != 0 and f">={ONNX_MIN_OPSET}" in result.output.replace(" ", "")
    assert not (tmp_path / "low").exists()
