"""Binding the daemon's sockets, with one error type for every address that cannot be bound."""

from __future__ import annotations

import zmq


class BindError(OSError):
    """The publisher or control address cannot be bound (in use, bad URL)."""


def bind_socket(sock: zmq.Socket, url: str, what: str) -> str:
    try:
        sock.bind(url)
    except zmq.ZMQError as exc:
        raise BindError(f"cannot bind the {what} socket to {url}: {exc}") from exc
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
