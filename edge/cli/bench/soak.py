"""``spike-edge bench soak --minutes N``: the live pipeline run for N minutes while every process of it
is watched for growth (memory, open files, threads).

What runs, as real subprocesses on loopback (as deployed):

- the daemon: ``spike-edge run --replay REC --realtime --loop`` on a generated 250x400 recording at
  40 kHz (``--source replay``, the default) or ``spike-edge run --simulate`` (``--source simulate``,
  2 kHz), TFP every ``--hop`` planes, the live default policy ``latest``;
- a subscriber: ``spike-host stats URL`` for the whole run;
- a recorder: ``spike-host record URL --out DIR`` into a folder in a temporary directory. Its disk use
  is capped (``--max-record-mb``): every 0.1 s the soak deletes the oldest frame files beyond three
  quarters of the cap and, when the index ``frames.jsonl`` alone passes a quarter of it, empties the
  index (the recorder appends to it, so its next line lands at the new end). The folder's peak size
  is reported; it passes the cap only by what the recorder writes between two prunes (more on a
  loaded machine, where the pruning thread runs late). The folder is removed at the end.

Every ``--interval-s`` it samples, from ``/proc`` (Linux), the resident memory (VmRSS), open file
descriptors and threads of every process: the daemon and its children (the capture process and
multiprocessing's resource tracker), the subscriber and the recorder; plus the daemon's published
frames (control ``stats``) and the recording's disk use. One line per sample is printed as it is taken.

Verdict: samples in the warm-up (``--warmup-s``, default a fifth of the run, at most 60 s) are
ignored. For each process and metric, the baseline is the median of the first quarter of the
remaining samples and the end value the median of the last quarter (a transient, such as a file
being written or a thread starting, decides nothing); growth = end - baseline must stay within
``--rss-tolerance-mb``, ``--fd-tolerance`` and ``--thread-tolerance``. A process that restarted
(new pid) is compared from its restart on. Exit codes: 0 within tolerance, ``CHECK_FAILED`` (8) on
growth, ``INCOMPLETE`` (7) when a process of the pipeline stops before the end, 2 for options that
leave fewer than two samples after the warm-up.
"""

from __future__ import annotations

import enum
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from edge.cli.bench.pipeline import make_bench_recording
from edge.cli.processes import EDGE, HOST, loopback_urls, stop, wait_until_serving
from edge.live.config import DEFAULT_METHOD
from edge.live.options import spellings
from edge.live.worker import DEFAULT_HOP_PLANES
from edge.protocol.client import ControlError, ControlTimeout, request
from edge.reconstruction.methods import Method
from firmware_io.exits import ExitCode, fail

MIB = 1 << 20
PRUNE_EVERY_S = 0.1
PRUNE_TO = 0.75  # of --max-record-mb: room for what the recorder writes until the next prune
INDEX_SHARE = 0.25  # of --max-record-mb, for the recorder's frames.jsonl
STARTUP_S = 60.0
LOG_TAIL_CHARS = 2000


class SoakSource(str, enum.Enum):
    """What feeds the daemon under test."""

    REPLAY = "replay"  # a generated recording replayed at camera pace, looped
    SIMULATE = "simulate"  # the live simulator


@dataclass(frozen=True)
class Usage:
    """One process at one moment."""

    t_s: float
    pid: int
    rss_mib: float
    open_files: int
    threads: int


@dataclass(frozen=True)
class Tolerance:
    rss_mib: float
    open_files: int
    threads: int


@dataclass
class Growth:
    """One process's verdict on one metric."""

    process: str
    metric: str
    baseline: float
    end: float
    growth: float
    limit: float
    slope_per_min: float
    samples: int

    @property
    def ok(self) -> bool:
        return self.growth <= self.limit


METRICS = ("rss_mib", "open_files", "threads")


