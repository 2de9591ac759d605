"""The wire contract of the frame stream: the one definition both the daemon and the host clients use.

Every message on the PUB socket is a ZeroMQ multipart message ``[topic, header, payload]``:

- ``topic``: ``b"frame"``, ``b"heartbeat"`` or ``b"eos"`` (subscribe to a prefix to filter).
- ``header``: a msgpack map whose first key is ``v`` (the wire version, ``WIRE_VERSION``).
- ``payload``: for frames, the image as raw C-order bytes of ``dtype``/``shape`` from the header;
  empty for heartbeats and end-of-stream.

Times are ``time.monotonic_ns()`` values (CLOCK_MONOTONIC: one clock for every process of the host),
so a subscriber on the same host can subtract them from its own clock. ``docs/wire-format.md``
describes the fields for people; this module is what the code follows. Never pickle on the wire.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

WIRE_VERSION = 1

TOPIC_FRAME = b"frame"
TOPIC_HEARTBEAT = b"heartbeat"
TOPIC_EOS = b"eos"
TOPICS = (TOPIC_FRAME, TOPIC_HEARTBEAT, TOPIC_EOS)


class PayloadDtype(str, enum.Enum):
    """The element types a frame payload can have (the header's ``dtype``)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    UINT8 = "uint8"


PAYLOAD_DTYPES = tuple(d.value for d in PayloadDtype)


class WireError(ValueError):
    """A message that does not follow the wire contract (wrong part count, version, fields or sizes)."""


def _shallow_dict(message) -> dict[str, Any]:
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}


@dataclass(frozen=True)
class FrameHeader:
    """Header of one reconstructed frame.

    ``seq`` counts published frames of a stream from 0 without gaps; a missing ``seq`` at the
    subscriber means the subscriber lost messages. ``discontinuity`` means the *daemon* did not
    produce the frames between the previous one and this one (ring overrun or worker skip);
    the cumulative counters say how many planes/windows were lost so far.
    """

    stream_id: str
    seq: int
    key_plane: int
    plane_start: int  # window [plane_start, plane_stop), half-open
    plane_stop: int
    shape: tuple[int, int]
    dtype: str
    method: str
    backend: str
    weights_id: str
    capture_t_ns: int  # the newest plane of the window was captured
    dequeue_t_ns: int  # the worker took the window from the ring
    infer_start_t_ns: int
    infer_end_t_ns: int
    publish_t_ns: int
    rate_hz: float
    ring_overrun_planes: int = 0  # cumulative planes overwritten before the worker read them
    worker_skipped_windows: int = 0  # cumulative windows skipped by the 'latest' policy
    discontinuity: bool = False
    v: int = WIRE_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = _shallow_dict(self)  # per frame: dataclasses.asdict deep-copies and costs ~0.2 ms
        d["shape"] = list(self.shape)
        return {"v": d.pop("v"), "kind": "frame", **d}


@dataclass(frozen=True)
class Heartbeat:
    """Sent at least once a second: proves the daemon is alive and carries live statistics.

    ``capture_stalled``: the daemon is alive but its capture process has made no progress for a while
    (health ``degraded``); frames stop until it recovers or the daemon gives up on it (exit 3).
    """

    stream_id: str
    t_ns: int
    last_seq: int  # -1 before the first frame
    stats: dict[str, Any] = field(default_factory=dict)
    capture_stalled: bool = False
    v: int = WIRE_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = _shallow_dict(self)
        return {"v": d.pop("v"), "kind": "heartbeat", **d}


@dataclass(frozen=True)
class EndOfStream:
    """Sent (a few times, for late joiners' sake) when a finite source ends or the daemon stops."""

    stream_id: str
    t_ns: int
    last_seq: int
    frames: int
    reason: str
    v: int = WIRE_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = _shallow_dict(self)
        return {"v": d.pop("v"), "kind": "eos", **d}


Message = tuple[FrameHeader, np.ndarray] | Heartbeat | EndOfStream


def encode_frame(header: FrameHeader, image: np.ndarray) -> list:
    image = np.ascontiguousarray(image)
    if tuple(image.shape) != tuple(header.shape) or str(image.dtype) != header.dtype:
        raise ValueError(f"image {image.dtype} {image.shape} does not match header {header.dtype} {header.shape}")
    return [TOPIC_FRAME, msgpack.packb(header.to_dict()), memoryview(image).cast("B")]


def encode_heartbeat(heartbeat: Heartbeat) -> list[bytes]:
    return [TOPIC_HEARTBEAT, msgpack.packb(heartbeat.to_dict()), b""]


def encode_eos(eos: EndOfStream) -> list[bytes]:
    return [TOPIC_EOS, msgpack.packb(eos.to_dict()), b""]


_SCALAR_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "str": (str,), "float": (int, float), "bool": (bool,)}


def int_fields(cls) -> tuple[str, ...]:
    """Names of a message's integer fields (``seq``, plane indices, ``*_t_ns`` times, counters)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.type == "int" and f.name != "v")


def _build(cls, header: dict[str, Any]):
    """Construct ``cls`` from a decoded header, checking presence and the type of every scalar field."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = sorted(name for name, f in fields.items() if name not in header
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise WireError(f"{cls.__name__} header lacks {missing}")
    values = {k: v for k, v in header.items() if k in fields}
    for name, value in values.items():
        allowed = _SCALAR_TYPES.get(fields[name].type) or ((dict,) if fields[name].type.startswith("dict") else None)
        if allowed and (not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))):
            raise WireError(f"{cls.__name__} field {name} must be {fields[name].type}, got {value!r}")
    _check_ranges(cls.__name__, values)
    return cls(**values)


