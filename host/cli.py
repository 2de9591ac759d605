"""``spike-host``: watch, record and measure a spike-edge frame stream; talk to the daemon's control socket.

Commands: ``stats`` (fps, per-stage latency percentiles, drops), ``record`` (.npz, folder, video),
``watch`` (a live line once a second), ``ctl`` (describe/health/stats/set). Every command has a
deadline; errors go to stderr with a non-zero exit.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np
import zmq

from edge.publisher import DEFAULT_PUB_URL as DEFAULT_STREAM_URL

from . import stats as stream_stats
from .control import COMMANDS, ControlError, ControlTimeout, build_request, parse_assignment, request
from .record import RecordingError, columns_from_rows, frame_row, open_recorder
from .subscriber import Subscriber


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, default=_json_default)


def _open_subscriber(url: str, **kwargs: Any) -> Subscriber:
    try:
        return Subscriber(url, **kwargs)
    except (ValueError, zmq.ZMQError) as exc:
        raise click.BadParameter(f"{exc} (expected e.g. {DEFAULT_STREAM_URL})", param_hint="URL") from exc


class _Terminated(Exception):
    """SIGTERM, turned into an exception so recordings are closed properly."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. click's CliRunner in a thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """spike-host: watch, record and measure a spike-edge stream."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)


# -- stats ------------------------------------------------------------------


def _daemon_counters(rows: list[dict[str, Any]], sub: Subscriber) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ring_overrun_planes": sub.stats.ring_overrun_planes,
        "worker_skipped_windows": sub.stats.worker_skipped_windows,
        "discontinuities": sub.stats.discontinuities,
    }
    if rows and all(r["stream_id"] == rows[0]["stream_id"] for r in rows):
        for name in ("ring_overrun_planes", "worker_skipped_windows"):
            out[f"{name}_during"] = int(rows[-1][name]) - int(rows[0][name])
    out["heartbeat_stats"] = sub.last_heartbeat.stats if sub.last_heartbeat is not None else None
    return out


def _subscriber_counters(sub: Subscriber) -> dict[str, Any]:
    s = sub.stats
    return {
        "gaps": s.gaps,
        "lost_frames": s.lost_frames,
        "skipped_latest": s.skipped_latest,
        "malformed": s.malformed,
        "reconnects": s.reconnects,
        "stream_restarts": s.stream_restarts,
    }


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
        f"{d['worker_skipped_windows']} windows, {d['discontinuities']} discontinuities"
    )
    click.echo(
        f"subscriber: gaps {sub['gaps']} ({sub['lost_frames']} frames lost), malformed {sub['malformed']}, "
        f"reconnects {sub['reconnects']}, stream restarts {sub['stream_restarts']}; "
        f"heartbeats {report['heartbeats']}; end of stream: {'yes' if report['eos'] else 'no'}"
    )


@main.command()
@click.argument("url")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="How long to measure (stops earlier at end-of-stream).")
@click.option("--warmup-s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Frames received this long after the first one are excluded from fps and latency.")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Fail if nothing at all (not even a heartbeat) arrives within this.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def stats(url: str, seconds: float, warmup_s: float, timeout_s: float, as_json: bool) -> None:
    """Measure fps, per-stage latency (p50/p90/p99/max), drops and gaps of the stream at URL."""
    rows: list[dict[str, Any]] = []
    eos = False
    start = time.monotonic()
    with _open_subscriber(url, topics=("frame", "eos")) as sub:
        try:
            while True:
                now = time.monotonic()
                if now - start >= seconds:
                    break
                if sub.last_message_t is None and now - start >= timeout_s:
                    break
                item = sub.next(min(seconds - (now - start), 0.25))
                if item is None:
                    continue
                if item.kind == "frame":
                    rows.append(frame_row(item))
                elif item.kind == "eos":
                    eos = True
                    break
        except KeyboardInterrupt:
            pass
        duration_s = time.monotonic() - start
        if sub.last_message_t is None:
            raise click.ClickException(
                f"nothing arrived from {url} within {min(timeout_s, seconds):g} s (no frames, no heartbeats); "
                f"is `spike-edge run` publishing there?"
            )
        report = {"url": url, "duration_s": duration_s}
        report.update(stream_stats.stream_report(columns_from_rows(rows), warmup_s))
        report["daemon"] = _daemon_counters(rows, sub)
        report["subscriber"] = _subscriber_counters(sub)
        report["heartbeats"] = sub.stats.heartbeats
        report["eos"] = eos
    if as_json:
        click.echo(_dumps(report))
    else:
        _print_stats_table(report)


# -- record -----------------------------------------------------------------


@main.command()
@click.argument("url")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=True, path_type=Path),
              help="OUT.npz (frames + header arrays), OUT.mp4 (video), or a folder (crash-safe .npy + frames.jsonl).")
@click.option("--frames", "n_frames", type=click.IntRange(min=1), help="Stop after this many frames.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), help="Stop this long after the first frame.")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Fail if no frame arrives within this; stop if the stream goes silent (no heartbeat) this long.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True,
              help="Frame rate of a video output.")
