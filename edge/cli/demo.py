"""``spike-edge demo``: the quick start's main job, end to end with real processes.

1. A recording: ``--replay FILE`` or, by default, a built-in simulator scene written with
   ``spike-edge simulate`` (250x400; 8,000 planes = 0.2 s of a 40 kHz camera). The live simulator
   (``spike-edge run --simulate``) is not used: it makes 5-10k planes/s on one core, far below a
   40 kHz camera, so it runs at 2 kHz; a recording replayed at camera pace gives the real rate.
2. Live: ``spike-edge run --replay REC --realtime --loop --policy P`` (TFP on the CPU, one frame every
   ``--hop`` planes: nominally 40,000 / 40 = 1,000 frames/s), measured for ``--seconds`` after a
   1 s warm-up by ``spike-host stats``; the daemon is stopped with SIGTERM and must exit 0.
3. Deterministic: ``spike-edge run --replay REC --wait-subscribers 1`` (policy ``all``: every
   window, nothing lost) recorded by ``spike-host record`` until end-of-stream, then rendered to
   ``demo.mp4`` and ``frames/`` (each picture min-max normalised on its own).

Each step prints the command line it runs. The summary explains every figure: the nominal frame
rate, the rate received, and where the difference went: worker skips (policy ``latest``, the live
default, reconstructs only the newest ready window), subscriber gaps (frames published but not
received) and ring overruns (planes overwritten before the worker read them).
Everything lands in ``--out`` (``stats.json``, ``frames.npz``, ``demo.mp4``, ``frames/``, logs).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from firmware_io.contract import DEFAULT_RATE_HZ
from firmware_io.exits import ExitCode, fail
from firmware_io.frame_files import write_frames
from edge.cli.processes import EDGE, HOST, loopback_urls, stop, wait_until_serving
from edge.live.config import DEFAULT_METHOD
from edge.live.options import spellings
from edge.live.worker import DEFAULT_HOP_PLANES, WorkerPolicy

WARMUP_S = 1.0
STARTUP_TIMEOUT_S = 60.0  # the daemon's start (imports, the capture process) on a busy machine
VIDEO_FPS = 25.0
LIVE_POLICY = WorkerPolicy.LATEST  # what `spike-edge run --realtime` uses when not told


def shown(program: str, args: list[str]) -> str:
    """How a person would type the command the demo runs (``spike-edge ...``)."""
    return f"{program} {shlex.join(args)}"


def simulate_args(scene: str, planes: int, recording: Path) -> list[str]:
    """Step 1's ``spike-edge`` arguments."""
    return ["simulate", "--scene", scene, "--planes", str(planes), "--out", str(recording)]


def live_args(recording: Path, method: str, hop: int, policy: str) -> list[str]:
    """Step 2's ``spike-edge`` arguments (the demo adds the loopback endpoints)."""
    return ["run", "--replay", str(recording), "--realtime", "--loop", "--method", method, "--hop", str(hop),
            "--policy", policy]


def replay_args(recording: Path, method: str, hop: int) -> list[str]:
    """Step 3's ``spike-edge`` arguments (the demo adds the loopback endpoints)."""
    return ["run", "--replay", str(recording), "--method", method, "--hop", str(hop), "--wait-subscribers", "1"]


def _check(result: subprocess.CompletedProcess, what: str, log: Path | None = None) -> None:
    if result.returncode != 0:
        where = f"; see {log}" if log else ""
        fail(f"{what} failed with exit code {result.returncode}: {result.stderr.strip()[-2000:]}{where}", ExitCode.INTERNAL)


def _stop(proc: subprocess.Popen, what: str) -> int:
    code = stop(proc)
    if code is None:
        fail(f"{what} did not stop within 10 s of SIGTERM", ExitCode.INTERNAL)
    return code


