"""The 1000x1000 PCIe layout on the command line: ``simulate --layout pcie1k`` writes it, ``info`` and
``reconstruct`` detect it (or take ``--layout``), ``run --replay`` streams it; all through real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from firmware_io.layouts import PCIE_GEOMETRY, PCIE_PLANE_BYTES
from firmware_io.pcie import write_pcie
from host.subscriber import Subscriber

CLI = [sys.executable, "-m", "edge"]
PLANES = 130


def run(*args, check=True):
    result = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """A PCIe-layout file made from a known array, cut to start mid-plane (as raw dumps do)."""
    rng = np.random.default_rng(2)
    planes = rng.random((PLANES, *PCIE_GEOMETRY.shape)) < rng.random(PCIE_GEOMETRY.shape) * 0.4
    folder = tmp_path_factory.mktemp("layout")
    whole = write_pcie(folder / "whole.dat", planes)
    cut = folder / "cut.dat"
    cut.write_bytes(whole.read_bytes()[PCIE_PLANE_BYTES - 1_000 :])  # the last 1,000 bytes of plane 0, then 1..
    return planes, whole, cut


def test_info_detects_the_layout_and_the_first_boundary(known):
    planes, whole, cut = known
    info = json.loads(run("info", whole, "--json").stdout)
    assert (info["layout"], info["planes"], info["height"], info["width"]) == ("pcie1k", PLANES, 1000, 1000)
    assert info["offset_bytes"] == 0 and info["firing_rate"] == pytest.approx(planes.mean())
    info = json.loads(run("info", cut, "--json", "--layout", "pcie1k").stdout)
    assert (info["planes"], info["offset_bytes"]) == (PLANES - 1, 1_000)
    assert info["firing_rate"] == pytest.approx(planes[1:].mean())
    wrong = run("info", whole, "--layout", "dat", "--height", "1000", "--width", "1000", check=False)
    assert wrong.returncode == 2 and "not a whole number" in wrong.stderr


def test_reconstruct_of_the_pcie_file_equals_tfp_of_the_known_array(known, tmp_path):
    planes, _, cut = known
    summary = json.loads(run("reconstruct", cut, "--method", "tfp", "--window", 40, "--every", 40,
                             "--out", tmp_path / "tfp.npy").stdout)
    frames = np.load(tmp_path / "tfp.npy")
    assert summary["frames"] == len(frames) == 3
    rest = planes[1:]  # the cut file starts at plane 1
    for frame, key in zip(frames, range(summary["first_key"], summary["last_key"] + 1, 40)):
        np.testing.assert_allclose(frame, rest[key - 20 : key + 20].mean(axis=0), atol=1e-6)


def test_simulate_writes_the_layout_and_it_reads_back_as_the_same_planes(tmp_path):
    common = ["--scene", "shapes", "--planes", 60, "--seed", 3]
    pcie = json.loads(run("simulate", *common, "--layout", "pcie1k", "--out", tmp_path / "p.dat").stdout)
    dat = json.loads(run("simulate", *common, "--height", 1000, "--width", 1000, "--out", tmp_path / "d.dat").stdout)
    assert pcie["layout"] == "pcie1k" and dat["layout"] == "dat" and (pcie["height"], pcie["width"]) == (1000, 1000)
    assert (tmp_path / "p.dat").stat().st_size == 60 * PCIE_PLANE_BYTES
    from firmware_io.recording import open_recording

    with open_recording(tmp_path / "p.dat") as p, open_recording(tmp_path / "d.dat", PCIE_GEOMETRY) as d:
        np.testing.assert_array_equal(p.packed(), d.packed())
    bad = run("simulate", *common, "--layout", "pcie1k", "--height", 250, "--width", 400, "--out", tmp_path / "x.dat",
              check=False)
    assert bad.returncode == 2 and "holds 1000x1000 planes" in bad.stderr


def test_run_replay_streams_the_pcie_file_like_reconstruct(known, start_daemon, tmp_path):
    _, whole, _ = known
    run("reconstruct", whole, "--method", "tfp", "--every", 40, "--out", tmp_path / "offline.npy")
    expected = np.load(tmp_path / "offline.npy")
    d = start_daemon(["--replay", str(whole), "--hop", "40", "--wait-subscribers", "1", "--ring-planes", "200"])
    described = d.request("describe")
    assert described["geometry"] == [1000, 1000], described
    frames = []
    deadline = time.monotonic() + 60
    with Subscriber(d.pub, heartbeat_timeout_s=10) as sub:
        while sub.last_eos is None:
            assert time.monotonic() < deadline, d.text()
            item = sub.next(timeout_s=0.5)
            if item is not None and item.kind == "frame":
                frames.append(item)
    assert d.wait(10) == 0, d.text()
    assert [f.header.key_plane for f in frames] == [20, 60, 100] and len(expected) == 3
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), expected)
