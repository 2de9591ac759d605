"""Binding the daemon's sockets: the limits every bound socket has, CURVE when configured, one bind error type.

Every socket the daemon binds gets, before ``bind``:

- ``LINGER`` 0 (closing never waits for a peer);
- ``HANDSHAKE_IVL`` (``HANDSHAKE_TIMEOUT_MS``): a connection that has not completed the ZeroMQ
  handshake (and, with CURVE, the authentication) within it is dropped, so raw TCP connections
  that send nothing or garbage do not hold a descriptor for libzmq's default 30 s;
- ``ZAP_DOMAIN``: a ZAP domain makes libzmq refuse peers of the old protocols (ZMTP 1.0 and 2.0,
  libzmq before 4.0) at once. Without it, any first byte below 0xFF (``GET / HTTP``, most garbage) is taken
  for a ZMTP 1.0 greeting, which has no handshake to time out: the connection stayed open for
  good, and bytes that parsed as 1.0 frames reached the socket as requests. With CURVE the ZAP
  handler (``edge.live.security``) answers for this domain; without it there is no handler and
  libzmq lets every (ZMTP 3) peer in;
- ``MAXMSGSIZE`` (per socket): libzmq disconnects a peer that announces a larger message part
  before reading it, so a huge message costs neither memory nor anyone else's turn (handshake
  commands count too: a CURVE handshake needs about 300 bytes);
- CURVE server keys (``edge.live.security.CurveServer.secure``) when the daemon runs with CURVE;
- its own I/O threads (``AFFINITY``), where the context has them: the daemon's has two for the
  frame stream (``PUBLISHER_IO_THREADS``; libzmq gives each new subscriber the less loaded one,
  so with CURVE two subscribers' encryption runs on two cores) and one for the control socket
  (``CONTROL_IO_THREADS``), so handshakes, garbage and floods on the control port never take a
  thread that moves frames.
"""

from __future__ import annotations

import zmq

from edge.live.security import ZAP_DOMAIN, CurveServer

HANDSHAKE_TIMEOUT_MS = 3000  # loopback handshakes take about a millisecond, CURVE over a slow link a few RTTs
PUBLISHER_IO_THREADS = (0, 1)
CONTROL_IO_THREADS = (2,)
IO_THREADS = 3  # what the daemon's context is created with


class BindError(OSError):
    """The publisher or control address cannot be bound (in use, bad URL)."""


def bind_socket(sock: zmq.Socket, url: str, what: str, *, max_message_bytes: int, io_threads: tuple[int, ...],
                curve: CurveServer | None = None) -> str:
    """Apply the limits above (and CURVE) to ``sock``, bind it to ``url``; returns the bound endpoint.
    ``io_threads``: the context's I/O threads for its connections (those the context lacks are left out;
    none left: any thread)."""
    sock.setsockopt(zmq.LINGER, 0)
    available = sock.context.get(zmq.IO_THREADS)
    sock.setsockopt(zmq.AFFINITY, sum(1 << i for i in io_threads if i < available))
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_TIMEOUT_MS)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    sock.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
    if curve is not None:
        curve.secure(sock)
    try:
        sock.bind(url)
    except zmq.ZMQError as exc:
        raise BindError(f"cannot bind the {what} socket to {url}: {exc}") from exc
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
