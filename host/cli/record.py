"""``spike-host record URL --out OUT``: a stream to ``.npz``, a folder or a video.

SIGINT and SIGTERM, one or many, in any order, stop the recording at the next frame boundary and let
the recorder finish: an ``.npz`` is always written complete (its final write is never cut by a
second signal), a folder is readable at any moment, a video is closed properly.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from firmware_io.exits import ExitCode, fail
from firmware_io.frame_files import AUTO_SCALE, SCALE_HELP, VIDEO_SUFFIXES, parse_display_scale
from host.cli.common import (catch_stop_signals, curve_options, dumps, max_message_bytes, max_message_option,
                             no_stream_hint, open_subscriber, subscriber_counters)
from edge.protocol.security import CurveClient
from host.record import RecordingError, open_recorder

_MAX_WAIT_S = 0.1  # longest wait for a message: how soon a stop signal is acted on


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
@max_message_option
@curve_options
@click.option("--scale", default=AUTO_SCALE, show_default=True, metavar="auto|S", help=SCALE_HELP)
def record(url: str, out: Path, n_frames: int | None, seconds: float | None, timeout_s: float, fps: float,
           max_message_mb: float | None, scale: str, curve: CurveClient | None) -> None:
    """Record frames from URL until end-of-stream (default), --frames N or --seconds S; print a JSON summary.

    SIGINT/SIGTERM (any number, any order) stop it cleanly: the recording is completed and readable.
    """
    if n_frames is not None and seconds is not None:
        raise click.UsageError("give at most one of --frames and --seconds")
    try:
        display_scale = parse_display_scale(scale)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scale") from None
    if display_scale is not None and out.suffix.lower() not in VIDEO_SUFFIXES:
        raise click.BadParameter(f"a display scale applies to video output ({'/'.join(VIDEO_SUFFIXES)}); {out} keeps "
                                 "the raw values", param_hint="--scale")
    stop = catch_stop_signals()
    _record(url, out, n_frames, seconds, timeout_s, fps, max_message_bytes(max_message_mb), stop, display_scale, curve)


def _record(url, out, n_frames, seconds, timeout_s, fps, max_bytes, stop, display_scale, curve) -> None:
    recorder = None
    first_seq = last_seq = None
    eos = None
    stop_reason = None
    error: str | None = None
    start = time.monotonic()
    first_frame_t: float | None = None
    with open_subscriber(url, topics=("frame", "eos"), max_message_bytes=max_bytes, curve=curve) as sub:
        try:
            while stop_reason is None:
                if stop.requested:
                    stop_reason = "interrupt"
                    break
                now = time.monotonic()
                if first_frame_t is None and now - start >= timeout_s:
                    stop_reason = "timeout"
                    break
                if first_frame_t is not None and now - (sub.last_message_t or now) >= timeout_s:
                    stop_reason = "timeout"
                    break
                wait = _MAX_WAIT_S
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
                    recorder = open_recorder(out, fps=fps, scale=display_scale)
                    first_frame_t = time.monotonic()
                    first_seq = item.header.seq
                recorder.append(item)
                last_seq = item.header.seq
                if n_frames is not None and recorder.n_frames >= n_frames:
                    stop_reason = "frames"
        except KeyboardInterrupt:  # only where stop_signals could not install its handler
            stop_reason = "interrupt"
        except (RecordingError, OSError) as exc:
            stop_reason, error = "error", str(exc)
        finally:
            sub.close()  # nothing more is read: do not let its queue fill during the final write
            if recorder is not None:
                try:
                    recorder.close()
                except (RecordingError, OSError) as exc:
                    stop_reason, error = "error", f"the final write of {out} failed: {exc}"
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
            "signals": stop.count,
            "duration_s": round(time.monotonic() - start, 3),
        }
        heartbeats = sub.stats.heartbeats
        hint = no_stream_hint(sub)
    if recorder is None:
        what = f"{heartbeats} heartbeats but no frame" if heartbeats else "no frames and no heartbeats"
        if stop_reason == "interrupt":
            fail(f"interrupted before any frame arrived from {url}; nothing written", ExitCode.NO_STREAM)
        fail(f"nothing recorded: {what} from {url} within {timeout_s:g} s; {hint}", ExitCode.NO_STREAM)
    click.echo(dumps(summary))
    if error is not None:
        fail(f"recording stopped early: {error}; kept {summary['frames']} frames in {out}", ExitCode.INCOMPLETE)
    if stop_reason == "timeout":
        fail(f"stream at {url} went silent for {timeout_s:g} s before it ended; kept {summary['frames']} frames in {out}",
             ExitCode.INCOMPLETE)
