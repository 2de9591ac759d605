"""Default endpoints of a daemon: where it publishes frames and where it answers control requests.

Both default to loopback; a daemon bound elsewhere is reached by passing its URLs to the host tools.
The HTTP servers of the stack (the daemon's Prometheus metrics, ``spike-host serve``'s viewer) take
a ``HOST:PORT`` parsed by ``parse_http_address``; ``HttpAddress.loopback`` tells whether it is
reachable from this machine only (anything else needs ``--insecure``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

DEFAULT_PUB_URL = "tcp://127.0.0.1:5555"
DEFAULT_CONTROL_URL = "tcp://127.0.0.1:5556"


#: The HTTP address a server given only a port listens on (``--metrics 9464``, ``--http 8080``).
LOOPBACK_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class HttpAddress:
    """Where an HTTP server listens (the daemon's ``--metrics``, ``spike-host serve --http``).

    ``host`` is an IP address or a host name as given (IPv6 without brackets); ``port`` 0 asks the
    system for a free one.
    """

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """Reachable from this machine only: ``localhost`` or an address of ``127.0.0.0/8`` / ``::1``.
        A host name other than ``localhost`` counts as exposed (it may resolve anywhere)."""
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, port: int | None = None) -> str:
        """``http://HOST:PORT`` (brackets around IPv6); ``port`` replaces a 0 once the server is bound."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_http_address(value: Any, name: str) -> HttpAddress:
    """``HOST:PORT``, ``[IPV6]:PORT`` or a bare ``PORT`` (loopback); ``ValueError`` quoting a bad value.

    A host must be given with its port (``:9464`` is refused rather than read as every interface:
    listening beyond this machine is a decision, spelled ``0.0.0.0:9464``).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be HOST:PORT (e.g. {LOOPBACK_HOST}:9464), got {value!r}")
    text = value.strip()
    if text.isdigit():
        host, port_text = LOOPBACK_HOST, text
    elif text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep or not host:
            raise ValueError(f"{name} must be [IPV6]:PORT for an IPv6 address, got {value!r}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError(f"{name} must be HOST:PORT (e.g. {LOOPBACK_HOST}:9464; IPv6 as [::1]:9464), got {value!r}")
    if any(c.isspace() or c in "/[]@" for c in host):
        raise ValueError(f"{name} host must be an address or a host name, got {value!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{name} port must be an integer in 0..65535, got {value!r}")
    return HttpAddress(host, int(port_text))
