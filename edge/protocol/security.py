"""CURVE on the client side of a daemon, and reading ZeroMQ certificate files (both sides use this module).

A daemon started with ``--curve-secret FILE --curve-clients DIR`` (``edge.live.security``) encrypts
both of its sockets and accepts only clients whose public key is in that allow-list folder. A
client then needs two files, both in ZeroMQ's certificate format (``zmq.auth``, written by
``spike-edge keys generate DIR``):

- its own **secret** certificate (``--curve-key FILE``, a ``*.key_secret`` file: it holds the
  client's public and secret keys);
- the daemon's **public** certificate (``--curve-server FILE``, ``server.key``).

``CurveClient.load`` reads them (``KeyFileError``, a ``ValueError`` quoting the file, for anything
missing or wrong) and ``CurveClient.apply`` configures a socket before it connects. The command
lines (``spike-host``, ``edge.protocol.client`` users) also take the two files from the environment,
``SPIKE_EDGE_CURVE_KEY`` and ``SPIKE_EDGE_CURVE_SERVER`` (``CURVE_KEY_ENV``, ``CURVE_SERVER_ENV``);
an option given on the command line wins. Library callers pass a ``CurveClient`` explicitly.

A refused client hears nothing on a ZeroMQ socket (that is the point), so ``HandshakeWatch``
reads the socket's monitor events and says why: the daemon refused our key, or one side uses
CURVE and the other does not.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

CURVE_KEY_ENV = "SPIKE_EDGE_CURVE_KEY"
CURVE_SERVER_ENV = "SPIKE_EDGE_CURVE_SERVER"
PUBLIC_SUFFIX = ".key"  # zmq.auth's layout: NAME.key (public), NAME.key_secret (public + secret)
SECRET_SUFFIX = ".key_secret"


class KeyFileError(ValueError):
    """A certificate file that is missing, unreadable, malformed, or lacks the key it must hold."""


def require_curve() -> None:
    """``ValueError`` when this libzmq was built without CURVE (the pyzmq wheels have it)."""
    if not zmq.has("curve"):
        raise ValueError(f"this libzmq ({zmq.zmq_version()}) was built without CURVE support; install pyzmq's "
                         "wheel (pip install pyzmq) or a libzmq built with libsodium")


def _read_certificate(path: str | os.PathLike, what: str) -> tuple[bytes, bytes | None]:
    require_curve()
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"{what} {str(path)!r} is not a file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{what} {str(path)!r} is not a ZeroMQ certificate: {exc}") from None
    for name, key in (("public", public), ("secret", secret)):
        if key is not None and len(key) != 40:
            raise KeyFileError(f"{what} {str(path)!r}: the {name} key must be 40 Z85 characters, got {len(key)}")
    return public, secret


def load_public_key(path: str | os.PathLike, what: str = "public certificate") -> bytes:
    """The Z85 public key of a certificate file (``NAME.key``; a ``.key_secret`` holds it too)."""
    public, _ = _read_certificate(path, what)
    return public


def load_secret_certificate(path: str | os.PathLike, what: str = "secret certificate") -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys of a ``NAME.key_secret`` file; a file others can read is logged as a warning."""
    public, secret = _read_certificate(path, what)
    if secret is None:
        raise KeyFileError(f"{what} {str(path)!r} holds no secret key (give the {SECRET_SUFFIX} file, "
                           f"not the public {PUBLIC_SUFFIX} one)")
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s %s can be read by other users (mode %o); chmod 600 it", what, path, stat.S_IMODE(mode))
    return public, secret


@dataclass(frozen=True)
class CurveClient:
    """The client side of CURVE: this client's key pair and the daemon's public key (all Z85)."""

    public_key: bytes
    secret_key: bytes = field(repr=False)
    server_key: bytes

    @classmethod
    def load(cls, key_file: str | os.PathLike, server_file: str | os.PathLike) -> CurveClient:
        """From the client's ``*.key_secret`` file and the daemon's public ``server.key``."""
        public, secret = load_secret_certificate(key_file, "client secret certificate (--curve-key)")
        return cls(public, secret, load_public_key(server_file, "server public certificate (--curve-server)"))

    @classmethod
    def from_files(cls, key_file: str | os.PathLike | None, server_file: str | os.PathLike | None) -> CurveClient | None:
        """``load`` when both files are given, None when neither is; one without the other is a ``ValueError``."""
        if key_file is None and server_file is None:
            return None
        if key_file is None or server_file is None:
            raise ValueError("CURVE needs both the client's secret certificate (--curve-key / "
                             f"{CURVE_KEY_ENV}) and the daemon's public one (--curve-server / {CURVE_SERVER_ENV}); "
                             f"got only {'--curve-key' if server_file is None else '--curve-server'}")
        return cls.load(key_file, server_file)

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client of the daemon (before ``connect``)."""
        sock.curve_secretkey = self.secret_key
        sock.curve_publickey = self.public_key
        sock.curve_serverkey = self.server_key


_FAILURES = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
_WATCHED = _FAILURES | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


def describe_handshake_failure(event: int, value: int, curve: bool) -> str:
    """What a failed handshake (a monitor event and its value) means for a spike-edge client."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"the daemon refused this client's CURVE key (status {value}): its public key is not in the "
                "daemon's --curve-clients folder, or --curve-server is not that daemon's key")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if curve:
            return "the daemon does not use CURVE but this client does (drop --curve-key/--curve-server)"
        return (f"the daemon requires CURVE: give --curve-key FILE and --curve-server FILE "
                f"(or {CURVE_KEY_ENV} / {CURVE_SERVER_ENV})")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return f"the ZeroMQ handshake failed (protocol error {value:#x}); is this a spike-edge daemon?"
    return "the ZeroMQ handshake failed (no detail; a wrong --curve-server key looks like this)"


class HandshakeWatch:
    """The handshake outcome and the dropped connections of one socket, read from its one monitor:
    ``failure`` is why a peer stays silent, ``take_disconnects`` how often libzmq dropped the connection.

    Create it before ``connect``; ``poll_socket`` can be registered with a poller to learn of a
    failure at once. ``refused`` is true when the failure is final (the daemon refused our key, or
    the security mechanisms differ): retrying will not help. ``close`` before closing the socket.
    """

    def __init__(self, sock: zmq.Socket, curve: bool) -> None:
        self.sock = sock
        self.curve = curve
        self.poll_socket = sock.get_monitor_socket(_WATCHED)
        self._failure: str | None = None
        self._disconnects = 0
        self.refused = False

    def _drain(self) -> None:
        while self.poll_socket.poll(0):
            event = parse_monitor_message(self.poll_socket.recv_multipart())
            kind, value = int(event["event"]), int(event["value"])
            if kind == zmq.EVENT_DISCONNECTED:
                self._disconnects += 1
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._failure, self.refused = None, False
            elif kind & _FAILURES:
                self._failure = describe_handshake_failure(kind, value, self.curve)
                self.refused = kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH or (
                    kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)

    def failure(self) -> str | None:
        """Why the newest handshake failed (None: none failed since the last one that succeeded)."""
        self._drain()
        return self._failure

    def take_disconnects(self) -> int:
        """Connections libzmq dropped since the last call (after a protocol error, such as a message over
        ZMQ_MAXMSGSIZE, libzmq does not reconnect by itself)."""
        self._drain()
        n, self._disconnects = self._disconnects, 0
        return n

    def close(self) -> None:
        if not self.poll_socket.closed:
            if not self.sock.closed:
                self.sock.disable_monitor()
            self.poll_socket.close(linger=0)
