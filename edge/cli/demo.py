"""``spike-edge demo``: the quick start's main job, end to end with real processes.

1. A recording: ``--replay FILE`` or, by default, a built-in simulator scene written with
   ``spike-edge simulate`` (250x400, 40 kHz camera time).
2. Live: ``spike-edge run --replay REC --realtime --loop`` (TFP on the CPU, one frame every
   ``--hop`` planes) measured for ``--seconds`` by ``spike-host stats``; the daemon is stopped
   with SIGTERM and must exit 0.
3. Deterministic: ``spike-edge run --replay REC --wait-subscribers 1`` recorded by
   ``spike-host record`` until end-of-stream, then rendered to ``demo.mp4`` and ``frames/``.

Everything lands in ``--out`` (``stats.json``, ``frames.npz``, ``demo.mp4``, ``frames/``, logs).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import click
import numpy as np

from firmware_io.contract import DEFAULT_RATE_HZ
from firmware_io.exits import ExitCode, fail
from firmware_io.frame_files import write_frames
from edge.cli.processes import EDGE, HOST, loopback_urls, stop
from edge.live.config import DEFAULT_METHOD
from edge.live.worker import DEFAULT_HOP_PLANES

def _check(result: subprocess.CompletedProcess, what: str, log: Path | None = None) -> None:
    if result.returncode != 0:
        where = f"; see {log}" if log else ""
        fail(f"{what} failed with exit code {result.returncode}: {result.stderr.strip()[-2000:]}{where}", ExitCode.INTERNAL)


def _stop(proc: subprocess.Popen, what: str) -> int:
    code = stop(proc)
    if code is None:
        fail(f"{what} did not stop within 10 s of SIGTERM", ExitCode.INTERNAL)
    return code


def run_demo(out: Path, *, replay: Path | None, scene: str, planes: int, seconds: float, hop: int, method: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    if replay is None:
        replay = out / f"{scene}.dat"
        click.echo(f"[1/3] simulating {planes} planes of the '{scene}' scene -> {replay}")
        _check(subprocess.run([*EDGE, "simulate", "--scene", scene, "--planes", str(planes), "--out", str(replay)],
                              capture_output=True, text=True), "spike-edge simulate")
    else:
        click.echo(f"[1/3] replaying {replay}")
    info = json.loads(subprocess.run([*EDGE, "info", str(replay), "--json"], capture_output=True, text=True,
                                     check=True).stdout)

    click.echo(f"[2/3] live: realtime replay at {DEFAULT_RATE_HZ / 1000:g} kHz, {method} every {hop} planes, "
               f"measured for {seconds:g} s")
    pub, ctl = loopback_urls()
    live_log = out / "daemon-live.log"
    with open(live_log, "wb") as log:
        daemon = subprocess.Popen([*EDGE, "-v", "run", "--replay", str(replay), "--realtime", "--loop", "--method", method,
                                   "--hop", str(hop), "--bind", pub, "--control", ctl], stdout=log, stderr=subprocess.STDOUT)
        try:
            stats_run = subprocess.run([*HOST, "stats", pub, "--seconds", str(seconds), "--warmup-s", "1", "--json"],
                                       capture_output=True, text=True, timeout=seconds + 60)
        finally:
            code = _stop(daemon, "the live daemon")
    _check(stats_run, "spike-host stats", live_log)
    if code != 0:
        fail(f"the live daemon exited with {code} on SIGTERM; see {live_log}", ExitCode.INTERNAL)
    stats = json.loads(stats_run.stdout)
    (out / "stats.json").write_text(json.dumps(stats, indent=2))

    click.echo("[3/3] deterministic replay recorded until end-of-stream")
    pub, ctl = loopback_urls()
    rec_log = out / "daemon-replay.log"
    npz = out / "frames.npz"
    with open(rec_log, "wb") as log:
        daemon = subprocess.Popen([*EDGE, "-v", "run", "--replay", str(replay), "--method", method, "--hop", str(hop),
                                   "--wait-subscribers", "1", "--bind", pub, "--control", ctl],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            record = subprocess.run([*HOST, "record", pub, "--out", str(npz), "--timeout-s", "60"],
                                    capture_output=True, text=True, timeout=600)
            daemon.wait(30)
        finally:
            _stop(daemon, "the replay daemon")
    _check(record, "spike-host record", rec_log)
    with np.load(npz) as data:
        frames = data["frames"]
    for target in (out / "demo.mp4", out / "frames"):
        write_frames(target, frames, fps=25)
    return {"recording": info, "live": stats, "record": json.loads(record.stdout), "frames": len(frames),
            "video": str(out / "demo.mp4"), "pngs": str(out / "frames")}


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"), show_default=True)
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Use this recording instead of a simulated scene.")
@click.option("--scene", default="shapes", show_default=True, help="Built-in scene to simulate.")
@click.option("--planes", type=click.IntRange(min=400), default=8000, show_default=True, help="Length of the simulated recording.")
@click.option("--seconds", type=click.FloatRange(min=1), default=5.0, show_default=True, help="Length of the live measurement.")
@click.option("--hop", type=click.IntRange(min=1), default=DEFAULT_HOP_PLANES, show_default=True, help="Planes per output frame (40 = 1,000 frames/s).")
@click.option("--method", default=DEFAULT_METHOD.value, show_default=True, help="Reconstruction method.")
def demo(out, replay, scene, planes, seconds, hop, method):
    """Run the live pipeline on the CPU and show the result: video, PNGs and stream statistics."""
    t0 = time.monotonic()
    summary = run_demo(out, replay=replay, scene=scene, planes=planes, seconds=seconds, hop=hop, method=method)
    live, rec = summary["live"], summary["recording"]
    latency = live.get("latency_ms", {})
    daemon = live.get("daemon", {})
    click.echo("")
    click.echo(f"recording      {rec['planes']} planes of {rec['height']}x{rec['width']}, firing rate {rec['firing_rate']:.3f}")
    click.echo(f"live stream    {live.get('fps') or 0:.1f} frames/s received (nominal {DEFAULT_RATE_HZ / hop:.0f}), "
               f"subscriber gaps {live.get('lost_frames', 0)}, ring overruns {daemon.get('ring_overrun_planes_during', 0)} planes, "
               f"worker skips {daemon.get('worker_skipped_windows_during', 0)} windows")
    for stage in ("inference", "capture_to_receive"):
        if stage in latency:
            s = latency[stage]
            click.echo(f"  {stage:<20} p50 {s['p50_ms']:.2f} ms   p99 {s['p99_ms']:.2f} ms   max {s['max_ms']:.2f} ms")
    click.echo(f"video          {summary['video']}  ({summary['frames']} frames)")
    click.echo(f"images         {summary['pngs']}/")
    click.echo(f"statistics     {out / 'stats.json'}   (demo took {time.monotonic() - t0:.0f} s)")
