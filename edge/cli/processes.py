"""Running the daemon and host tools as real subprocesses (the demo and the benchmarks drive them so).

``EDGE`` and ``HOST`` are the command prefixes of ``spike-edge`` and ``spike-host`` for this
interpreter; ``loopback_urls`` gives fresh loopback endpoints; ``stop`` ends a process the way an
operator would (SIGTERM, then a bounded wait, then SIGKILL) and returns its exit code;
``wait_until_serving`` waits for a daemon's control socket to answer.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

EDGE = [sys.executable, "-m", "edge"]
HOST = [sys.executable, "-m", "host"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_urls() -> tuple[str, str]:
    """A publisher URL and a control URL on free loopback ports."""
    return f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> int | None:
    """SIGTERM, wait up to ``timeout_s``; a process still running then is killed and ``None`` returned."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            return None
    return proc.returncode


def wait_until_serving(ctl: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> bool:
    """Wait until the daemon ``proc`` answers ``health`` on its control URL ``ctl`` (its start includes
    imports and the capture process: seconds on a busy machine); False if it exits or ``timeout_s`` passes."""
    from edge.protocol.client import ControlError, ControlTimeout, request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if request(ctl, {"cmd": "health"}, timeout_s=1.0).get("ok"):
                return True
        except (ControlTimeout, ControlError):
            time.sleep(0.1)
    return False
