"""``spike-host record URL --out OUT``: a stream to ``.npz``, a folder or a video."""

from __future__ import annotations

import time
from pathlib import Path

import click

from firmware_io.exits import ExitCode, fail
from firmware_io.atomic import Terminated, sigterm_as_exception
from host.cli.common import subscriber_counters, dumps, open_subscriber
from host.record import RecordingError, open_recorder


@click.command()
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
    with open_subscriber(url, topics=("frame", "eos")) as sub, sigterm_as_exception():
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
        except (KeyboardInterrupt, Terminated):
            stop_reason = "interrupt"
        except (RecordingError, OSError) as exc:
            stop_reason, error = "error", str(exc)
        finally:
            if recorder is not None:
                recorder.close()
        counters = subscriber_counters(sub)
        summary = {
            "out": str(out),
            "frames": recorder.n_frames if recorder is not None else 0,
            "first_seq": first_seq,
            "last_seq": last_seq,
            **counters,
            "flagged_frames": sub.stats.discontinuities,  # frames that carried the discontinuity flag
            "discontinuities": sub.stats.discontinuities,  # deprecated alias of flagged_frames
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
            fail(f"interrupted before any frame arrived from {url}; nothing written", ExitCode.NO_STREAM)
        fail(f"nothing recorded: {what} from {url} within {timeout_s:g} s; is `spike-edge run` publishing there?",
             ExitCode.NO_STREAM)
    click.echo(dumps(summary))
    if error is not None:
        fail(f"recording stopped early: {error}; kept {summary['frames']} frames in {out}", ExitCode.INCOMPLETE)
    if stop_reason == "timeout":
        fail(f"stream at {url} went silent for {timeout_s:g} s before it ended; kept {summary['frames']} frames in {out}",
             ExitCode.INCOMPLETE)
