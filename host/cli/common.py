"""Helpers shared by the ``spike-host`` commands: JSON output, opening a subscriber, the CURVE options
(``--curve-key``/``--curve-server``, or ``SPIKE_EDGE_CURVE_KEY``/``SPIKE_EDGE_CURVE_SERVER``; SIGTERM
handling is ``firmware_io.atomic.sigterm_as_exception``, shared with ``spike-edge``)."""

from __future__ import annotations

import functools
import json
from typing import Any

import click
import numpy as np
import zmq

from edge.protocol.endpoints import DEFAULT_PUB_URL as DEFAULT_STREAM_URL
from edge.protocol.security import CURVE_KEY_ENV, CURVE_SERVER_ENV, CurveClient
from host.subscriber import Subscriber


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
        "reconnects": s.reconnects,
        "stream_restarts": s.stream_restarts,
    }
