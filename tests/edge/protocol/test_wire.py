"""The wire contract: round trips, and every kind of malformed message (out-of-range numbers and absurd
geometries included) is a WireError naming the fault."""

import msgpack
import numpy as np
import pytest

from edge.protocol.wire import (MAX_FRAME_PIXELS, MAX_FRAME_SIDE, EndOfStream, FrameHeader, Heartbeat, WireError,
                                decode, encode_eos, encode_frame, encode_heartbeat, int_fields)


def header(**changes):
    base = dict(stream_id="s", seq=3, key_plane=100, plane_start=80, plane_stop=121, shape=(2, 3), dtype="float32",
                method="tfp", backend="numpy", weights_id="none", capture_t_ns=1, dequeue_t_ns=2, infer_start_t_ns=3,
                infer_end_t_ns=4, publish_t_ns=5, rate_hz=40000.0)
    return FrameHeader(**{**base, **changes})


def test_round_trips():
    image = np.arange(6, dtype=np.float32).reshape(2, 3)
    got, decoded = decode([bytes(p) for p in encode_frame(header(), image)])
    assert got == header()
    np.testing.assert_array_equal(decoded, image)
    hb = Heartbeat("s", 7, -1, {"fps": 1.0})
    assert decode(encode_heartbeat(hb)) == hb
    eos = EndOfStream("s", 8, 10, 11, "end of file")
    assert decode(encode_eos(eos)) == eos


def raw(changes=None, drop=None, payload=b"\0" * 24, topic=b"frame"):
    d = {**header().to_dict(), **(changes or {})}
    if drop:
        del d[drop]
    return [topic, msgpack.packb(d), payload]


@pytest.mark.parametrize(
    "parts, fault",
    [
        ([b"frame", b""], "3 message parts"),
        (raw(topic=b"video"), "unknown topic"),
        ([b"frame", b"\xc1\xc1", b""], "not valid msgpack"),
        ([b"frame", msgpack.packb([1, 2]), b""], "must be a map"),
        (raw({"v": 99}), "wire version"),
        (raw(drop="seq"), "lacks ['seq']"),
        (raw({"seq": "three"}), "seq must be int"),
        (raw({"seq": True}), "seq must be int"),
        (raw({"seq": -1}), "seq must be >= 0"),
        (raw({"stream_id": 5}), "stream_id must be str"),
        (raw({"shape": [2]}), "shape"),
        (raw({"dtype": "object"}), "dtype"),
        (raw(payload=b"\0" * 23), "payload is 23 bytes"),
        ([b"heartbeat", msgpack.packb({"v": 1, "stream_id": "s", "t_ns": 1, "last_seq": 0, "stats": 3}), b""], "stats"),
    ],
)
def test_malformed_messages_are_wire_errors(parts, fault):
    with pytest.raises(WireError) as err:
        decode(parts)
    assert fault in str(err.value)


def _valid_header_maps():
    image_bytes = b"\0" * 24
    frame = (b"frame", header().to_dict(), image_bytes)
    heartbeat = (b"heartbeat", Heartbeat("s", 7, 3, {"fps": 1.0}).to_dict(), b"")
    eos = (b"eos", EndOfStream("s", 8, 3, 4, "end").to_dict(), b"")
    return [frame, heartbeat, eos]


INT_FIELD_CASES = [
    (topic, name)
    for topic, cls in ((b"frame", FrameHeader), (b"heartbeat", Heartbeat), (b"eos", EndOfStream))
    for name in int_fields(cls)
]


@pytest.mark.parametrize("topic, name", INT_FIELD_CASES, ids=[f"{t.decode()}-{n}" for t, n in INT_FIELD_CASES])
@pytest.mark.parametrize("value", [2**64 - 1, 2**63, -(2**63)], ids=["u64max", "i64max+1", "i64min"])
def test_every_integer_field_out_of_range_is_a_wire_error_naming_it(topic, name, value):
    ((t, d, payload),) = [c for c in _valid_header_maps() if c[0] == topic]
    parts = [t, msgpack.packb({**d, name: value}), payload]
    with pytest.raises(WireError) as err:
        decode(parts)
    assert name in str(err.value) and str(value) in str(err.value)


@pytest.mark.parametrize(
    "changes, fault",
    [
        ({"key_plane": -1}, "key_plane must be >= 0, got -1"),
        ({"capture_t_ns": -5}, "capture_t_ns must be >= 0"),
        ({"ring_overrun_planes": -1}, "ring_overrun_planes must be >= 0"),
        ({"plane_start": 130}, "must contain key_plane 100"),
        ({"plane_stop": 100}, "must contain key_plane 100"),
        ({"rate_hz": float("nan")}, "rate_hz must be a finite rate > 0"),
        ({"rate_hz": float("inf")}, "rate_hz must be a finite rate > 0"),
        ({"rate_hz": 0}, "rate_hz must be a finite rate > 0"),
        ({"stream_id": "x" * 5000}, "stream_id is 5000 characters long"),
        ({"shape": [100_000, 100_000]}, "beyond the limits"),
        ({"shape": [1, 2**40]}, "beyond the limits"),
        ({"shape": [2**64 - 1, 2**64 - 1]}, "beyond the limits"),
        ({"shape": [True, 3]}, "two positive integers"),
        ({"shape": [0, 3]}, "two positive integers"),
    ],
)
def test_out_of_range_frame_headers_are_wire_errors(changes, fault):
    with pytest.raises(WireError) as err:
        decode(raw(changes))
    assert fault in str(err.value)


@pytest.mark.parametrize(
    "topic, d",
    [
        (b"heartbeat", {"v": 1, "stream_id": "s", "t_ns": 1, "last_seq": -2, "stats": {}}),
        (b"eos", {"v": 1, "stream_id": "s", "t_ns": 1, "last_seq": 0, "frames": -1, "reason": "end"}),
        (b"heartbeat", {"v": 1, "stream_id": "s", "t_ns": 1, "last_seq": 0, "stats": {b"fps": 1.0}}),
        (b"heartbeat", {"v": 1, "stream_id": "s", "t_ns": 1, "last_seq": 0, "stats": {"lat": [{1: 2}]}}),
    ],
)
def test_out_of_range_heartbeat_and_eos_are_wire_errors(topic, d):
    with pytest.raises(WireError):
        decode([topic, msgpack.packb(d, use_bin_type=True), b""])


def test_limits_accept_the_extremes_a_daemon_can_send():
    big = 2**63 - 1
    got, _ = decode(raw({"seq": big, "publish_t_ns": big, "key_plane": 0, "plane_start": 0, "plane_stop": 1,
                         "ring_overrun_planes": big}))
    assert got.seq == big and got.plane_stop == 1
    hb = Heartbeat("s", 0, -1, {"nested": {"deep": [1, 2.5, "x", None]}})
    assert decode(encode_heartbeat(hb)) == hb
    shape = (MAX_FRAME_SIDE, MAX_FRAME_PIXELS // MAX_FRAME_SIDE)
    frame, image = decode(raw({"shape": list(shape), "dtype": "uint8"}, payload=bytes(shape[0] * shape[1])))
    assert image.shape == shape
