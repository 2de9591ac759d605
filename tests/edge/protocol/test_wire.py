"""The wire contract: round trips, and every kind of malformed message is a WireError naming the fault."""

import msgpack
import numpy as np
import pytest

from edge.protocol.wire import (
    EndOfStream,
    FrameHeader,
    Heartbeat,
    WireError,
    decode,
    encode_eos,
    encode_frame,
    encode_heartbeat,
)


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
