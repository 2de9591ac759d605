"""What a user reads when a checkpoint is the wrong file: a network it does not fit (keys named, no
garbled punctuation) and a training state given where weights are expected (named, with the way out),
both from the library and through ``spike-edge reconstruct``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.reconstruction.models.checkpoints import CheckpointError, load_strict, read_state_dict  # noqa: E402
from edge.reconstruction.models.lrn import LRN  # noqa: E402
from edge.reconstruction.models.stir import STIR  # noqa: E402
from firmware_io.dat import write_dat  # noqa: E402
from training.fit import FitConfig, fit  # noqa: E402


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A real ``spike-train fit`` run folder (two tiny steps): train_state.pt, last.pt, best.pt."""
    out = tmp_path_factory.mktemp("fit") / "run"
    fit(FitConfig(model="lrn", data="synthetic", steps=2, batch=1, crop=16, val_every=2, val_samples=1, val_crop=16,
                  out=str(out), threads=1, progress=False, log_every=1, lr=1e-3))
    return out


def test_a_network_that_does_not_fit_reads_cleanly(tmp_path):
    path = tmp_path / "lrn.pt"
    torch.save(LRN().state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_strict(STIR(61), read_state_dict(path), str(path))
    message = str(info.value)
    assert ":;" not in message
    assert message.startswith(f"{path} does not fit STIR (0 of the ")
    assert "tensors it needs match by name and shape): missing keys: " in message
    assert "; unexpected keys: 0.0.weight, 0.0.bias" in message


def test_a_training_state_is_named_with_the_way_to_its_weights(run_folder):
    state = run_folder / "train_state.pt"
    with pytest.raises(CheckpointError) as info:
        read_state_dict(state)
    message = str(info.value)
    assert message.startswith(f"{state} is a training state (keys: ")
    assert "model" in message and "optimizer" in message
    assert "use best.pt or last.pt from the same run folder" in message
    assert f"torch.load('{state}', weights_only=False)['model']" in message
    assert "Weights only load failed" not in message  # torch's own wording is not passed on
    # the advice works: the extracted weights and the run's best.pt load where the state did not
    extracted = run_folder / "extracted.pt"
    torch.save(torch.load(state, weights_only=False)["model"], extracted)
    for weights in (extracted, run_folder / "best.pt"):
        load_strict(LRN(), read_state_dict(weights), str(weights))


def test_reconstruct_with_a_training_state_exits_2_with_the_message(run_folder, tmp_path):
    planes = (np.random.default_rng(0).random((240, 16, 16)) < 0.3).astype(np.uint8)
    rec = write_dat(tmp_path / "rec.dat", planes)
    cmd = [sys.executable, "-m", "edge", "reconstruct", str(rec), "--method", "lrn", "--height", "16", "--width", "16"]
    result = subprocess.run([*cmd, "--checkpoint", str(run_folder / "train_state.pt"), "--out", str(tmp_path / "x.npy")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {run_folder / 'train_state.pt'} is a training state" in result.stderr
    assert not (tmp_path / "x.npy").exists()
    ok = subprocess.run([*cmd, "--checkpoint", str(run_folder / "best.pt"), "--out", str(tmp_path / "y.npy")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["frames"] == 1, ok.stderr


def test_a_file_that_is_not_torch_at_all_keeps_the_plain_message(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot read .*notes\.pt as a torch checkpoint"):
        read_state_dict(path)


def test_a_whole_pickled_model_is_named_as_such(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(LRN(), path)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    assert str(info.value).startswith(f"{path} holds a pickled Python object (a whole model saved with torch.save(model)?)")
    assert "torch.save(model.state_dict(), 'weights.pt')" in str(info.value)
