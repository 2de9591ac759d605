"""``spike-edge bench pipeline``: the live pipeline measured from outside, as a user would run it.

A real ``spike-edge run --replay FILE --realtime --loop`` subprocess (ring ``overwrite``: the
capture never waits) is subscribed to over loopback. ``--policy all`` (the default here) processes
every window, batching when behind, so falling behind shows up only as ring overruns: it measures
whether the pipeline sustains the rate. ``--policy latest`` (the live default) also skips windows
when the worker falls more than its latency budget behind; its skips are reported. After a warm-up the bench
reports: published frames/s (from the daemon's ``seq`` and ``publish_t_ns``, so subscriber-side
loss does not count against it), received frames/s and subscriber gaps, ring overruns and worker
skips during the measured window (from the control socket's ``stats`` before and after), and
p50/p99 latency capture -> publish and capture -> receive (one monotonic clock for the host).
``--find-max`` then raises the plane rate until the run has overruns or falls short of the
nominal frame rate by more than 1 %, and bisects between the last pass and the first failure.
Figures depend on what else the machine is doing; report them with the load.

``--height/--width`` set the geometry of the generated recording (e.g. 1000x1000). ``--record
[DIR]`` runs the daemon with ``--record`` (into a fresh folder per run under DIR, kept; without DIR
a temporary one, removed) and reports, for the measured window: planes recorded, captured and
dropped by the recorder, the sustained write rate (MB/s, 10^6 bytes), the recorder's state and how
far behind it was at the end; after the daemon has stopped, what the folder holds (planes, gaps,
open segments). ``record_passed``: nothing dropped and still recording.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import zmq

from edge.cli.processes import EDGE, loopback_urls, stop
from edge.live.config import DEFAULT_METHOD, DEFAULT_RING_PLANES
from edge.live.options import spellings
from edge.live.worker import DEFAULT_HOP_PLANES, WorkerPolicy
from edge.reconstruction.backends.base import BackendName
from edge.reconstruction.methods import Method
from edge.protocol.wire import FrameHeader, decode
from edge.protocol.client import ControlTimeout, request
from edge.live.recorder import DEFAULT_SEGMENT_MB
from firmware_io.contract import DEFAULT_GEOMETRY, DEFAULT_RATE_HZ, Geometry
from firmware_io.dat import DatWriter
from firmware_io.recording import open_recording

BENCH_PLANES = 2000


def make_bench_recording(folder: Path, n_planes: int = BENCH_PLANES, geometry: Geometry = DEFAULT_GEOMETRY) -> Path:
    """A ``.dat`` of random planes (bit density 0.5; TFP cost does not depend on content)."""
    path = folder / f"bench_{geometry}.dat"
    rng = np.random.default_rng(1)
    with DatWriter(path, geometry) as writer:
        for start in range(0, n_planes, 200):
            n = min(200, n_planes - start)
            writer.write_packed(rng.integers(0, 256, (n, geometry.plane_bytes), dtype=np.uint8))
    return path


def _stats(ctl: str) -> dict[str, Any]:
    try:
        return request(ctl, {"cmd": "stats"}, timeout_s=2.0).get("stats", {})
    except ControlTimeout:
        return {}


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def run_trial(path: Path, *, rate_hz: float, seconds: float, warmup_s: float, hop: int, method: str, backend: str,
              ring_planes: int, policy: str, log_path: Path, geometry: Geometry | None = None,
              record: Path | None = None, record_segment_mb: float = DEFAULT_SEGMENT_MB) -> dict[str, Any]:
    pub, ctl = loopback_urls()
    cmd = [*EDGE, "run", "--replay", str(path), "--realtime", "--loop", "--rate-hz", str(rate_hz),
           "--hop", str(hop), "--method", method, "--backend", backend, "--ring-planes", str(ring_planes),
           "--policy", policy,
           "--bind", pub, "--control", ctl]
    if geometry is not None:
        cmd += ["--height", str(geometry.height), "--width", str(geometry.width)]
    if record is not None:
        cmd += ["--record", str(record), "--record-segment-mb", str(record_segment_mb)]
    ctx = zmq.Context()
    with open(log_path, "wb") as log_f:
        proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT)
        try:
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, 10000)
            sub.setsockopt(zmq.SUBSCRIBE, b"frame")
            sub.connect(pub)
            deadline = time.monotonic() + 30
            first: FrameHeader | None = None
            while first is None and time.monotonic() < deadline:  # startup (spawn, imports)
                if proc.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {proc.returncode}; see {log_path}")
                if sub.poll(100):
                    msg = decode(sub.recv_multipart())
                    first = msg[0] if isinstance(msg, tuple) else None
            if first is None:
                raise RuntimeError(f"no frame within 30 s; see {log_path}")
            warm_end = time.monotonic() + warmup_s
            while time.monotonic() < warm_end:
                if sub.poll(50):
                    sub.recv_multipart()
            before, before_t = _stats(ctl), time.monotonic()
            rows = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if sub.poll(50):
                    parts = sub.recv_multipart(copy=True)
                    recv_t = time.monotonic_ns()
                    msg = decode(parts)
                    if isinstance(msg, tuple):
                        h = msg[0]
                        rows.append((h.seq, h.publish_t_ns, h.capture_t_ns, recv_t))
            after, after_t = _stats(ctl), time.monotonic()
            sub.close(0)
        finally:
            stop(proc, timeout_s=5 if record is None else 60)  # a recording writes its buffer out first
            ctx.destroy(0)
    nominal = rate_hz / hop
    result: dict[str, Any] = {"rate_hz": rate_hz, "hop": hop, "method": method, "policy": policy, "nominal_fps": nominal,
                              "seconds": seconds, "frames_received": len(rows)}
    if len(rows) >= 2:
        seq = np.array([r[0] for r in rows])
        pub_t = np.array([r[1] for r in rows])
        cap_t = np.array([r[2] for r in rows])
        recv_t = np.array([r[3] for r in rows])
        span = (pub_t[-1] - pub_t[0]) / 1e9
        result["published_fps"] = round(float((seq[-1] - seq[0]) / span), 2) if span > 0 else None
        result["received_fps"] = round(float((len(rows) - 1) / span), 2) if span > 0 else None
        result["subscriber_lost_frames"] = int((seq[-1] - seq[0] + 1) - len(rows))
        c2p = ((pub_t - cap_t) / 1e6).tolist()
        c2r = ((recv_t - cap_t) / 1e6).tolist()
        result.update(capture_to_publish_ms_p50=_pct(c2p, 50), capture_to_publish_ms_p99=_pct(c2p, 99),
                      capture_to_receive_ms_p50=_pct(c2r, 50), capture_to_receive_ms_p99=_pct(c2r, 99))
    for key in ("ring_overrun_planes", "ring_overwritten_unread", "worker_skipped_windows", "lost_windows"):
        if key in before and key in after:
            result[key] = int(after[key]) - int(before[key])
    fps = result.get("published_fps") or 0.0
    result["passed"] = (result.get("ring_overrun_planes", 1) == 0 and result.get("ring_overwritten_unread", 1) == 0
                        and fps >= 0.99 * nominal)
    if record is not None:
        result["record"] = _record_figures(before, after, after_t - before_t, record)
    return result


def _record_figures(before: dict[str, Any], after: dict[str, Any], elapsed_s: float, folder: Path) -> dict[str, Any]:
    """What the recorder did in the measured window (stats deltas) and what its folder holds after the stop."""
    delta = {key: int(after.get(key, 0)) - int(before.get(key, 0))
             for key in ("planes_captured", "record_planes", "record_bytes", "record_dropped_planes", "record_drops")}
    out: dict[str, Any] = {
        "planes_captured": delta["planes_captured"], "planes_recorded": delta["record_planes"],
        "planes_dropped": delta["record_dropped_planes"], "drops": delta["record_drops"],
        "write_mb_per_s": round(delta["record_bytes"] / 1e6 / elapsed_s, 1) if elapsed_s > 0 else None,
        "state_at_end": after.get("record_state"), "behind_planes_at_end": after.get("record_behind_planes"),
    }
    out["passed"] = out["planes_dropped"] == 0 and out["state_at_end"] == "recording"
    try:
        with open_recording(folder) as rec:
            out["folder"] = {"path": str(folder), "recorded_planes": rec.recorded_planes,
                             "gap_planes": rec.n_planes - rec.recorded_planes, "segments": len(rec.segments),
                             "open_segments": rec.open_segments}
    except (OSError, ValueError) as exc:
        out["folder"] = {"path": str(folder), "error": str(exc)}
    return out


def _print_trial(r: dict[str, Any]) -> None:
    print(f"rate {r['rate_hz']:.0f} Hz hop {r['hop']} ({r['method']}, policy {r['policy']}): published {r.get('published_fps')} frames/s "
          f"(nominal {r['nominal_fps']:.1f}), received {r.get('received_fps')}/s, sub lost {r.get('subscriber_lost_frames')}, "
          f"ring overruns {r.get('ring_overrun_planes')} planes (overwritten unread {r.get('ring_overwritten_unread')}), "
          f"worker skips {r.get('worker_skipped_windows')}, capture->publish p50/p99 "
          f"{r.get('capture_to_publish_ms_p50')}/{r.get('capture_to_publish_ms_p99')} ms, capture->receive p50/p99 "
          f"{r.get('capture_to_receive_ms_p50')}/{r.get('capture_to_receive_ms_p99')} ms -> "
          f"{'PASS' if r['passed'] else 'FAIL'}", flush=True)
    if "record" in r:
        rec = r["record"]
        print(f"  record: {rec['planes_recorded']} planes recorded of {rec['planes_captured']} captured in the "
              f"measured window, {rec['planes_dropped']} dropped in {rec['drops']} drop(s), {rec['write_mb_per_s']} MB/s "
              f"written, state {rec['state_at_end']}, {rec['behind_planes_at_end']} planes behind at the end; "
              f"folder after the stop: {rec['folder']} -> {'PASS' if rec['passed'] else 'FAIL'}", flush=True)


def run_bench(file: str | None, *, seconds: float, warmup_s: float, rate_hz: float, hop: int, method: str,
              backend: str, ring_planes: int, policy: str, find_max: bool, as_json: bool,
              geometry: Geometry | None = None, record: str | None = None,
              record_segment_mb: float = DEFAULT_SEGMENT_MB) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="spike-bench-") as tmp:
        tmp_path = Path(tmp)
        path = Path(file) if file else make_bench_recording(tmp_path, geometry=geometry or DEFAULT_GEOMETRY)
        common = dict(seconds=seconds, warmup_s=warmup_s, hop=hop, method=method, backend=backend,
                      ring_planes=ring_planes, policy=policy, geometry=geometry, record_segment_mb=record_segment_mb)
        record_root = None if record is None else (Path(record) if record else tmp_path / "recordings")
        runs = iter(range(1, 1000))

        def trial(rate: float, secs: float = seconds) -> dict[str, Any]:
            folder = None if record_root is None else record_root / f"run-{next(runs):03d}-{int(rate)}hz"
            return run_trial(path, **{**common, "seconds": secs}, rate_hz=rate, record=folder,
                             log_path=tmp_path / f"daemon_{int(rate)}.log")

        generated = f"generated {geometry or DEFAULT_GEOMETRY} random planes"
        report: dict[str, Any] = {"file": str(file or generated), "cpu_count": os.cpu_count(),
                                  "load_avg_1m": os.getloadavg()[0]}
        main = trial(rate_hz)
        report["run"] = main
        if not as_json:
            _print_trial(main)
        if find_max:
            short = min(seconds, 4.0)
            trials = []
            lo, hi = (rate_hz, None) if main["passed"] else (None, rate_hz)
            rate = rate_hz * 1.5 if main["passed"] else rate_hz / 1.5
            for _ in range(8):  # grow (or shrink) until the verdict flips
                r = trial(rate, short)
                trials.append(r)
                if not as_json:
                    _print_trial(r)
                if r["passed"]:
                    lo = rate
                    if hi is not None:
                        break
                    rate *= 1.5
                else:
                    hi = rate
                    if lo is not None:
                        break
                    rate /= 1.5
            for _ in range(3):  # bisect
                if lo is None or hi is None:
                    break
                rate = (lo + hi) / 2
                r = trial(rate, short)
                trials.append(r)
                if not as_json:
                    _print_trial(r)
                lo, hi = (rate, hi) if r["passed"] else (lo, rate)
            report["find_max"] = {"max_rate_hz_without_overruns": lo, "first_failing_rate_hz": hi, "trials": trials}
            if not as_json:
                print(f"highest plane rate sustained without overruns: {lo} Hz (first failure at {hi} Hz)")
        report["load_avg_1m_end"] = os.getloadavg()[0]
        if as_json:
            print(json.dumps(report, indent=2))
        return report


@click.command("pipeline")
@click.argument("file", required=False, type=click.Path(dir_okay=False, exists=True))
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Measured time per run.")
@click.option("--warmup", type=float, default=2.0, show_default=True, help="Seconds ignored at the start.")
@click.option("--rate-hz", type=float, default=DEFAULT_RATE_HZ, show_default=True)
@click.option("--hop", type=int, default=DEFAULT_HOP_PLANES, show_default=True)
@click.option("--method", type=click.Choice(spellings(Method)), default=DEFAULT_METHOD.value, show_default=True)
@click.option("--backend", type=click.Choice(spellings(BackendName)), default=BackendName.AUTO.value, show_default=True)
@click.option("--ring-planes", type=int, default=DEFAULT_RING_PLANES, show_default=True)
@click.option("--policy", type=click.Choice(spellings(WorkerPolicy)), default=WorkerPolicy.ALL.value, show_default=True,
              help="Worker policy of the daemon under test (all: every window, lag shows as overruns; "
                   "latest: the live default, skips counted).")
@click.option("--find-max", is_flag=True, help="Then search the highest plane rate sustained without overruns.")
@click.option("--height", type=click.IntRange(min=1),
              help=f"Plane height of the generated recording (default {DEFAULT_GEOMETRY.height}), or of FILE (.dat).")
@click.option("--width", type=click.IntRange(min=1),
              help=f"Plane width of the generated recording (default {DEFAULT_GEOMETRY.width}), or of FILE (.dat).")
@click.option("--record", type=click.Path(file_okay=False), is_flag=False, flag_value="",
              help="Run the daemon with --record: into a new folder per run under DIR (kept), or a temporary one "
                   "(removed) when DIR is left out; report planes recorded/captured/dropped and MB/s.",
              metavar="[DIR]")
@click.option("--record-segment-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_SEGMENT_MB,
              show_default=True, help="Segment size of the recording (MB).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_pipeline(file, seconds, warmup, rate_hz, hop, method, backend, ring_planes, policy, find_max, height, width,
                   record, record_segment_mb, as_json) -> None:
    """Real-time replay through a daemon subprocess: published frames/s, overruns, skips, latency;
    with --record, what the recorder kept up with."""
    from edge.cli.bench.pipeline import run_bench
    from edge.cli.common import geometry_option

    run_bench(file, seconds=seconds, warmup_s=warmup, rate_hz=rate_hz, hop=hop, method=method, backend=backend,
              ring_planes=ring_planes, policy=policy, find_max=find_max, as_json=as_json,
              geometry=geometry_option(height, width), record=record, record_segment_mb=record_segment_mb)
