"""``spike-edge demo`` does what README's quick start says, and its summary explains every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli.demo import demo, live_args, replay_args, shown, simulate_args, summary_lines

ROOT = Path(__file__).resolve().parents[3]


def quick_start() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("## Quick start"):readme.index("### Sample data for the tests")]


def test_readme_quick_start_shows_the_commands_the_demo_runs():
    defaults = {p.name: p.default for p in demo.params}
    text = quick_start()
    assert f"`spike-edge demo --out {defaults['out']}`" in text
    rec = defaults["out"] / f"{defaults['scene']}.dat"
    for args in (simulate_args(defaults["scene"], defaults["planes"], rec),
                 live_args(rec, defaults["method"], defaults["hop"], defaults["policy"]),
                 replay_args(rec, defaults["method"], defaults["hop"])):
        assert f"`{shown('spike-edge', args)}`" in text
    assert f"measured for {defaults['seconds']:g} s after a 1 s warm-up by `spike-host stats`" in text
    assert "nominally 40,000 / 40 = 1,000 frames/s" in text and "worker skips" in text


@pytest.mark.slow
def test_the_demo_runs_its_three_steps_and_explains_the_figures(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "edge", "demo", "--out", str(out), "--planes", "800",
                             "--seconds", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rec = out / "shapes.dat"
    assert lines[0] == f"[1/3] recording: {shown('spike-edge', simulate_args('shapes', 800, rec))}"
    assert lines[1] == (f"[2/3] live at camera pace: {shown('spike-edge', live_args(rec, 'tfp', 40, 'latest'))}, "
                        "measured for 1 s by spike-host stats")
    assert lines[2] == (f"[3/3] deterministic replay: {shown('spike-edge', replay_args(rec, 'tfp', 40))}, recorded by "
                        "spike-host record until end-of-stream")
    stats = json.loads((out / "stats.json").read_text())
    text = result.stdout
    assert "  nominal          1000.0 frames/s  = 40,000 planes/s / 40 planes per frame (every window reconstructed)" in text
    assert f"  received       {stats['fps'] or 0:8.1f} frames/s  counted by the subscriber (spike-host stats)" in text
    skips = stats["daemon"].get("worker_skipped_windows_during", 0)
    assert f"  worker skips   {skips:8d} windows   " in text and "(why: below)" in text
    assert "why frames are skipped: with policy latest (the live default)" in text
    assert "  subscriber gaps" in text and "  ring overruns  " in text
    # 800 planes, one frame per 40-plane window: 19 frames in the video and as PNGs
    assert f"video            {out / 'demo.mp4'}: 19 frames of the deterministic replay" in text
    assert (out / "demo.mp4").stat().st_size > 0 and len(list((out / "frames").glob("*.png"))) == 19


def test_the_summary_under_policy_all_says_it_never_skips():
    live = {"fps": 1000.0, "frames": 4000, "daemon": {"worker_skipped_windows_during": 0, "ring_overrun_planes_during": 80},
            "subscriber": {"lost_frames": 2}, "latency_ms": {}}
    summary = {"live": live, "recording": {"planes": 8000, "height": 250, "width": 400, "firing_rate": 0.2}, "hop": 40,
               "method": "tfp", "policy": "all", "seconds": 5.0, "video": "v.mp4", "frames": 199, "pngs": "f"}
    text = "\n".join(summary_lines(summary, Path("out")))
    assert "worker policy all" in text and "policy all never skips a window" in text
    assert "  worker skips          0 windows   0.0 % of 4002 windows" in text
    assert "  subscriber gaps       2 frames" in text and "  ring overruns        80 planes" in text
