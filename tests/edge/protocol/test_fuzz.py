"""Property-based fuzzing of the two decoders that face the network: ``edge.protocol.wire.decode`` raises
nothing but ``WireError`` and ``edge.protocol.control.parse_request`` nothing but ``ControlRequestError``,
whatever the bytes; what they accept is within the documented limits."""

from __future__ import annotations

import math

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.protocol.control import COMMANDS, MAX_REQUEST_BYTES, ControlRequestError, parse_request
from edge.protocol.wire import (INT64_MAX, INT_LOWER_BOUNDS, MAX_FRAME_PIXELS, PAYLOAD_DTYPES, TOPICS, EndOfStream,
                                FrameHeader, Heartbeat, WireError, decode, encode_eos, encode_frame, encode_heartbeat,
                                int_fields)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# msgpack values of every kind: the integers at and beyond the int64/uint64 edges, floats with nan/inf,
# str, bin, nested maps (str and bin keys) and lists
_EDGE_INTS = st.sampled_from([0, 1, -1, 2**31, 2**32 - 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)])
scalars = st.one_of(
    st.none(), st.booleans(), _EDGE_INTS, st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.binary(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.text(max_size=8), st.binary(max_size=8)), inner, max_size=4)),
    max_leaves=12,
)


def _valid_messages() -> list[list[bytes]]:
    header = FrameHeader(stream_id="s", seq=3, key_plane=100, plane_start=80, plane_stop=121, shape=(2, 3),
                         dtype="float32", method="tfp", backend="numpy", weights_id="none", capture_t_ns=1,
                         dequeue_t_ns=2, infer_start_t_ns=3, infer_end_t_ns=4, publish_t_ns=5, rate_hz=40000.0)
    frame = [bytes(p) for p in encode_frame(header, np.arange(6, dtype=np.float32).reshape(2, 3))]
    return [frame, encode_heartbeat(Heartbeat("s", 7, -1, {"fps": 1.0})), encode_eos(EndOfStream("s", 8, 3, 4, "end"))]


VALID = _valid_messages()


def check_decode(parts: list[bytes]) -> None:
    """``decode`` either raises WireError or returns a message inside the contract's limits."""
    try:
        msg = decode(parts)
    except WireError:
        return
    if isinstance(msg, tuple):
        header, image = msg
        assert header.dtype in PAYLOAD_DTYPES and image.shape == header.shape
        assert header.shape[0] * header.shape[1] <= MAX_FRAME_PIXELS
        assert header.plane_start <= header.key_plane < header.plane_stop
        assert math.isfinite(header.rate_hz) and header.rate_hz > 0
    else:
        header = msg
        assert isinstance(msg, (Heartbeat, EndOfStream))
    for name in int_fields(type(header)):
        value = getattr(header, name)
        assert INT_LOWER_BOUNDS.get(name, -(2**63)) <= value <= INT64_MAX, (name, value)


@FUZZ
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=5))
def test_decode_random_parts(parts):
    check_decode(parts)


@FUZZ
@given(st.sampled_from(TOPICS + (b"", b"frames", b"\xff")), values, st.binary(max_size=64))
def test_decode_random_msgpack_values(topic, header, payload):
    check_decode([topic, msgpack.packb(header, use_bin_type=True), payload])


@FUZZ
@given(st.sampled_from(range(len(VALID))), st.dictionaries(st.sampled_from(
    sorted({f for cls in (FrameHeader, Heartbeat, EndOfStream) for f in cls.__dataclass_fields__} | {"kind", "x"})),
    values, min_size=1, max_size=4), st.data())
def test_decode_mutated_valid_headers(which, changes, data):
    topic, raw_header, payload = VALID[which]
    header = {**msgpack.unpackb(raw_header), **changes}
    if data.draw(st.booleans()):
        payload = data.draw(st.binary(max_size=48))
    check_decode([topic, msgpack.packb(header, use_bin_type=True), payload])


@FUZZ
@given(st.sampled_from(range(len(VALID))), st.data())
def test_decode_valid_headers_with_one_field_replaced(which, data):
    topic, raw_header, payload = VALID[which]
    header = msgpack.unpackb(raw_header)
    name = data.draw(st.sampled_from(sorted(header)))
    header[name] = data.draw(st.one_of(_EDGE_INTS, values))
    check_decode([topic, msgpack.packb(header, use_bin_type=True), payload])


@FUZZ
@given(st.sampled_from(range(len(VALID))), st.data())
def test_decode_bit_flipped_messages(which, data):
    parts = [bytearray(p) for p in VALID[which]]
    for _ in range(data.draw(st.integers(1, 6))):
        part = data.draw(st.sampled_from([i for i, p in enumerate(parts) if p] or [0]))
        if not parts[part]:
            continue
        at = data.draw(st.integers(0, len(parts[part]) - 1))
        parts[part][at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(parts[1])))
        parts[1] = parts[1][:cut]
    check_decode([bytes(p) for p in parts])


def check_request(parts: list[bytes]) -> None:
    try:
        cmd, params = parse_request(parts)
    except ControlRequestError:
        return
    assert cmd in COMMANDS and isinstance(params, dict)
    assert all(isinstance(k, str) for k in params)
    assert cmd == "set" or not params


@FUZZ
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=3))
def test_parse_request_random_bytes(parts):
    check_request(parts)


@FUZZ
@given(values)
def test_parse_request_random_msgpack(value):
    check_request([msgpack.packb(value, use_bin_type=True)])


@FUZZ
@given(st.one_of(st.sampled_from(COMMANDS), values), st.one_of(st.dictionaries(
    st.one_of(st.text(max_size=8), st.binary(max_size=8)), values, max_size=4), values), values, st.booleans())
def test_parse_request_command_shaped_maps(cmd, params, extra, bin_strings):
    request = {"cmd": cmd, "params": params, "extra": extra}
    check_request([msgpack.packb(request, use_bin_type=bin_strings)])


def test_parse_request_oversize_and_bomb_headers():
    check_request([b"\x82" + b"\xa3cmd\xa8describe" + b"\xa6params\xdf\xff\xff\xff\xff"])  # map32 claiming 4e9 entries
    check_request([b"\xdd\xff\xff\xff\xff"])  # array32 claiming 4e9 items in 5 bytes
    check_request([b"\x91" * 100_000])  # 100,000 nested arrays
    try:
        parse_request([msgpack.packb({"cmd": "describe", "pad": "x" * MAX_REQUEST_BYTES})])
    except ControlRequestError as exc:
        assert "larger than" in str(exc)
    else:
        raise AssertionError("an oversize request was accepted")
