"""The daemon's side of security: CURVE on both sockets, the rule for exposed addresses, what strangers may see.

- **CURVE** (``--curve-secret FILE --curve-clients DIR``): ``ServerKey`` is the daemon's secret
  certificate, ``ClientAllowList`` the folder of client public certificates (``*.key``, ZeroMQ's
  format, ``spike-edge keys generate``). ``CurveServer`` runs pyzmq's own ZAP authenticator
  (``zmq.auth.thread.ThreadAuthenticator``: a thread with its own socket, on the daemon's context)
  and makes the XPUB and the control socket CURVE servers (``secure``, before ``bind``). A client
  whose key is not listed fails the handshake: it gets no frames and no control replies, never
  counts as a subscriber, and is counted in ``denied`` (its key is logged once as a warning).
  The folder is read again when it changes (checked at most once a second from the daemon's loop,
  ``refresh``): adding a key admits that client at its next connection; removing one refuses its
  next connection (a connection already open stays until it closes, or the daemon restarts).
- **Exposure** (``is_local_endpoint``): binding anything but loopback (``127.0.0.0/8``, ``::1``,
  ``localhost``, the ``lo`` interface) or a local transport (``ipc://``, ``inproc://``) without
  CURVE is refused by the configuration (``edge.live.config``, exit code 2) unless ``--insecure``
  is given; ``warn_exposed`` then logs a warning for each exposed address.
- **What an unauthenticated client sees** (``redact_source``): without CURVE nobody is
  authenticated, so ``describe`` gives file names without their folders and leaves out the host
  name and process id; with CURVE every client that gets a reply is listed, and sees them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from edge.protocol.security import PUBLIC_SUFFIX, KeyFileError, load_public_key, load_secret_certificate

log = logging.getLogger(__name__)

ZAP_DOMAIN = "spike-edge"  # of every bound socket (edge.live.sockets); the authenticator answers for it
LOCAL_TRANSPORTS = ("ipc", "inproc")
LOOPBACK_NAMES = ("localhost", "lo")  # a host name, and the Linux loopback interface (``tcp://lo:5555``)
REFRESH_PERIOD_S = 1.0
MAX_LOGGED_KEYS = 256  # refused keys remembered so each is logged once


def is_local_endpoint(url: str) -> bool:
    """Whether binding ``url`` is reachable from this host only: loopback TCP, ``ipc://``, ``inproc://``."""
    transport, sep, rest = url.partition("://")
    if not sep:
        return False
    if transport in LOCAL_TRANSPORTS:
        return True
    host = rest.split("/", 1)[0].rpartition(":")[0]  # ws://HOST:PORT/path, tcp://HOST:PORT
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name, a host name, ``*``
        return False


@dataclass(frozen=True)
class ServerKey:
    """The daemon's CURVE key pair (Z85), from its secret certificate file."""

    path: str
    public_key: bytes
    secret_key: bytes = field(repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ServerKey:
        public, secret = load_secret_certificate(path, "server secret certificate (--curve-secret)")
        return cls(str(path), public, secret)


@dataclass(frozen=True)
class ClientAllowList:
    """The public keys (Z85) of the clients the daemon accepts: every ``*.key`` file of one folder."""

    path: str
    keys: frozenset[bytes]

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClientAllowList:
        folder = Path(path)
        if not folder.is_dir():
            raise KeyFileError(f"client allow-list (--curve-clients) {str(path)!r} is not a folder")
        files = sorted(folder.glob(f"*{PUBLIC_SUFFIX}"))
        keys = frozenset(load_public_key(f, "client public certificate") for f in files)
        if not keys:
            raise KeyFileError(f"client allow-list (--curve-clients) {str(path)!r} holds no *{PUBLIC_SUFFIX} "
                               "certificate: no client could connect (copy the clients' public .key files there)")
        return cls(str(path), keys)

    @staticmethod
    def signature(path: str | os.PathLike) -> tuple:
        """What changes when a certificate is added, removed or rewritten (for ``CurveServer.refresh``)."""
        folder = Path(path)
        return (folder.stat().st_mtime_ns,
                tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(folder.glob(f"*{PUBLIC_SUFFIX}"))))


class CurveServer:
    """CURVE for the daemon's sockets: pyzmq's ZAP authenticator thread checking the allow-list.

    ``start`` it before binding any socket ``secure`` configures; ``stop`` it before the context
    terminates. ``refresh`` (from the daemon's loop) re-reads a changed allow-list folder.
    """

    def __init__(self, key: ServerKey, allow_list: ClientAllowList, context: zmq.Context) -> None:
        self.key = key
        self.allow_list = allow_list
        self.denied = 0
        self._logged: set[bytes] = set()
        self._signature = ClientAllowList.signature(allow_list.path)
        self._next_refresh = time.monotonic() + REFRESH_PERIOD_S
        self.authenticator = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))

    def start(self) -> CurveServer:
        self.authenticator.start()
        self.authenticator.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self)
        log.info("CURVE on: %d client key(s) allowed from %s", len(self.allow_list.keys), self.allow_list.path)
        return self

    def callback(self, domain: str, client_key: bytes) -> bool:
        """pyzmq's credentials-provider hook, in the authenticator thread: is this Z85 client key listed?"""
        if client_key in self.allow_list.keys:
            return True
        self.denied += 1
        if client_key not in self._logged and len(self._logged) < MAX_LOGGED_KEYS:
            self._logged.add(client_key)
            log.warning("refused a client whose CURVE key %s is not in %s", client_key.decode("ascii", "replace"),
                        self.allow_list.path)
        return False

    def secure(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE server with the daemon's key (before ``bind``)."""
        sock.curve_server = True
        sock.curve_secretkey = self.key.secret_key
        sock.curve_publickey = self.key.public_key

    def refresh(self) -> None:
        """Re-read the allow-list folder if it changed (at most once a second); a broken folder keeps the old list."""
        now = time.monotonic()
        if now < self._next_refresh:
            return
        self._next_refresh = now + REFRESH_PERIOD_S
        try:
            signature = ClientAllowList.signature(self.allow_list.path)
            if signature == self._signature:
                return
            self._signature = signature
            allow_list = ClientAllowList.load(self.allow_list.path)
        except (OSError, ValueError) as exc:
            log.error("client allow-list not reloaded, keeping the %d key(s) loaded before: %s",
                      len(self.allow_list.keys), exc)
            return
        self.allow_list = allow_list  # one reference swap: the authenticator thread sees the old or the new list
        self._logged.clear()
        log.info("client allow-list reloaded: %d key(s) from %s", len(allow_list.keys), allow_list.path)

    def stop(self) -> None:
        self.authenticator.stop()


def warn_exposed(endpoints: dict[str, str]) -> None:
    """Log a warning for each endpoint (``what -> url``) reachable from other hosts without authentication."""
    for what, url in endpoints.items():
        if not is_local_endpoint(url):
            log.warning("the %s socket on %s is not loopback and has no authentication (--insecure): any host "
                        "that reaches it can %s", what, url,
                        "read the stream" if what == "publisher" else "read and change the daemon's settings")


def redact_source(source: dict[str, Any]) -> dict[str, Any]:
    """``describe``'s source map for an unauthenticated client: file and folder paths cut to their last part."""
    return {k: os.path.basename(v.rstrip("/")) if isinstance(v, str) and "/" in v else v for k, v in source.items()}
