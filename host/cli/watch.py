"""``spike-host watch URL``: one live line a second about a stream."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from host import stats as stream_stats
from edge.protocol.security import CurveClient
from host.cli.common import curve_options, max_message_bytes, max_message_option, open_subscriber
from host.record import columns_from_rows, frame_row
from host.subscriber import Subscriber


def _watch_line(url: str, rows: list[dict[str, Any]], window_s: float, sub: Subscriber, eos: str | None) -> str:
    if sub.last_message_t is None:
        refused = f"; {sub.handshake_error}" if sub.handshake_error else ""
        return f"waiting for {url} ... (reconnects {sub.stats.reconnects}){refused}"
    silent_s = time.monotonic() - sub.last_message_t
    parts = [f"fps {len(rows) / window_s:6.1f}" if window_s > 0 else "fps -"]
    if rows:
        lat = stream_stats.stage_latencies_ns(columns_from_rows(rows))
        c2r = stream_stats.summarize_ns(lat["capture_to_receive"])
        inf = stream_stats.summarize_ns(lat["inference"])
        parts.append(f"capture->recv p50 {c2r.p50_ms:.1f} p99 {c2r.p99_ms:.1f} ms")
        parts.append(f"infer p50 {inf.p50_ms:.1f} ms")
        parts.append(f"seq {rows[-1]['seq']}")
    s = sub.stats
    parts.append(f"drops ring {s.ring_overrun_planes} skip {s.worker_skipped_windows} flagged {s.discontinuities}")
    parts.append(f"gaps {s.gaps} (lost {s.lost_frames})")
    parts.append(f"hb {s.heartbeats}")
    if s.malformed:
        parts.append(f"malformed {s.malformed}")
    if s.reconnects:
        parts.append(f"reconnects {s.reconnects}")
    if silent_s > 1.5:
        parts.append(f"SILENT {silent_s:.0f} s")
    if eos:
        parts.append(f"ended ({eos})")
    return " | ".join(parts)


@click.command()
@click.argument("url")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this long (default: until Ctrl-C).")
@click.option("--interval-s", type=click.FloatRange(min=0.1), default=1.0, show_default=True, help="Refresh period.")
@max_message_option
@curve_options
def watch(url: str, seconds: float | None, interval_s: float, max_message_mb: float | None,
          curve: CurveClient | None) -> None:
    """A live line of fps, latency, drops and gaps of the stream at URL, refreshed once a second."""
    tty = sys.stdout.isatty()
    start = time.monotonic()
    eos: str | None = None
    with open_subscriber(url, topics=("frame", "eos"), max_message_bytes=max_message_bytes(max_message_mb),
                         curve=curve) as sub:
        try:
            window_start = time.monotonic()
            rows: list[dict[str, Any]] = []
            while seconds is None or time.monotonic() - start < seconds:
                now = time.monotonic()
                if now - window_start >= interval_s:
                    line = _watch_line(url, rows, now - window_start, sub, eos)
                    click.echo(("\r\x1b[2K" + line) if tty else line, nl=not tty)
                    rows, window_start = [], now
                item = sub.next(max(0.0, min(interval_s - (now - window_start), 0.25)))
                if item is None:
                    continue
                if item.kind == "frame":
                    rows.append(frame_row(item))
                    eos = None
                elif item.kind == "eos":
                    eos = item.eos.reason
        except KeyboardInterrupt:
            pass
    if tty:
        click.echo("")
