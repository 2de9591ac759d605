"""Progress bars of the long offline commands (``reconstruct``, ``simulate``, ``bench decode``): on
stderr when it is a terminal, and nothing at all in a pipe (scripts and logs stay clean)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from firmware_io.dat import write_dat
from terminal import run_on_terminal

EDGE = [sys.executable, "-m", "edge"]
BAR_MARKS = ("\r", "%|", "/s]")  # what a tqdm bar writes: carriage returns, the bar, the rate


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    planes = (np.random.default_rng(2).random((400, 24, 32)) < 0.3).astype(np.uint8)
    return write_dat(tmp_path_factory.mktemp("progress") / "rec.dat", planes)


def commands(recording, tmp_path):
    """(name, command, frames/planes/runs the bar counts to, its unit) for each long offline command."""
    return [
        ("reconstruct", [*EDGE, "reconstruct", str(recording), "--height", "24", "--width", "32", "--method", "tfp",
                         "--window", "40", "--every", "40", "--out", str(tmp_path / "frames.npy")], "10/10", "frame/s"),
        ("simulate", [*EDGE, "simulate", "--scene", "shapes", "--planes", "300", "--height", "24", "--width", "32",
                      "--out", str(tmp_path / "sim.dat")], "300/300", "plane/s"),
        ("bench decode", [*EDGE, "bench", "decode", "--planes", "2000", "--repeats", "1", "--height", "24",
                          "--width", "32", "--json"], "2/2", "run/s"),
    ]


@pytest.mark.parametrize("index", range(3), ids=["reconstruct", "simulate", "bench decode"])
def test_a_pipe_gets_no_progress_output(recording, tmp_path, index):
    name, cmd, _, unit = commands(recording, tmp_path)[index]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout.splitlines()[-1])  # the result on stdout is intact
    assert not any(mark in result.stderr for mark in BAR_MARKS) and unit not in result.stderr, result.stderr


@pytest.mark.parametrize("index", range(3), ids=["reconstruct", "simulate", "bench decode"])
def test_a_terminal_gets_a_progress_bar(recording, tmp_path, index):
    name, cmd, count, unit = commands(recording, tmp_path)[index]
    code, stdout, stderr = run_on_terminal(cmd)
    assert code == 0, stderr
    json.loads(stdout.splitlines()[-1])  # the bar went to stderr only
    assert "100%|" in stderr and count in stderr and unit in stderr, stderr
