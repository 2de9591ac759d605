"""``spike-host stats URL``: frames/s, per-stage latency percentiles and drops of a stream.

Memory stays fixed however long it measures (``host.stats.StreamAccumulator``: exact counts, rates and
extremes, latency percentiles from a fixed-size sample); SIGINT/SIGTERM end the measurement and the
report is still printed.
"""

from __future__ import annotations

import time
from typing import Any

import click

from firmware_io.exits import ExitCode, fail
from host import stats as stream_stats
from host.cli.common import (catch_stop_signals, curve_options, dumps, max_message_bytes, max_message_option,
                             no_stream_hint, open_subscriber, subscriber_counters)
from edge.protocol.security import CurveClient
from host.subscriber import Subscriber

_DAEMON_CUMULATIVE = ("ring_overrun_planes", "worker_skipped_windows")


class _DaemonDrops:
    """The daemon's cumulative drop counters at the first and the newest frame (and whether one stream ran)."""

    def __init__(self) -> None:
        self.stream_id: str | None = None
        self.one_stream = True
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def add(self, header) -> None:
        values = {name: getattr(header, name) for name in _DAEMON_CUMULATIVE}
        if self.stream_id is None:
            self.stream_id, self.first = header.stream_id, values
        elif header.stream_id != self.stream_id:
            self.one_stream = False
        self.last = values


def _daemon_counters(drops: _DaemonDrops, sub: Subscriber) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ring_overrun_planes": sub.stats.ring_overrun_planes,
        "worker_skipped_windows": sub.stats.worker_skipped_windows,
        "flagged_frames": sub.stats.discontinuities,  # frames that carried the discontinuity flag
        "discontinuities": sub.stats.discontinuities,  # deprecated alias of flagged_frames
    }
    if drops.stream_id is not None and drops.one_stream:
        for name in _DAEMON_CUMULATIVE:
            out[f"{name}_during"] = drops.last[name] - drops.first[name]
    out["heartbeat_stats"] = sub.last_heartbeat.stats if sub.last_heartbeat is not None else None
    return out


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:8.2f}"


def _print_stats_table(report: dict[str, Any]) -> None:
    fps = report["fps"]
    click.echo(
        f"{report['url']}: {report['frames']} frames in {report['duration_s']:.1f} s "
        f"({report['frames_measured']} after {report['warmup_s']:g} s warm-up), "
        f"{'-' if fps is None else f'{fps:.1f}'} fps"
    )
    click.echo(f"{'stage (ms)':<24}{'n':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
    for name, s in report["latency_ms"].items():
        click.echo(
            f"{name:<24}{s['n']:>7}{_fmt_ms(s['p50_ms']):>9}{_fmt_ms(s['p90_ms']):>9}"
            f"{_fmt_ms(s['p99_ms']):>9}{_fmt_ms(s['max_ms']):>9}"
        )
    d, sub = report["daemon"], report["subscriber"]
    click.echo(
        f"daemon drops: ring overrun {d['ring_overrun_planes']} planes, worker skipped "
        f"{d['worker_skipped_windows']} windows, {d['flagged_frames']} flagged frames"
    )
    click.echo(
        f"subscriber: gaps {sub['gaps']} ({sub['lost_frames']} frames lost), malformed {sub['malformed']}, "
        f"reconnects {sub['reconnects']}, stream restarts {sub['stream_restarts']}; "
        f"heartbeats {report['heartbeats']}; end of stream: {'yes' if report['eos'] else 'no'}"
    )


@click.command()
@click.argument("url")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="How long to measure (stops earlier at end-of-stream).")
@click.option("--warmup-s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Frames received this long after the first one are excluded from fps and latency.")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Fail if nothing at all (not even a heartbeat) arrives within this.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@max_message_option
@curve_options
def stats(url: str, seconds: float, warmup_s: float, timeout_s: float, as_json: bool,
          max_message_mb: float | None, curve: CurveClient | None) -> None:
    """Measure fps, per-stage latency (p50/p90/p99/max), drops and gaps of the stream at URL.

    SIGINT/SIGTERM end the measurement early; the report is printed all the same.
    """
    stop = catch_stop_signals()
    _stats(url, seconds, warmup_s, timeout_s, as_json, max_message_bytes(max_message_mb), stop, curve)


def _stats(url, seconds, warmup_s, timeout_s, as_json, max_bytes, stop, curve) -> None:
    acc = stream_stats.StreamAccumulator(warmup_s)
    drops = _DaemonDrops()
    eos = False
    start = time.monotonic()
    with open_subscriber(url, topics=("frame", "eos"), max_message_bytes=max_bytes, curve=curve) as sub:
        try:
            while not stop.requested:
                now = time.monotonic()
                if now - start >= seconds:
                    break
                if sub.last_message_t is None and now - start >= timeout_s:
                    break
                item = sub.next(min(seconds - (now - start), 0.1))
                if item is None:
                    continue
                if item.kind == "frame":
                    acc.add({**item.header.to_dict(), "recv_t_ns": item.recv_t_ns})
                    drops.add(item.header)
                elif item.kind == "eos":
                    eos = True
                    break
        except KeyboardInterrupt:
            pass
        sub.close()  # nothing more is read: do not let its queue fill while the report is made
        duration_s = time.monotonic() - start
        if sub.last_message_t is None:
            fail(f"nothing arrived from {url} within {min(timeout_s, seconds):g} s (no frames, no heartbeats); "
                 f"{no_stream_hint(sub)}", ExitCode.NO_STREAM)
        report = {"url": url, "duration_s": duration_s}
        report.update(acc.report())
        report["daemon"] = _daemon_counters(drops, sub)
        report["subscriber"] = subscriber_counters(sub)
        report["heartbeats"] = sub.stats.heartbeats
        report["eos"] = eos
    if as_json:
        click.echo(dumps(report))
    else:
        _print_stats_table(report)