def record(url: str, out: Path, n_frames: int | None, seconds: float | None, timeout_s: float, fps: float) -> None:
    """Record frames from URL until end-of-stream (default), --frames N or --seconds S; print a JSON summary."""
    if n_frames is not None and seconds is not None:
        raise click.UsageError("give at most one of --frames and --seconds")
    recorder = None
    first_seq = last_seq = None
    eos = None
    stop_reason = None
    error: str | None = None
    start = time.monotonic()
    first_frame_t: float | None = None
    with _open_subscriber(url, topics=("frame", "eos")) as sub, _sigterm_raises():
        try:
            while stop_reason is None:
                now = time.monotonic()
                if first_frame_t is None and now - start >= timeout_s:
                    stop_reason = "timeout"
                    break
                if first_frame_t is not None and now - (sub.last_message_t or now) >= timeout_s:
                    stop_reason = "timeout"
                    break
                wait = 0.25
                if seconds is not None and first_frame_t is not None:
                    left = seconds - (now - first_frame_t)
                    if left <= 0:
                        stop_reason = "seconds"
                        break
                    wait = min(wait, left)
                item = sub.next(wait)
                if item is None:
                    continue
                if item.kind == "eos":
                    eos = item.eos
                    if recorder is not None:  # a stream that never started again keeps us waiting
                        stop_reason = "eos"
                    continue
                if recorder is None:
                    recorder = open_recorder(out, fps=fps)
                    first_frame_t = time.monotonic()
                    first_seq = item.header.seq
                recorder.append(item)
                last_seq = item.header.seq
                if n_frames is not None and recorder.n_frames >= n_frames:
                    stop_reason = "frames"
        except (KeyboardInterrupt, _Terminated):
            stop_reason = "interrupt"
        except (RecordingError, OSError) as exc:
            stop_reason, error = "error", str(exc)
        finally:
            if recorder is not None:
                recorder.close()
        counters = _subscriber_counters(sub)
        summary = {
            "out": str(out),
            "frames": recorder.n_frames if recorder is not None else 0,
            "first_seq": first_seq,
            "last_seq": last_seq,
            **counters,
            "discontinuities": sub.stats.discontinuities,
            "heartbeats": sub.stats.heartbeats,
            "eos": eos is not None,
            "eos_frames": eos.frames if eos is not None else None,
            "eos_reason": eos.reason if eos is not None else None,
            "stop_reason": stop_reason,
            "duration_s": round(time.monotonic() - start, 3),
        }
        heartbeats = sub.stats.heartbeats
    if recorder is None:
        what = f"{heartbeats} heartbeats but no frame" if heartbeats else "no frames and no heartbeats"
        if stop_reason == "interrupt":
            raise click.ClickException(f"interrupted before any frame arrived from {url}; nothing written")
        raise click.ClickException(
            f"nothing recorded: {what} from {url} within {timeout_s:g} s; is `spike-edge run` publishing there?"
        )
    click.echo(_dumps(summary))
    if error is not None:
        raise click.ClickException(f"recording stopped early: {error}; kept {summary['frames']} frames in {out}")
    if stop_reason == "timeout":
        raise click.ClickException(
            f"stream at {url} went silent for {timeout_s:g} s before it ended; kept {summary['frames']} frames in {out}"
        )


# -- watch ------------------------------------------------------------------


def _watch_line(url: str, rows: list[dict[str, Any]], window_s: float, sub: Subscriber, eos: str | None) -> str:
    if sub.last_message_t is None:
        return f"waiting for {url} ... (reconnects {sub.stats.reconnects})"
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
    parts.append(f"drops ring {s.ring_overrun_planes} skip {s.worker_skipped_windows} disc {s.discontinuities}")
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


@main.command()
@click.argument("url")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this long (default: until Ctrl-C).")
@click.option("--interval-s", type=click.FloatRange(min=0.1), default=1.0, show_default=True, help="Refresh period.")
def watch(url: str, seconds: float | None, interval_s: float) -> None:
    """A live line of fps, latency, drops and gaps of the stream at URL, refreshed once a second."""
    tty = sys.stdout.isatty()
    start = time.monotonic()
    eos: str | None = None
    with _open_subscriber(url, topics=("frame", "eos")) as sub:
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


# -- ctl --------------------------------------------------------------------


@main.command()
@click.argument("url")
@click.argument("cmd", type=click.Choice(COMMANDS))
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="Give up when no reply arrives within this.")
def ctl(url: str, cmd: str, assignments: tuple[str, ...], timeout_s: float) -> None:
    """Send describe/health/stats/set to the daemon's control socket at URL (e.g. tcp://127.0.0.1:5556)."""
    try:
        params = dict(parse_assignment(a) for a in assignments)
        message = build_request(cmd, params)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        reply = request(url, message, timeout_s=timeout_s)
    except ControlTimeout as exc:
        raise click.ClickException(str(exc)) from exc
    except (ControlError, zmq.ZMQError) as exc:
        raise click.ClickException(f"{url}: {exc}") from exc
    click.echo(_dumps(reply))
    if reply.get("ok") is not True:
        raise click.ClickException(f"{cmd} failed: {reply.get('error', reply)}")


if __name__ == "__main__":
    main()