def run_demo(out: Path, *, replay: Path | None, scene: str, planes: int, seconds: float, hop: int, method: str,
             policy: str = LIVE_POLICY.value) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    if replay is None:
        replay = out / f"{scene}.dat"
        args = simulate_args(scene, planes, replay)
        click.echo(f"[1/3] recording: {shown('spike-edge', args)}")
        _check(subprocess.run([*EDGE, *args], capture_output=True, text=True), "spike-edge simulate")
    else:
        click.echo(f"[1/3] recording: {replay}")
    info = json.loads(subprocess.run([*EDGE, "info", str(replay), "--json"], capture_output=True, text=True,
                                     check=True).stdout)

    pub, ctl = loopback_urls()
    live = live_args(replay, method, hop, policy)
    click.echo(f"[2/3] live at camera pace: {shown('spike-edge', live)}, measured for {seconds:g} s "
               f"by spike-host stats")
    live_log = out / "daemon-live.log"
    with open(live_log, "wb") as log:
        daemon = subprocess.Popen([*EDGE, "-v", *live, "--bind", pub, "--control", ctl], stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            if not wait_until_serving(ctl, daemon, STARTUP_TIMEOUT_S):
                fail(f"the live daemon did not start within {STARTUP_TIMEOUT_S:g} s; see {live_log}", ExitCode.INTERNAL)
            stats_run = subprocess.run([*HOST, "stats", pub, "--seconds", str(seconds + WARMUP_S),
                                        "--warmup-s", str(WARMUP_S), "--timeout-s", str(STARTUP_TIMEOUT_S), "--json"],
                                       capture_output=True, text=True, timeout=seconds + WARMUP_S + STARTUP_TIMEOUT_S + 30)
        finally:
            code = _stop(daemon, "the live daemon")
    _check(stats_run, "spike-host stats", live_log)
    if code != 0:
        fail(f"the live daemon exited with {code} on SIGTERM; see {live_log}", ExitCode.INTERNAL)
    stats = json.loads(stats_run.stdout)
    (out / "stats.json").write_text(json.dumps(stats, indent=2))

    pub, ctl = loopback_urls()
    deterministic = replay_args(replay, method, hop)
    click.echo(f"[3/3] deterministic replay: {shown('spike-edge', deterministic)}, recorded by spike-host record "
               "until end-of-stream")
    rec_log = out / "daemon-replay.log"
    npz = out / "frames.npz"
    with open(rec_log, "wb") as log:
        daemon = subprocess.Popen([*EDGE, "-v", *deterministic, "--bind", pub, "--control", ctl],
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
        write_frames(target, frames, fps=VIDEO_FPS)
    return {"recording": info, "live": stats, "record": json.loads(record.stdout), "frames": len(frames),
            "video": str(out / "demo.mp4"), "pngs": str(out / "frames"), "hop": hop, "method": method,
            "policy": policy, "seconds": seconds}


def summary_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """The demo's report: every figure with what it means (``summary`` is ``run_demo``'s result)."""
    live, rec, hop = summary["live"], summary["recording"], summary["hop"]
    daemon, sub = live.get("daemon", {}), live.get("subscriber", {})
    nominal = DEFAULT_RATE_HZ / hop
    received_fps = live.get("fps") or 0.0
    skips = int(daemon.get("worker_skipped_windows_during", 0))
    gaps = int(sub.get("lost_frames", 0))
    overruns = int(daemon.get("ring_overrun_planes_during", 0))
    windows = int(live.get("frames", 0)) + gaps + skips  # every window that came due while the subscriber listened
    share = (lambda n: f"{100 * n / windows:.1f} % of {windows} windows") if windows else (lambda n: "no windows")
    policy = summary["policy"]
    why = ("with policy latest (the live default) a worker that finds several windows ready (it woke late, or it is "
           "slower than the camera) reconstructs only the newest and skips the older ones: latency stays bounded, "
           "frames are lost; --policy all reconstructs every window and shows lag as ring overruns instead."
           if policy == WorkerPolicy.LATEST.value else
           "policy all never skips a window; a worker slower than the camera shows as ring overruns instead.")
    lines = [
        "",
        f"recording        {rec['planes']} planes of {rec['height']}x{rec['width']} = {rec['planes'] / DEFAULT_RATE_HZ:.3f} s "
        f"of a {DEFAULT_RATE_HZ / 1000:g} kHz camera; firing rate {rec['firing_rate']:.3f} spikes per pixel per plane",
        f"live stream      at camera pace, looped; {summary['method']} every {hop} planes; worker policy {policy}; "
        f"{summary['seconds']:g} s after a {WARMUP_S:g} s warm-up",
        f"  nominal        {nominal:8.1f} frames/s  = {DEFAULT_RATE_HZ:,.0f} planes/s / {hop} planes per frame "
        "(every window reconstructed)",
        f"  received       {received_fps:8.1f} frames/s  counted by the subscriber (spike-host stats)",
        f"  worker skips   {skips:8d} windows   {share(skips)} (why: below)",
        f"  subscriber gaps{gaps:8d} frames    published but never received: the subscriber fell behind",
        f"  ring overruns  {overruns:8d} planes    overwritten before the worker read them: the worker fell far behind",
    ]
    stage_meaning = {"inference": "reconstruction alone", "capture_to_receive": "plane captured -> frame received"}
    for stage, meaning in stage_meaning.items():
        s = live.get("latency_ms", {}).get(stage)
        if s and s.get("p50_ms") is not None:
            lines.append(f"  {stage:<19} p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  max {s['max_ms']:.2f} ms"
                         f"  ({meaning})")
    lines += textwrap.wrap(f"why frames are skipped: {why}", width=110, initial_indent="  ", subsequent_indent="  ")
    lines += [
        f"video            {summary['video']}: {summary['frames']} frames of the deterministic replay (every {hop}-plane "
        f"window of the recording, none skipped) at {VIDEO_FPS:g} frames/s = {nominal / VIDEO_FPS:g}x slow motion",
        f"images           {summary['pngs']}/ (the same frames as PNGs, each normalised to its own min..max)",
        f"statistics       {out / 'stats.json'} (everything spike-host stats measured)",
    ]
    return lines


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"), show_default=True)
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Use this recording instead of a simulated scene.")
@click.option("--scene", default="shapes", show_default=True, help="Built-in scene to simulate.")
@click.option("--planes", type=click.IntRange(min=400), default=8000, show_default=True, help="Length of the simulated recording.")
@click.option("--seconds", type=click.FloatRange(min=1), default=5.0, show_default=True, help="Length of the live measurement.")
@click.option("--hop", type=click.IntRange(min=1), default=DEFAULT_HOP_PLANES, show_default=True, help="Planes per output frame (40 = 1,000 frames/s).")
@click.option("--method", default=DEFAULT_METHOD.value, show_default=True, help="Reconstruction method.")
@click.option("--policy", type=click.Choice(spellings(WorkerPolicy)), default=LIVE_POLICY.value, show_default=True,
              help="Worker policy of the live step (latest: the live default, skips windows when more than one is "
                   "ready; all: every window).")
def demo(out, replay, scene, planes, seconds, hop, method, policy):
    """Simulate a recording, stream it live at camera pace, record a deterministic replay; explain the figures.

    Steps: spike-edge simulate (unless --replay); spike-edge run --replay REC --realtime --loop measured by
    spike-host stats; spike-edge run --replay REC --wait-subscribers 1 recorded by spike-host record into
    demo.mp4 and frames/.
    """
    t0 = time.monotonic()
    summary = run_demo(out, replay=replay, scene=scene, planes=planes, seconds=seconds, hop=hop, method=method,
                       policy=policy)
    for line in summary_lines(summary, out):
        click.echo(line)
    click.echo(f"(the demo took {time.monotonic() - t0:.0f} s)")
