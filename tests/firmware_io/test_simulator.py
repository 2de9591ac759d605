"""Integrate-and-fire simulator, scenes, the simulator source and ``spike-edge simulate``."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from firmware_io.bitpack import pack_planes, unpack_planes
from firmware_io.contract import FormatError, Geometry, ReadStatus
from firmware_io.dat import DatReader
from firmware_io.scenes import (
    ProceduralScene,
    SceneName,
    constant_frames,
    frames_from_arrays,
    frames_from_images,
    frames_from_video,
    scene_frames,
)
from firmware_io.sim_source import SimulatorSource, source_from_scene
from firmware_io.simulator import (
    FrameStream,
    NoiseParams,
    NoisePreset,
    SimParams,
    SpikeSimulator,
    firing_rate,
    simulate_frames,
)

SMALL = Geometry(16, 24)


def ramp_image(geometry: Geometry) -> np.ndarray:
    return np.tile(np.linspace(0, 1, geometry.width, dtype=np.float32), (geometry.height, 1))


def test_firing_rate_is_proportional_to_grey():
    grey = ramp_image(SMALL)
    n = 4000
    planes = SpikeSimulator(SMALL, seed=1).ramp(grey, None, n)
    rate = planes.mean(axis=0)
    # deterministic integrate-and-fire: the count is within one spike of n * rate
    np.testing.assert_allclose(rate, 0.6 * grey, atol=1.5 / n)
    assert firing_rate(0.5) == pytest.approx(0.3)


def test_rate_scale_and_threshold_conventions():
    assert SimParams().rate_scale == pytest.approx(0.6)  # REDS_BASE default
    params = SimParams.from_rate_scale(0.25, threshold=3.0)
    assert params.gain == pytest.approx(0.75)
    planes = SpikeSimulator(SMALL, params, seed=2).ramp(np.full(SMALL.shape, 0.8), None, 2000)
    assert planes.mean() == pytest.approx(0.2, abs=1e-3)
    with pytest.raises(ValueError, match="threshold"):
        SimParams(threshold=0)


def test_at_most_one_spike_per_tick_and_saturation():
    sim = SpikeSimulator(SMALL, SimParams(threshold=2.0, gain=5.0), seed=3)
    planes = sim.ramp(np.ones(SMALL.shape), None, 50)
    assert planes.dtype == bool and planes.all()  # saturates: one spike every tick, never more
    assert sim.acc.max() < 2.0  # excess charge is not banked
    after = sim.ramp(np.zeros(SMALL.shape), None, 50)
    assert after.sum(axis=0).max() <= 1  # at most the one pending spike, then silence


def test_surplus_is_kept():
    sim = SpikeSimulator(Geometry(1, 8), SimParams(threshold=1.0, gain=1.0), seed=0)
    sim.acc[:] = 0
    planes = sim.ramp(np.full((1, 8), 0.3, np.float32), None, 100)
    # surplus kept: 30 spikes in 100 ticks; resetting to zero would give one every 4 ticks (25)
    assert set(planes.sum(axis=0).ravel().tolist()) <= {29, 30}


def test_packed_output_is_camera_order():
    grey = ramp_image(SMALL)
    upright = SpikeSimulator(SMALL, seed=4).ramp(grey, grey[::-1], 40)
    packed = SpikeSimulator(SMALL, seed=4).ramp(grey, grey[::-1], 40, packed=True)
    np.testing.assert_array_equal(packed, pack_planes(upright))
    np.testing.assert_array_equal(unpack_planes(packed, SMALL).astype(bool), upright)


@pytest.mark.parametrize("noise", ["none", "realistic"])
def test_deterministic_and_independent_of_chunking(noise):
    frames = [ProceduralScene("shapes", SMALL, seed=5).frame(i) for i in range(6)]

    def run(chunks, seed=7):
        stream = FrameStream(SpikeSimulator(SMALL, noise=noise, seed=seed), frames, planes_per_frame=13)
        parts = []
        for size in chunks:
            parts.append(stream.read(size))
        return np.concatenate(parts)

    whole = run([78])
    assert whole.shape == (78, SMALL.plane_bytes)
    np.testing.assert_array_equal(whole, run([1, 5, 13, 20, 39]))
    np.testing.assert_array_equal(whole, run([78]))
    assert not np.array_equal(whole, run([78], seed=8))


def test_interpolation_between_frames():
    dark, bright = np.zeros(SMALL.shape, np.float32), np.ones(SMALL.shape, np.float32)
    stream = FrameStream(SpikeSimulator(SMALL, seed=6), [dark, bright], planes_per_frame=400)
    planes = unpack_planes(stream.read(1000), SMALL)
    assert planes.shape[0] == 800 and stream.exhausted
    first, second = planes[:400].mean(), planes[400:].mean()
    assert first == pytest.approx(0.6 * 0.5 * (399 / 400), abs=0.01)  # linear ramp 0 -> 1
    assert second == pytest.approx(0.6, abs=0.01)  # last frame held


def test_noise_options_change_rates_as_documented():
    dark = np.zeros(SMALL.shape, np.float32)
    grey = np.full(SMALL.shape, 0.5, np.float32)
    n = 6000
    spurious = SpikeSimulator(SMALL, noise=NoiseParams(spurious_rate=0.01), seed=1).ramp(dark, None, n)
    assert spurious.mean() == pytest.approx(0.01, rel=0.1)

    defects = NoiseParams(hot_pixels=0.1, dead_pixels=0.1)
    sim = SpikeSimulator(SMALL, noise=defects, seed=2)
    rates = sim.ramp(grey, None, 500).mean(axis=0).ravel()
    upright_index = lambda idx: (SMALL.height - 1 - idx // SMALL.width) * SMALL.width + idx % SMALL.width  # noqa: E731
    assert sim.hot_idx.size and sim.dead_idx.size
    assert (rates[upright_index(sim.hot_idx)] == 1).all()
    assert (rates[upright_index(sim.dead_idx)] == 0).all()

    fpn = SpikeSimulator(SMALL, noise=NoiseParams(gain_fpn=0.2), seed=3).ramp(grey, None, n).mean(axis=0)
    assert fpn.mean() == pytest.approx(0.3, rel=0.05)
    assert fpn.std() == pytest.approx(0.3 * 0.2, rel=0.3)

    jitter = SpikeSimulator(SMALL, noise=NoiseParams(gain_jitter=0.3), seed=4).ramp(grey, None, n)
    assert jitter.mean() == pytest.approx(0.3, rel=0.02)
    clean = SpikeSimulator(SMALL, seed=4).ramp(grey, None, n)
    # jitter spreads the inter-spike intervals: clean intervals at rate 0.3 are only 3 or 4 ticks
    gaps_clean = np.diff(np.flatnonzero(clean[:, 0, 0]))
    gaps_jitter = np.diff(np.flatnonzero(jitter[:, 0, 0]))
    assert set(gaps_clean.tolist()) <= {3, 4} and gaps_jitter.std() > gaps_clean.std()

    sim = SpikeSimulator(SMALL, noise="realistic", seed=5)
    rates = sim.ramp(dark, None, n).mean(axis=0).ravel()
    normal = np.setdiff1d(np.arange(SMALL.pixels), upright_index(np.r_[sim.hot_idx, sim.dead_idx]))
    assert rates[normal].mean() == pytest.approx(1 / 140, rel=0.15)  # SpikingSIM's gaps: mean 140 ticks
    with pytest.raises(ValueError, match="unknown noise preset"):
        SpikeSimulator(SMALL, noise="loud")
    with pytest.raises(ValueError, match="spurious_rate"):
        NoiseParams(spurious_rate=-1)


@pytest.mark.parametrize("name", list(SceneName))
def test_scenes_deterministic_in_range_and_moving(name):
    geometry = Geometry(37, 53)
    a = ProceduralScene(name, geometry, seed=11)
    b = ProceduralScene(name, geometry, seed=11)
    frames = [a.frame(i) for i in (0, 10, 40)]
    for frame in frames:
        assert frame.shape == geometry.shape and frame.dtype == np.float32
        assert 0 <= frame.min() and frame.max() <= 1
    np.testing.assert_array_equal(frames[1], b.frame(10))
    assert not np.array_equal(frames[0], frames[2])  # it moves
    assert not np.array_equal(frames[0], ProceduralScene(name, geometry, seed=12).frame(0))
    seq = scene_frames(name, geometry, seed=11, n_frames=3)
    assert seq.geometry == geometry and len(list(seq)) == 3


def test_unknown_scene_names_the_valid_ones():
    with pytest.raises(ValueError, match="shapes"):
        ProceduralScene("nope", SMALL)


def test_frames_from_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(12, 20), dtype=np.uint8) for _ in range(3)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"f{i:02d}.png")
    Image.fromarray(np.stack([images[0]] * 3, axis=-1)).save(tmp_path / "z_colour.png")
    seq = frames_from_images(tmp_path)
    assert seq.geometry == Geometry(12, 20) and seq.n_frames == 4
    frames = list(seq)
    np.testing.assert_allclose(frames[1], images[1] / 255.0, atol=1e-6)
    np.testing.assert_allclose(frames[3], images[0] / 255.0, atol=1.5 / 255)
    resized = list(frames_from_images(tmp_path, Geometry(6, 10)))
    assert resized[0].shape == (6, 10)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "zz_small.png")
    with pytest.raises(FormatError, match="zz_small"):
        list(frames_from_images(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        frames_from_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        frames_from_images(tmp_path / "missing")


def test_frames_from_video_without_imageio_names_the_extra(tmp_path, monkeypatch):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    monkeypatch.setitem(sys.modules, "imageio", None)
    monkeypatch.setitem(sys.modules, "imageio.v3", None)
    with pytest.raises(ImportError, match=r"spike-edge\[video\]"):
        frames_from_video(video)


def test_frames_from_video_roundtrip(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    frames = (np.random.default_rng(1).random((4, 16, 24)) * 255).astype(np.uint8)
    path = tmp_path / "clip.gif"
    try:
        iio.imwrite(path, frames)
    except Exception as exc:  # pragma: no cover - plugin availability
        pytest.skip(f"imageio cannot write GIF here: {exc}")
    seq = frames_from_video(path)
    got = list(seq)
    assert seq.geometry == Geometry(16, 24) and len(got) == 4
    assert 0 <= got[0].min() and got[0].max() <= 1


def test_simulator_source_blocks_match_the_simulator():
    geometry = Geometry(20, 32)
    source = source_from_scene("pan", geometry, seed=3, planes_per_frame=10, block_planes=64, n_planes=300)
    blocks = list(source)
    assert [b.first_plane for b in blocks] == [0, 64, 128, 192, 256]
    assert blocks[-1].n_planes == 300 - 256
    assert source.read().status is ReadStatus.END_OF_STREAM
    chunks = simulate_frames(scene_frames("pan", geometry, seed=3), geometry, planes_per_frame=10, seed=3, chunk_planes=50)
    expected = np.concatenate(list(itertools.islice(chunks, 6)))
    np.testing.assert_array_equal(np.concatenate([b.planes for b in blocks]), expected)
    assert all(b.capture_t_ns > 0 for b in blocks)


def test_simulator_source_ends_with_its_frames():
    frames = constant_frames(0.5, SMALL, n_frames=3)
    with SimulatorSource(frames, SMALL, planes_per_frame=10, block_planes=8) as source:
        total = sum(b.n_planes for b in source)
    assert total == 30
    assert source.read().status is ReadStatus.END_OF_STREAM


def test_simulator_source_reports_bad_input_once():
    source = SimulatorSource(frames_from_arrays([np.zeros((3, 3))], SMALL), SMALL)
    first = source.read()
    assert first.status is ReadStatus.ERROR and "shape" in first.message
    assert source.read().status is ReadStatus.END_OF_STREAM


def test_simulator_source_realtime_pacing():
    rate_hz, block, n = 2_000.0, 100, 1000  # first block due 50 ms after t0: no race with set-up
    source = source_from_scene("shapes", SMALL, block_planes=block, n_planes=n, realtime=True, rate_hz=rate_hz)
    assert source.read(timeout_s=0).status is ReadStatus.TIMEOUT
    start = time.monotonic()
    blocks = [b for b in source]
    elapsed = time.monotonic() - start
    assert sum(b.n_planes for b in blocks) == n
    assert elapsed >= 0.9 * n / rate_hz - 0.006
    assert elapsed < n / rate_hz + 0.5
    stamps = np.array([b.capture_t_ns for b in blocks])
    assert (np.diff(stamps) > 0).all()


def test_cli_simulate_subprocess(tmp_path):
    out = tmp_path / "sim.dat"
    cmd = [sys.executable, "-m", "edge", "simulate", "--scene", "shapes", "--out", str(out), "--planes", "300",
           "--height", "32", "--width", "48", "--seed", "2", "--noise", "low"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["planes"] == 300 and (summary["height"], summary["width"]) == (32, 48)
    assert 0.05 < summary["firing_rate"] < 0.6
    with DatReader(out, Geometry(32, 48)) as reader:
        assert reader.n_planes == 300
        assert reader.unpacked(0, 300).mean() == pytest.approx(summary["firing_rate"], rel=1e-3)


def test_cli_simulate_images_and_errors(tmp_path):
    from PIL import Image

    from edge.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 16), 80 * i, np.uint8)).save(folder / f"{i}.png")
    runner = CliRunner()
    out = tmp_path / "img.dat"
    result = runner.invoke(main, ["simulate", "--images", str(folder), "--out", str(out), "--planes-per-frame", "5",
                                  "--rate-scale", "0.5", "--spurious-rate", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["planes"] == 15 and summary["gain"] == pytest.approx(1.0)
    assert DatReader(out, Geometry(8, 16)).n_planes == 15
    bad = runner.invoke(main, ["simulate", "--scene", "pan", "--images", str(folder), "--out", str(out)])
    assert bad.exit_code != 0 and "exactly one" in bad.output
    bad = runner.invoke(main, ["simulate", "--scene", "spiral", "--out", str(out)])
    assert bad.exit_code != 0 and "shapes" in bad.output
    assert [p.value for p in NoisePreset] == ["none", "low", "realistic"]