def read_usage(pid: int, t_s: float) -> Usage | None:
    """RSS, open descriptors and threads of ``pid`` from ``/proc``; ``None`` once it is gone (or a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        open_files = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:
        return None
    return Usage(t_s, pid, int(fields["VmRSS"].split()[0]) / 1024, open_files, int(fields["Threads"]))


def children(pid: int) -> list[tuple[int, str]]:
    """``(pid, label)`` of the direct children of ``pid``: ``capture``, ``resource-tracker`` or argv[0]."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:  # after "pid (comm)": state, ppid
            continue
        if "resource_tracker" in cmdline:
            label = "resource-tracker"
        elif "spawn_main" in cmdline:
            label = "capture"  # the daemon's one spawned process (edge.live.capture)
        else:
            label = Path(cmdline.split(" ", 1)[0]).name or entry.name
        found.append((int(entry.name), label))
    return sorted(found)


def sample_pipeline(procs: dict[str, subprocess.Popen], t_s: float) -> dict[str, Usage]:
    """Usage of the daemon, its children, the subscriber and the recorder, by label (``capture#2`` for a
    second child of the same kind); a process that is gone is left out."""
    watched = [(procs["daemon"].pid, "daemon"), *children(procs["daemon"].pid),
               (procs["subscriber"].pid, "subscriber"), (procs["recorder"].pid, "recorder")]
    usages: dict[str, Usage] = {}
    for i, (pid, label) in enumerate(watched):
        same = sum(1 for _, other in watched[:i] if other == label)
        usage = read_usage(pid, t_s)
        if usage is not None:
            usages[f"{label}#{same + 1}" if same else label] = usage
    return usages


