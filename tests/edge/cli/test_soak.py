"""``spike-edge bench soak``: a short real run (daemon, subscriber, recorder) sampled from /proc with
its recording folder capped, and the growth verdict on known series."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from edge.cli.bench.soak import RecordingCap, Tolerance, Usage, children, format_verdicts, judge, read_usage
from firmware_io.exits import ExitCode

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="bench soak reads /proc (Linux)")

EDGE = [sys.executable, "-m", "edge"]
PROCESSES = {"daemon", "capture", "resource-tracker", "subscriber", "recorder"}


@pytest.mark.slow
def test_a_short_soak_watches_every_process_and_caps_the_recording():
    cap_mb = 16
    result = subprocess.run([*EDGE, "bench", "soak", "--minutes", "0.25", "--interval-s", "1", "--rate-hz", "2000",
                             "--max-record-mb", str(cap_mb), "--rss-tolerance-mb", "400", "--fd-tolerance", "50",
                             "--thread-tolerance", "50", "--json"], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert set(report["samples"]) == PROCESSES
    for name, samples in report["samples"].items():
        assert len(samples) >= 12, name  # one a second for 15 s (the first ones may precede a child's start)
        assert all(s["rss_mib"] > 1 and s["open_files"] >= 3 and s["threads"] >= 1 for s in samples), name
    assert report["warmup_s"] == 3.0  # a fifth of the run
    verdicts = {(v["process"], v["metric"]) for v in report["verdicts"]}
    assert verdicts == {(p, m) for p in PROCESSES for m in ("rss_mib", "open_files", "threads")}
    assert report["passed"] and all(v["ok"] for v in report["verdicts"])
    # the pipeline really ran: 2 kHz / 40 planes = 50 frames/s, received by both host processes
    assert report["published_fps"] > 20
    assert report["subscriber"]["frames"] > 100 and report["recorder"]["frames"] > 100
    assert report["exit_codes"] == {"recorder": 0, "subscriber": 0, "daemon": 0}
    # 0.4 MB frames at 50 frames/s overflow 16 MiB in well under the run: old frames were deleted
    rec = report["recording"]
    assert rec["deleted_frames"] > 0 and rec["peak_mib"] <= 2 * cap_mb
    assert rec["frames_seen"] == report["recorder"]["frames"]  # its last frame file, as it stopped


def test_the_table_run_prints_samples_and_the_verdict_per_process():
    result = subprocess.run([*EDGE, "bench", "soak", "--minutes", "0.1", "--interval-s", "1", "--rate-hz", "2000",
                             "--rss-tolerance-mb", "400", "--fd-tolerance", "50", "--thread-tolerance", "50"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("t s"))
    assert all(name in lines[header] for name in PROCESSES)
    assert "RSS MiB  fds thr" in lines[header + 1]
    table = next(i for i, line in enumerate(lines) if line.startswith("process "))
    assert len(lines) - table - 1 == len(PROCESSES)
    assert all(line.rstrip().endswith("ok") for line in lines[table + 1:])


def test_too_short_a_run_for_two_samples_is_refused():
    result = subprocess.run([*EDGE, "bench", "soak", "--minutes", "0.05", "--interval-s", "5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitCode.BAD_INPUT
    assert "--minutes 0.05 with a 0.6 s warm-up leaves 2.4 s to measure, less than two samples --interval-s 5 apart" \
        in result.stderr


def series(values, *, pid=1, start=0.0, step=5.0, fds=10, threads=4):
    return [Usage(start + i * step, pid, float(v), fds, threads) for i, v in enumerate(values)]


def test_growth_after_the_warm_up_fails_and_flat_noise_passes():
    tolerance = Tolerance(rss_mib=16, open_files=4, threads=2)
    rng = np.random.default_rng(0)
    flat = series(100 + rng.normal(0, 3, 60))  # noisy but flat: 5 minutes
    leaking = series(np.linspace(100, 160, 60))  # +12 MiB per minute
    warm = series([20, 60, 90, *([100] * 57)])  # grows only while warming up
    verdicts = {(g.process, g.metric): g for g in judge({"flat": flat, "leak": leaking, "warm": warm}, 30.0, tolerance)}
    assert verdicts[("flat", "rss_mib")].ok and verdicts[("warm", "rss_mib")].ok
    leak = verdicts[("leak", "rss_mib")]
    # medians of the first and last quarter (13 samples) after the warm-up: 100 + 60/59 x (12, 53)
    assert not leak.ok and leak.growth == pytest.approx(60 / 59 * 41) and leak.slope_per_min == pytest.approx(12.2, abs=0.1)
    assert leak.samples == 54  # the six samples of the first 30 s are warm-up
    table = format_verdicts(list(verdicts.values()), {"flat": [1], "leak": [1], "warm": [1]})
    assert any(line.startswith("leak") and line.endswith("GROWS: rss_mib") for line in table)


def test_a_transient_descriptor_does_not_decide_but_a_leaked_one_does():
    tolerance = Tolerance(rss_mib=16, open_files=0, threads=0)
    transient = [Usage(u.t_s, 1, 50.0, 11 if i % 7 == 3 else 10, 4) for i, u in enumerate(series([50] * 40))]
    leaked = [Usage(u.t_s, 1, 50.0, 10 + i // 10, 4) for i, u in enumerate(series([50] * 40))]
    verdicts = {g.process: g for g in judge({"transient": transient, "leaked": leaked}, 0.0, tolerance)
                if g.metric == "open_files"}
    assert verdicts["transient"].ok and not verdicts["leaked"].ok


def test_a_restarted_process_is_judged_from_its_restart():
    tolerance = Tolerance(rss_mib=16, open_files=4, threads=2)
    before, after = series([300] * 10, pid=7), series([100] * 10, pid=8, start=50.0)
    (rss,) = [g for g in judge({"capture": before + after}, 0.0, tolerance) if g.metric == "rss_mib"]
    assert rss.ok and rss.baseline == rss.end == 100 and rss.samples == 10


def test_proc_readings_of_a_real_child():
    child = subprocess.Popen([sys.executable, "-c", "import threading, time; "
                              "[threading.Thread(target=time.sleep, args=(30,), daemon=True).start() for _ in range(3)]; "
                              "f = [open('/dev/null') for _ in range(5)]; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            usage = read_usage(child.pid, 0.0)
            if usage is not None and usage.threads == 4 and usage.open_files >= 8:
                break
            time.sleep(0.1)
        assert usage.threads == 4 and usage.open_files >= 8 and usage.rss_mib > 1  # 3 std streams + 5 files
        assert (child.pid, os.path.basename(sys.executable)) in children(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert read_usage(child.pid, 0.0) is None


def test_the_recording_cap_deletes_the_oldest_frames_and_empties_an_oversized_index(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    for i in range(10):
        (folder / f"frame_{i:06d}.npy").write_bytes(b"\0" * 100_000)
    (folder / "frames.jsonl").write_bytes(b"x" * 300_000)
    cap = RecordingCap(folder, max_bytes=1_000_000)
    cap.prune()
    assert cap.peak_bytes == 1_300_000 and cap.index_truncations == 1
    assert (folder / "frames.jsonl").stat().st_size == 0
    kept = sorted(p.name for p in folder.glob("frame_*.npy"))
    assert kept == [f"frame_{i:06d}.npy" for i in range(3, 10)] and cap.deleted_frames == 3  # 0.7 MB <= 3/4 cap
    assert cap.newest_frame == 9