# Decode-side limits: what a sane daemon can send. Every integer must fit the int64 columns of the host
# tools; the fields below also have a lower bound (indices, times and counters are never negative).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT_LOWER_BOUNDS = {
    "seq": 0, "key_plane": 0, "plane_start": 0, "plane_stop": 0, "capture_t_ns": 0, "dequeue_t_ns": 0,
    "infer_start_t_ns": 0, "infer_end_t_ns": 0, "publish_t_ns": 0, "ring_overrun_planes": 0,
    "worker_skipped_windows": 0, "t_ns": 0, "last_seq": -1, "frames": 0,
}
MAX_TEXT_CHARS = 1024  # stream_id, method, backend, weights_id, reason
MAX_FRAME_SIDE = 32_768  # pixels, either side of a frame
MAX_FRAME_PIXELS = 2**26  # 64 Mpx: 256 MiB of float32, far beyond any spike camera


def _check_ranges(what: str, values: dict[str, Any]) -> None:
    """Reject integers outside int64 (or below their field's bound), non-finite or non-positive rates,
    over-long strings and windows that do not contain their key."""
    for name, value in values.items():
        if isinstance(value, int) and not isinstance(value, bool):
            low = INT_LOWER_BOUNDS.get(name, INT64_MIN)
            if value < low:
                raise WireError(f"{what} field {name} must be >= {low}, got {value}")
            if value > INT64_MAX:
                raise WireError(f"{what} field {name} must be <= {INT64_MAX} (int64), got {value}")
        elif isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            raise WireError(f"{what} field {name} is {len(value)} characters long; at most {MAX_TEXT_CHARS}")
    rate = values.get("rate_hz")
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise WireError(f"{what} field rate_hz must be a finite rate > 0, got {rate!r}")
    if {"key_plane", "plane_start", "plane_stop"} <= values.keys():
        start, key, stop = values["plane_start"], values["key_plane"], values["plane_stop"]
        if not start <= key < stop:
            raise WireError(f"{what} window [plane_start, plane_stop) = [{start}, {stop}) must contain "
                            f"key_plane {key}")


def _check_keys(value: Any, what: str) -> None:
    """Every map key, at any depth, must be a msgpack str (so JSON output and sorting never fail)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise WireError(f"{what} keys must be msgpack str (UTF-8 strings), got {key!r:.64}")
                stack.append(inner)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


_MSGPACK_REASONS = {"FormatError": "a reserved or malformed type byte", "StackError": "nested too deeply"}


def unpack_map(raw: bytes, what: str) -> dict[str, Any]:
    """Decode ``raw`` as one msgpack map (string keys); ``WireError`` naming ``what`` otherwise."""
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage, some with no text
        reason = str(exc) or _MSGPACK_REASONS.get(type(exc).__name__, type(exc).__name__)
        shown = f": {raw[:8].hex(' ')}{' ...' if len(raw) > 8 else ''}" if raw else ""
        raise WireError(f"{what} is not valid msgpack: {reason} ({len(raw)} bytes{shown})") from exc
    if not isinstance(value, dict):
        raise WireError(f"{what} must be a map, got {type(value).__name__}")
    _check_keys(value, what)
    return value


def decode(parts: list[bytes]) -> Message:
    """Decode one multipart message; raise ``WireError`` with the reason for anything malformed."""
    if len(parts) != 3:
        raise WireError(f"expected 3 message parts [topic, header, payload], got {len(parts)}")
    topic, raw_header, payload = bytes(parts[0]), bytes(parts[1]), parts[2]
    if topic not in TOPICS:
        raise WireError(f"unknown topic {topic[:32]!r}; expected one of {TOPICS}")
    header = unpack_map(raw_header, "header")
    if header.get("v") != WIRE_VERSION:
        raise WireError(f"unsupported wire version {header.get('v')!r}; this client speaks {WIRE_VERSION}")
    if topic == TOPIC_HEARTBEAT:
        return _build(Heartbeat, header)
    if topic == TOPIC_EOS:
        return _build(EndOfStream, header)
    header = dict(header)
    shape = header.get("shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise WireError(f"frame shape must be two positive integers, got {shape!r:.80}")
    if max(shape) > MAX_FRAME_SIDE or shape[0] * shape[1] > MAX_FRAME_PIXELS:
        raise WireError(f"frame shape {shape} is beyond the limits ({MAX_FRAME_SIDE} per side, "
                        f"{MAX_FRAME_PIXELS} pixels)")
    header["shape"] = tuple(shape)
    if header.get("dtype") not in PAYLOAD_DTYPES:
        raise WireError(f"frame dtype must be one of {PAYLOAD_DTYPES}, got {header.get('dtype')!r}")
    frame = _build(FrameHeader, header)
    dtype = np.dtype(frame.dtype)
    expected = frame.shape[0] * frame.shape[1] * dtype.itemsize
    buf = memoryview(payload)
    if buf.nbytes != expected:
        raise WireError(f"payload is {buf.nbytes} bytes, {frame.dtype} {frame.shape} needs {expected}")
    image = np.frombuffer(buf, dtype=dtype).reshape(frame.shape)
    return frame, image