def judge(series: dict[str, list[Usage]], warmup_s: float, tolerance: Tolerance) -> list[Growth]:
    """Growth of every metric of every process after ``warmup_s`` (see the module docstring)."""
    verdicts = []
    for process, usages in series.items():
        after = [u for u in usages if u.t_s >= warmup_s]
        after = [u for u in after if u.pid == after[-1].pid] if after else []  # since its last restart
        if len(after) < 2:
            continue
        quarter = max(1, len(after) // 4)
        for metric in METRICS:
            values = [float(getattr(u, metric)) for u in after]
            baseline, end = statistics.median(values[:quarter]), statistics.median(values[-quarter:])
            span_min = (after[-1].t_s - after[0].t_s) / 60
            slope = statistics.linear_regression([u.t_s / 60 for u in after], values).slope if span_min > 0 else 0.0
            limit = getattr(tolerance, metric)
            verdicts.append(Growth(process, metric, baseline, end, end - baseline, limit, slope, len(after)))
    return verdicts


@dataclass
class RecordingCap:
    """Keeps a folder recording under ``max_bytes`` while it is written (see the module docstring)."""

    folder: Path
    max_bytes: int
    peak_bytes: int = 0
    deleted_frames: int = 0
    index_truncations: int = 0
    newest_frame: int = -1
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def usage_bytes(self) -> int:
        total = 0
        for entry in os.scandir(self.folder) if self.folder.is_dir() else ():
            try:
                total += entry.stat().st_size
            except FileNotFoundError:  # renamed or deleted meanwhile
                pass
        return total

    def prune(self) -> None:
        if not self.folder.is_dir():
            return
        frames, index_bytes, total = [], 0, 0
        for entry in os.scandir(self.folder):
            try:
                size = entry.stat().st_size
            except FileNotFoundError:
                continue
            total += size
            if entry.name == "frames.jsonl":
                index_bytes = size
            elif entry.name.startswith("frame_") and entry.name.endswith(".npy"):
                frames.append((entry.name, size))
        self.peak_bytes = max(self.peak_bytes, total)
        frames.sort()
        if frames:
            self.newest_frame = max(self.newest_frame, int(frames[-1][0][len("frame_"):-len(".npy")]))
        if index_bytes > INDEX_SHARE * self.max_bytes:
            os.truncate(self.folder / "frames.jsonl", 0)
            total -= index_bytes
            self.index_truncations += 1
        for name, size in frames[:-1]:  # the newest may still be named in a line being written
            if total <= PRUNE_TO * self.max_bytes:
                break
            (self.folder / name).unlink(missing_ok=True)
            total -= size
            self.deleted_frames += 1

    def _run(self) -> None:
        while not self._stop.wait(PRUNE_EVERY_S):
            self.prune()

    def __enter__(self) -> "RecordingCap":
        self._thread = threading.Thread(target=self._run, name="soak-recording-cap", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""


def _daemon_frames(ctl: str) -> int | None:
    try:
        reply = request(ctl, {"cmd": "stats"}, timeout_s=2.0)
    except (ControlTimeout, ControlError):
        return None
    return reply.get("stats", {}).get("frames")


def _row(t_s: float, published: int | None, record_mib: float, usages: dict[str, Usage]) -> str:
    cells = " | ".join(f"{u.rss_mib:7.1f} {u.open_files:4d} {u.threads:3d}" for u in usages.values())
    return f"{t_s:7.0f} {'-' if published is None else published:>10} {record_mib:8.1f} | {cells}"


def _header(labels: list[str]) -> str:
    return (f"{'t s':>7} {'published':>10} {'rec MiB':>8} | " + " | ".join(f"{label:^16.16}" for label in labels) +
            f"\n{'':>7} {'frames':>10} {'':>8} | " + " | ".join(f"{'RSS MiB':>7} {'fds':>4} {'thr':>3}" for _ in labels))


def format_verdicts(verdicts: list[Growth], pids: dict[str, list[int]]) -> list[str]:
    """The per-process table: baseline -> end (growth / limit) of each metric, and the verdict."""
    lines = [f"{'process':<17}{'pid':>8}  {'RSS MiB: base -> end (growth/limit, slope/min)':<48}"
             f"{'open files':<20}{'threads':<18}verdict"]
    by_process: dict[str, dict[str, Growth]] = {}
    for g in verdicts:
        by_process.setdefault(g.process, {})[g.metric] = g
    for process, metrics in by_process.items():
        rss, fds, thr = metrics["rss_mib"], metrics["open_files"], metrics["threads"]
        bad = [g.metric for g in metrics.values() if not g.ok]
        restarts = len(pids[process]) - 1
        lines.append(
            f"{process:<17}{pids[process][-1]:>8}  "
            f"{f'{rss.baseline:.1f} -> {rss.end:.1f} ({rss.growth:+.1f}/{rss.limit:g}, {rss.slope_per_min:+.2f})':<48}"
            f"{f'{fds.baseline:g} -> {fds.end:g} ({fds.growth:+g}/{fds.limit:g})':<20}"
            f"{f'{thr.baseline:g} -> {thr.end:g} ({thr.growth:+g}/{thr.limit:g})':<18}"
            f"{'GROWS: ' + ', '.join(bad) if bad else 'ok'}{f' ({restarts} restart(s))' if restarts else ''}")
    return lines


def run_soak(*, minutes: float, source: SoakSource, rate_hz: float | None, hop: int, method: str, interval_s: float,
             warmup_s: float, tolerance: Tolerance, max_record_mb: float, as_json: bool) -> dict[str, Any]:
    if not Path("/proc/self/status").is_file():
        fail("bench soak reads /proc (Linux) to watch the processes; this system has none")
    duration_s = minutes * 60
    echo = (lambda *a, **k: None) if as_json else click.echo
    with tempfile.TemporaryDirectory(prefix="spike-soak-") as tmp:
        tmp_path = Path(tmp)
        pub, ctl = loopback_urls()
        if source is SoakSource.REPLAY:
            feed = ["--replay", str(make_bench_recording(tmp_path)), "--realtime", "--loop"]
        else:
            feed = ["--simulate"]
        daemon_args = ["run", *feed, "--method", method, "--hop", str(hop), "--policy", "latest",
                       *(["--rate-hz", str(rate_hz)] if rate_hz is not None else [])]
        logs = {name: tmp_path / f"{name}.log" for name in ("daemon", "subscriber", "recorder")}
        outputs = {name: tmp_path / f"{name}.json" for name in ("subscriber", "recorder")}
        record_dir = tmp_path / "recording"
        procs: dict[str, subprocess.Popen] = {}
        files = []
        report: dict[str, Any] = {"minutes": minutes, "source": source.value, "daemon_args": daemon_args,
                                  "interval_s": interval_s, "warmup_s": warmup_s, "tolerance": asdict(tolerance),
                                  "max_record_mb": max_record_mb, "cpu_count": os.cpu_count(),
                                  "load_avg_1m_start": os.getloadavg()[0]}
        series: dict[str, list[Usage]] = {}
        pids: dict[str, list[int]] = {}
        published: list[tuple[float, int | None]] = []
        early: str | None = None
        cap = RecordingCap(record_dir, int(max_record_mb * MIB))

        def start(name: str, cmd: list[str], out: Path | None = None) -> None:
            log = open(logs[name], "wb")
            stdout = open(out, "wb") if out is not None else log
            files.extend([log, stdout])
            procs[name] = subprocess.Popen(cmd, stdout=stdout, stderr=log)

        try:
            echo(f"soak: spike-edge {' '.join(daemon_args)} for {minutes:g} min, with spike-host stats and spike-host "
                 f"record (folder capped at {max_record_mb:g} MiB); a sample every {interval_s:g} s, the first "
                 f"{warmup_s:g} s are warm-up")
            start("daemon", [*EDGE, "-v", *daemon_args, "--bind", pub, "--control", ctl])
            if not wait_until_serving(ctl, procs["daemon"], STARTUP_S):
                fail(f"the daemon did not start within {STARTUP_S:g} s; its log:\n{_tail(logs['daemon'])}",
                     ExitCode.INCOMPLETE)
            start("subscriber", [*HOST, "stats", pub, "--seconds", str(duration_s + 3600), "--warmup-s", "0",
                                 "--json"], outputs["subscriber"])
            start("recorder", [*HOST, "record", pub, "--out", str(record_dir), "--timeout-s", "30"],
                  outputs["recorder"])
            t0 = time.monotonic()
            labels: list[str] = []
            with cap:
                while True:
                    t_s = time.monotonic() - t0
                    usages = sample_pipeline(procs, t_s)
                    for name, usage in usages.items():
                        series.setdefault(name, []).append(usage)
                        if usage.pid not in pids.setdefault(name, []):
                            pids[name].append(usage.pid)
                    frames = _daemon_frames(ctl)
                    published.append((t_s, frames))
                    if list(usages) != labels:
                        labels = list(usages)
                        echo(_header(labels))
                    echo(_row(t_s, frames, cap.usage_bytes() / MIB, usages))
                    gone = [name for name, proc in procs.items() if proc.poll() is not None]
                    if gone:
                        early = ", ".join(f"{name} exited with {procs[name].returncode}" for name in gone)
                        break
                    if t_s >= duration_s:
                        break
                    time.sleep(max(0.0, min(interval_s, duration_s - t_s) - (time.monotonic() - t0 - t_s)))
        finally:
            codes = {}
            for name in ("recorder", "subscriber"):  # SIGINT: each prints its JSON summary and exits 0
                proc = procs.get(name)
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for name in ("recorder", "subscriber"):
                if name in procs:
                    try:
                        codes[name] = procs[name].wait(30)
                    except subprocess.TimeoutExpired:
                        codes[name] = stop(procs[name])
            if "daemon" in procs:
                codes["daemon"] = stop(procs["daemon"])
            for f in files:
                f.close()
            cap.prune()  # the recording as the recorder left it
        report["exit_codes"] = codes
        for name, path in outputs.items():
            try:
                report[name] = json.loads(path.read_text())
            except (OSError, ValueError):
                report[name] = None
        report["recording"] = {"peak_mib": round(cap.peak_bytes / MIB, 1), "deleted_frames": cap.deleted_frames,
                               "index_truncations": cap.index_truncations, "frames_seen": cap.newest_frame + 1}
        if early is not None:
            tails = "\n".join(f"--- {name} log:\n{_tail(logs[name])}" for name in logs)
            fail(f"the pipeline stopped early ({early}); after {published[-1][0]:.0f} s\n{tails}", ExitCode.INCOMPLETE)
    verdicts = judge(series, warmup_s, tolerance)
    frames = [(t, f) for t, f in published if f is not None]
    report.update(
        load_avg_1m_end=os.getloadavg()[0],
        published_fps=round((frames[-1][1] - frames[0][1]) / (frames[-1][0] - frames[0][0]), 1)
        if len(frames) >= 2 and frames[-1][0] > frames[0][0] else None,
        samples={name: [asdict(u) for u in usages] for name, usages in series.items()},
        verdicts=[{**asdict(g), "ok": g.ok} for g in verdicts],
        passed=all(g.ok for g in verdicts),
    )
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        sub, rec = report["subscriber"] or {}, report["recorder"] or {}
        echo("")
        echo(f"pipeline: {report['published_fps']} frames/s published; the subscriber received {sub.get('frames')} "
             f"frames ({(sub.get('subscriber') or {}).get('lost_frames')} lost), the recorder {rec.get('frames')} "
             f"({rec.get('lost_frames')} lost); recording folder peak {report['recording']['peak_mib']} MiB "
             f"(cap {max_record_mb:g}; {cap.deleted_frames} old frame files deleted); load "
             f"{report['load_avg_1m_start']:.2f} -> {report['load_avg_1m_end']:.2f} on {os.cpu_count()} CPUs")
        for line in format_verdicts(verdicts, pids):
            echo(line)
    grown = [g for g in verdicts if not g.ok]
    if grown:
        fail("growth beyond tolerance after the warm-up: " + "; ".join(
            f"{g.process} {g.metric} {g.growth:+.1f} (limit {g.limit:g})" for g in grown), ExitCode.CHECK_FAILED)
    return report


@click.command("soak")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="How long the pipeline runs.")
@click.option("--source", type=click.Choice(spellings(SoakSource)), default=SoakSource.REPLAY.value, show_default=True,
              help="replay: a generated 250x400 recording at camera pace (40 kHz), looped; simulate: the live "
                   "simulator (2 kHz).")
@click.option("--rate-hz", type=click.FloatRange(min=0, min_open=True), help="Plane rate (default: the source's).")
@click.option("--hop", type=click.IntRange(min=1), default=DEFAULT_HOP_PLANES, show_default=True,
              help="Planes per frame (40 at 40 kHz = 1,000 frames/s).")
@click.option("--method", type=click.Choice(spellings(Method)), default=DEFAULT_METHOD.value, show_default=True)
@click.option("--interval-s", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="Seconds between samples.")
@click.option("--warmup-s", type=click.FloatRange(min=0), help="Samples before this are ignored (default: a fifth of "
              "the run, at most 60 s).")
@click.option("--rss-tolerance-mb", type=click.FloatRange(min=0), default=16.0, show_default=True,
              help="Largest resident-memory growth per process after the warm-up (MiB).")
@click.option("--fd-tolerance", type=click.IntRange(min=0), default=4, show_default=True,
              help="Largest growth in open file descriptors per process.")
@click.option("--thread-tolerance", type=click.IntRange(min=0), default=2, show_default=True,
              help="Largest growth in threads per process.")
@click.option("--max-record-mb", type=click.FloatRange(min=1), default=256.0, show_default=True,
              help="Disk cap of the recorder's folder (oldest frames deleted beyond it).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report (every sample) instead of the table.")
def bench_soak(minutes, source, rate_hz, hop, method, interval_s, warmup_s, rss_tolerance_mb, fd_tolerance,
               thread_tolerance, max_record_mb, as_json) -> None:
    """Run daemon + subscriber + recorder for --minutes; fail (exit 8) if memory, open files or threads grow.

    Samples RSS, open files and threads of every process from /proc; prints a line per sample, then a
    table per process of baseline, end and growth after the warm-up against the tolerances.
    """
    duration_s = minutes * 60
    warmup_s = min(60.0, duration_s / 5) if warmup_s is None else warmup_s
    if duration_s - warmup_s < interval_s:
        fail(f"--minutes {minutes:g} with a {warmup_s:g} s warm-up leaves {max(0.0, duration_s - warmup_s):g} s to "
             f"measure, less than two samples --interval-s {interval_s:g} apart; run longer or sample more often")
    run_soak(minutes=minutes, source=SoakSource(source), rate_hz=rate_hz, hop=hop, method=method,
             interval_s=interval_s, warmup_s=warmup_s,
             tolerance=Tolerance(rss_tolerance_mb, fd_tolerance, thread_tolerance), max_record_mb=max_record_mb,
             as_json=as_json)
