"""Helpers shared by the ``spike-host`` commands: JSON output, opening a subscriber with its message limit,
the CURVE options (``--curve-key``/``--curve-server``, or ``SPIKE_EDGE_CURVE_KEY``/``SPIKE_EDGE_CURVE_SERVER``),
and SIGINT/SIGTERM as a stop request (``catch_stop_signals``) so that no signal, in any order, can cut a
recording's final write or a report short."""

from __future__ import annotations

import functools
import json
import signal
from typing import Any

import click
import numpy as np
import zmq

from edge.protocol.endpoints import DEFAULT_PUB_URL as DEFAULT_STREAM_URL
from edge.protocol.security import CURVE_KEY_ENV, CURVE_SERVER_ENV, CurveClient
from host.subscriber import DEFAULT_MAX_MESSAGE_BYTES, HEADER_ALLOWANCE_BYTES, Subscriber

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """What ``stop_signals`` noted: the first signal's name and how many arrived."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.count = 0

    @property
    def requested(self) -> bool:
        return self.count > 0

    def _note(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.first is None:
            self.first = signal.Signals(signum).name


def catch_stop_signals() -> StopRequest:
    """From now on, for the rest of the process, SIGINT and SIGTERM only set a flag (``StopRequest.requested``):
    the command stops at its next check and finishes its output; more signals meanwhile, or while it
    exits, change nothing. Outside the main thread (click's test runner) Python cannot install
    handlers and the flag is never set."""
    stop = StopRequest()
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, stop._note)
    except ValueError:  # not the main thread
        pass
    return stop


def max_message_option(command):
    """``--max-message-mb``: a fixed limit on a message part instead of the one derived from the stream."""
    return click.option(
        "--max-message-mb", type=click.FloatRange(min=0.01), default=None,
        help=f"Refuse any message part larger than this many MiB (default: {DEFAULT_MAX_MESSAGE_BYTES >> 20} "
             f"until the stream's first frame declares its geometry, then one frame plus "
             f"{HEADER_ALLOWANCE_BYTES >> 10} KiB). A refused message shows as a gap.",
    )(command)


def max_message_bytes(max_message_mb: float | None) -> int | None:
    return None if max_message_mb is None else int(max_message_mb * 2**20)


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, default=json_default)


def open_subscriber(url: str, **kwargs: Any) -> Subscriber:
    try:
        return Subscriber(url, **kwargs)
    except (ValueError, zmq.ZMQError) as exc:
        raise click.BadParameter(f"{exc} (expected e.g. {DEFAULT_STREAM_URL})", param_hint="URL") from exc


def curve_options(f):
    """``--curve-key FILE --curve-server FILE`` (or their environment variables): the command gets ``curve``,
    a ``CurveClient`` or None. Place it right above the function."""

    @functools.wraps(f)
    def command(*args: Any, curve_key: str | None, curve_server: str | None, **kwargs: Any) -> Any:
        try:
            curve = CurveClient.from_files(curve_key, curve_server)
        except ValueError as exc:  # KeyFileError included: quotes the file
            raise click.UsageError(str(exc)) from None
        return f(*args, curve=curve, **kwargs)

    path = click.Path(dir_okay=False)
    command = click.option("--curve-server", type=path, envvar=CURVE_SERVER_ENV, show_envvar=True,
                           help="CURVE: the daemon's public certificate (server.key).")(command)
    return click.option("--curve-key", type=path, envvar=CURVE_KEY_ENV, show_envvar=True,
                        help="CURVE: this client's secret certificate (NAME.key_secret).")(command)


def no_stream_hint(sub: Subscriber) -> str:
    """Why nothing arrived, for an error message: a refused handshake, or the usual question."""
    return sub.handshake_error or "is `spike-edge run` publishing there?"


def subscriber_counters(sub: Subscriber) -> dict[str, Any]:
    s = sub.stats
    return {
        "gaps": s.gaps,
        "lost_frames": s.lost_frames,
        "skipped_latest": s.skipped_latest,
        "malformed": s.malformed,
        "disconnects": s.disconnects,
        "reconnects": s.reconnects,
        "stream_restarts": s.stream_restarts,
    }
