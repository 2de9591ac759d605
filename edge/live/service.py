"""Telling a service manager how the daemon is doing: systemd's ``sd_notify`` protocol, written out.

The protocol is a datagram of ``KEY=VALUE`` lines sent to the unix socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket); systemd sets it for a
``Type=notify`` unit. No library is needed for it. The daemon sends:

- ``READY=1`` once, when the source has started (sockets and metrics are bound, the capture runs;
  frames flow from then on, or once ``--wait-subscribers`` are connected);
- ``STATUS=...``, a short line (state, frames/s, subscribers, losses), at most once a second from
  the heartbeat; ``systemctl status`` shows it;
- ``WATCHDOG=1`` from the daemon's own loop (``kick``, called between windows), every half of
  ``$WATCHDOG_USEC`` (systemd's ``WatchdogSec``), so a loop stuck in a reconstruction, a send or
  a deadlock stops kicking and systemd restarts the service. ``$WATCHDOG_PID``, when set, must be
  this process, else the watchdog is someone else's;
- ``STOPPING=1`` when it shuts down.

Without ``$NOTIFY_SOCKET`` every call does nothing. A manager that went away (the send fails) is
logged once and never stops the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
STATUS_PERIOD_S = 1.0


def notify_address(value: str) -> str:
    """The socket address ``$NOTIFY_SOCKET`` names (``@name``: the abstract ``\\0name``); ``ValueError`` otherwise."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    raise ValueError(f"{NOTIFY_SOCKET_ENV} must be an absolute path or @abstract-name, got {value!r}")


def watchdog_interval_ns(environ: Mapping[str, str], pid: int) -> int | None:
    """How often to kick the watchdog (half of ``$WATCHDOG_USEC``), or None when it is not ours / not set."""
    usec = environ.get(WATCHDOG_USEC_ENV)
    if not usec:
        return None
    owner = environ.get(WATCHDOG_PID_ENV)
    if owner and owner.strip() != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        raise ValueError(f"{WATCHDOG_USEC_ENV} must be an integer number of microseconds, got {usec!r}") from None
    if value <= 0:
        raise ValueError(f"{WATCHDOG_USEC_ENV} must be > 0, got {usec!r}")
    return value * 1000 // 2


def status_line(stats: Mapping[str, Any]) -> str:
    """The one-line ``STATUS``: state, frames/s, subscribers and the loss counters that are not zero."""
    parts = [f"{stats.get('state', '?')}: {stats.get('fps', 0.0):.1f} frames/s, {stats.get('subscribers', 0)} subscriber(s)"]
    losses = (("ring_overrun_planes", "overrun planes"), ("worker_skipped_windows", "skipped windows"),
              ("source_gap_planes", "source gap planes"), ("camera_reconnects", "reconnects"))
    parts += [f"{stats[key]} {label}" for key, label in losses if stats.get(key)]
    return ", ".join(parts)


class ServiceNotifier:
    """``sd_notify`` for the daemon (see the module docstring); ``from_environment`` reads the variables."""

    def __init__(self, address: str | None, watchdog_ns: int | None = None) -> None:
        self.address = address
        self.watchdog_ns = watchdog_ns if address is not None else None
        self._sock: socket.socket | None = None
        self._next_kick_ns = 0
        self._next_status_t = 0.0
        self._failed = False
        self.ready_sent = False
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ServiceNotifier:
        """From ``$NOTIFY_SOCKET`` / ``$WATCHDOG_USEC`` / ``$WATCHDOG_PID``; bad values are logged and ignored."""
        environ = os.environ if environ is None else environ
        raw = environ.get(NOTIFY_SOCKET_ENV)
        if not raw:
            return cls(None)
        try:
            address = notify_address(raw)
        except ValueError as exc:
            log.warning("not notifying the service manager: %s", exc)
            return cls(None)
        try:
            watchdog_ns = watchdog_interval_ns(environ, os.getpid())
        except ValueError as exc:
            log.warning("no watchdog: %s", exc)
            watchdog_ns = None
        if watchdog_ns is not None:
            log.info("service watchdog: kicking every %.3f s", watchdog_ns / 1e9)
        return cls(address, watchdog_ns)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: Any) -> bool:
        """One datagram of ``KEY=VALUE`` lines; False when disabled or the manager cannot be reached."""
        if self._sock is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify the service manager at %s: %s", self.address.replace("\0", "@"), exc)
            return False
        return True

    def ready(self, status: str) -> None:
        if not self.ready_sent:
            self.ready_sent = True
            self.send(READY=1, STATUS=status)

    def kick(self) -> None:
        """``WATCHDOG=1`` when half the watchdog interval has passed since the last one (cheap otherwise)."""
        if self.watchdog_ns is None:
            return
        now = time.monotonic_ns()
        if now >= self._next_kick_ns:
            self._next_kick_ns = now + self.watchdog_ns
            self.send(WATCHDOG=1)

    def status(self, stats: Mapping[str, Any]) -> None:
        """``STATUS`` from the daemon's stats, at most once every ``STATUS_PERIOD_S``."""
        if self._sock is None:
            return
        now = time.monotonic()
        if now >= self._next_status_t:
            self._next_status_t = now + STATUS_PERIOD_S
            self.send(STATUS=status_line(stats))

    def stopping(self, reason: str) -> None:
        self.send(STOPPING=1, STATUS=f"stopping: {reason}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
