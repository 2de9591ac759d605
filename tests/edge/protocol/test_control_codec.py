"""The control request codec's messages: each rejected request says what is wrong in words a client
author can act on (no empty reasons, no ``None`` standing in for a missing key)."""

import msgpack
import pytest

from edge.protocol.control import COMMANDS, ControlRequestError, parse_request
from edge.protocol.wire import WireError, unpack_map


def rejection(raw: bytes) -> str:
    with pytest.raises(ControlRequestError) as info:
        parse_request([raw])
    return str(info.value)


def test_a_request_without_cmd_says_so_and_lists_the_commands():
    message = rejection(msgpack.packb({"params": {"hop": 2}}))
    assert "None" not in message
    assert message.startswith("request has no 'cmd' key (keys: ['params'])")
    assert all(cmd in message for cmd in COMMANDS)


def test_a_bin_typed_cmd_is_named_as_such():
    message = rejection(msgpack.packb({"cmd": b"describe"}, use_bin_type=True))
    assert message == "cmd must be a msgpack str, got bin b'describe'; pack text as str, not bytes"


@pytest.mark.parametrize("raw, reason", [
    (b"\xc1\x00garbage", "a reserved or malformed type byte (9 bytes: c1 00 67 61 72 62 61 67 ...)"),
    (b"\xc1", "a reserved or malformed type byte (1 bytes: c1)"),
    (b"\x91" * 5000, "nested too deeply (5000 bytes: 91 91 91 91 91 91 91 91 ...)"),
])
def test_invalid_msgpack_has_a_reason_and_shows_the_bytes(raw, reason):
    assert f"request is not valid msgpack: {reason}" in rejection(raw)


def test_an_empty_request_has_a_reason():
    message = rejection(b"")
    reason = message.split("request is not valid msgpack:", 1)[1]
    assert reason.strip().split("(0 bytes)")[0].strip(), message  # msgpack's own words, then the size


def test_the_same_reason_reaches_a_frame_header():
    with pytest.raises(WireError, match=r"^header is not valid msgpack: a reserved or malformed type byte \(2 bytes: c1 c1\)$"):
        unpack_map(b"\xc1\xc1", "header")
