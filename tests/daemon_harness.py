"""One harness for the end-to-end tests: ``spike-edge run`` as a real subprocess on free loopback ports.

``Daemon`` starts ``python -m edge run ARGS --bind PUB --control CTL``, its stdout and stderr in a
log file under the test's ``tmp_path``; every wait has a deadline and every failure carries that
log. Tests get daemons from the ``start_daemon`` fixture (``tests/conftest.py``), which kills any
that are still running when the test ends.

The daemon inherits the test's environment minus the fake SDK's knobs (``FAKE_SPIKELINK_*``) and
the SDK location (``LIBRARY_ENV``): a test that wants them passes them in ``env``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from edge.cli.processes import EDGE, loopback_urls
from firmware_io.spikelink import LIBRARY_ENV
from edge.protocol.client import ControlTimeout, build_request
from edge.protocol.client import request as control_request

REPO = Path(__file__).resolve().parents[1]
FAKE_ENV_PREFIX = "FAKE_SPIKELINK_"


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the fake SDK's knobs and the SDK location, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FAKE_ENV_PREFIX) and k != LIBRARY_ENV}
    env.update(extra or {})
    return env


class Daemon:
    """``spike-edge run ARGS`` as a subprocess on free loopback ports, its output in a log file."""

    def __init__(self, args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.pub, self.ctl = loopback_urls()
        self.log = tmp_path / f"daemon-{self.pub.rsplit(':', 1)[1]}.log"
        self._log_f = open(self.log, "wb")
        self.proc = subprocess.Popen([*EDGE, "run", *args, "--bind", self.pub, "--control", self.ctl], cwd=REPO,
                                     stdout=self._log_f, stderr=subprocess.STDOUT, env=daemon_env(env))

    def text(self) -> str:
        """The daemon's output so far."""
        self._log_f.flush()
        return self.log.read_text(errors="replace")

    def request(self, cmd: str, *, timeout_s: float = 3.0, **params: Any) -> dict:
        """One control request (``edge.protocol.client``); no reply in time or ``ok`` false fails the test."""
        try:
            reply = control_request(self.ctl, build_request(cmd, params or None), timeout_s=timeout_s)
        except ControlTimeout:
            pytest.fail(f"no reply to {cmd} within {timeout_s} s; log:\n{self.text()}")
        assert reply["ok"], reply
        return reply

    def wait(self, timeout: float) -> int:
        """The exit code; still running after ``timeout`` seconds fails the test."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon did not exit within {timeout} s; log:\n{self.text()}")

    def terminate(self, within_s: float = 1.0, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` (SIGTERM): the daemon must exit 0 within ``within_s``."""
        t = time.monotonic()
        self.proc.send_signal(sig)
        code = self.wait(max(5.0, within_s))
        elapsed = time.monotonic() - t
        assert code == 0, self.text()
        assert elapsed < within_s, f"took {elapsed:.2f} s to exit after {signal.Signals(sig).name}"

    def close(self) -> None:
        """Kill the process if it is still running and close the log."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log_f.close()
