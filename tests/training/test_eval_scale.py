"""``spike-train eval`` on weights trained to another output scale: the scale is measured against TFP,
named, and a rescaled score is added beside the plain one; and eval's progress bar (terminal only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from edge.reconstruction import networks  # noqa: E402
from edge.reconstruction.models.checkpoints import read_state_dict  # noqa: E402
from firmware_io.contract import Geometry  # noqa: E402
from firmware_io.scenes import scene_frames  # noqa: E402
from terminal import run_on_terminal  # noqa: E402
from training.evaluate import SCALE_TOLERANCE, evaluate, format_table  # noqa: E402

SPIKE_TRAIN = [sys.executable, "-c", "from training.cli import main; main()"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Two REDS-layout clips (``name.dat`` beside ``name.png``) simulated from scene frames at rate 0.6 x grey."""
    folder = tmp_path_factory.mktemp("clips")
    for i, scene in enumerate(("shapes", "pan")):
        grey = next(iter(scene_frames(scene, Geometry(48, 64), seed=i)))
        images = folder / f"images_{scene}"
        images.mkdir()
        Image.fromarray(np.round(grey * 255).astype(np.uint8)).save(images / "0.png")
        Image.fromarray(np.round(grey * 255).astype(np.uint8)).save(folder / f"{scene}.png")
        subprocess.run([sys.executable, "-m", "edge", "simulate", "--images", str(images), "--planes-per-frame", "300",
                        "--out", str(folder / f"{scene}.dat")], check=True, capture_output=True, timeout=120)
    return folder


@pytest.fixture(scope="module")
def tripled(tmp_path_factory) -> Path:
    """The packaged LRN weights with the last layer times 3: the same network on a 3x output scale."""
    state = read_state_dict(networks.default_weights_path("lrn"))
    state["4.weight"], state["4.bias"] = state["4.weight"] * 3, state["4.bias"] * 3
    path = tmp_path_factory.mktemp("weights") / "lrn_x3.pt"
    torch.save(state, path)
    return path


def test_weights_on_another_scale_are_named_and_rescored(clips, tripled):
    plain = evaluate(["lrn"], clips, tfp_sweep=())["results"]["lrn"]
    assert 1 / SCALE_TOLERANCE < plain["output_scale"] < SCALE_TOLERANCE and "scale_note" not in plain
    report = evaluate(["lrn"], clips, checkpoint=tripled, tfp_sweep=())
    lrn = report["results"]["lrn"]
    assert lrn["output_scale"] == pytest.approx(3 * plain["output_scale"], rel=1e-3)
    for name, clip in lrn["clips"].items():
        assert clip["output_scale"] == pytest.approx(3 * plain["clips"][name]["output_scale"], rel=1e-3)
    scale = f"{lrn['output_scale']:.2f}"
    assert lrn["scale_note"].startswith(f"lrn: its output is {scale}x the firing rate TFP measures over the same planes")
    # divided by its own scale, the output is the packaged network's divided by its (near 1) scale
    assert lrn["rescaled"]["mean_psnr"] > lrn["mean_psnr"] + 3
    assert lrn["rescaled"]["mean_psnr"] == pytest.approx(plain["mean_psnr"], abs=0.5)
    table = format_table(report)
    assert f"\nlrn / {scale}" in table and "(output divided by its scale)" in table
    assert table.splitlines()[-1] == f"note: {lrn['scale_note']}"


def test_the_published_caltech_weights_are_flagged(redsbase_clips, lrn_checkpoint):
    report = evaluate(["lrn"], redsbase_clips[0][0].parent, checkpoint=lrn_checkpoint, tfp_sweep=())
    lrn = report["results"]["lrn"]
    assert lrn["output_scale"] == pytest.approx(8.4, abs=0.3) and "scale_note" in lrn
    assert lrn["mean_psnr"] < 6 < 18 < lrn["rescaled"]["mean_psnr"]


def test_eval_progress_shows_on_a_terminal_only(clips):
    cmd = [*SPIKE_TRAIN, "eval", "--method", "lrn", "--data", str(clips)]
    piped = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "lrn " in piped.stdout and not any(mark in piped.stderr for mark in ("\r", "%|", "run/s")), piped.stderr
    code, stdout, stderr = run_on_terminal(cmd, timeout_s=300)
    assert code == 0 and "lrn " in stdout, stderr
    runs = 2 * (2 + 5 + 1)  # 2 clips x (TFP + TFI baselines, 5 more TFP windows, lrn)
    assert "eval: 100%|" in stderr and f"{runs}/{runs}" in stderr, stderr
