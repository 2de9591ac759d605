"""Helpers shared by the ``spike-host`` commands: JSON output, opening a subscriber (SIGTERM handling is
``firmware_io.atomic.sigterm_as_exception``, shared with ``spike-edge``)."""

from __future__ import annotations

import json
from typing import Any

import click
import numpy as np
import zmq

from edge.protocol.endpoints import DEFAULT_PUB_URL as DEFAULT_STREAM_URL
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
