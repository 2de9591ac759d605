"""Running as a service: ``sd_notify`` (``edge.live.service``) received on a real unix datagram socket from a real
daemon (``spike-edge service unit`` is tested in ``tests/edge/cli/test_service_unit.py``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from edge.live.service import ServiceNotifier, notify_address, status_line, watchdog_interval_ns
from firmware_io.dat import write_dat


@pytest.fixture
def notify_socket():
    """A bound unix datagram socket standing in for systemd's (short path: AF_UNIX paths hold 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="sdn", dir="/tmp")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def receive_all(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    """Every datagram for ``seconds``, with its arrival time."""
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            break
    return out


def receive_until(sock: socket.socket, predicate, timeout_s: float, log) -> list[tuple[float, str]]:
    out = []
    deadline = time.monotonic() + timeout_s
    while not any(predicate(m) for _, m in out):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no matching notification in {timeout_s} s; got {[m for _, m in out]}; log:\n{log()}")
        sock.settimeout(left)
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            pass
    return out


def fields(message: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in message.splitlines())


def live_clip(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(1)
    path = write_dat(tmp_path / "clip.dat", rng.random((400, 24, 32)) < 0.2)
    return ["--replay", str(path), "--realtime", "--loop", "--rate-hz", "4000", "--height", "24", "--width", "32"]


# -- the protocol -----------------------------------------------------------------------------------
def test_notify_addresses_and_watchdog_settings():
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@abstract/name") == "\0abstract/name"
    for bad in ("relative/path", "@", "vsock:2:1234"):
        with pytest.raises(ValueError, match=repr(bad).replace("[", "\\[")):
            notify_address(bad)
    assert watchdog_interval_ns({"WATCHDOG_USEC": "30000000"}, 7) == 15_000_000_000  # half of WatchdogSec
    assert watchdog_interval_ns({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"}, 7) == 1_000_000_000
    assert watchdog_interval_ns({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "8"}, 7) is None  # someone else's
    assert watchdog_interval_ns({}, 7) is None
    for bad in ("soon", "0", "-5"):
        with pytest.raises(ValueError, match=repr(bad)):
            watchdog_interval_ns({"WATCHDOG_USEC": bad}, 7)


def test_an_abstract_socket_receives_ready_status_watchdog_and_the_watchdog_is_paced():
    name = f"spike-edge-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "200000"})
        assert notifier.enabled and notifier.watchdog_ns == 100_000_000
        notifier.ready("running: 0 frames/s")
        notifier.ready("twice")  # READY is sent once
        for _ in range(50):  # 50 kicks within a few ms: one datagram, the rest wait for the interval
            notifier.kick()
        notifier.stopping("stopped by SIGTERM")
        notifier.close()
        got = [m for _, m in receive_all(manager, 0.3)]
    assert got == ["READY=1\nSTATUS=running: 0 frames/s", "WATCHDOG=1", "STOPPING=1\nSTATUS=stopping: stopped by SIGTERM"]


def test_without_notify_socket_nothing_is_sent_and_a_vanished_manager_is_not_fatal(tmp_path):
    quiet = ServiceNotifier.from_environment({"WATCHDOG_USEC": "1000"})
    assert not quiet.enabled and not quiet.send(READY=1)
    quiet.kick()
    gone = ServiceNotifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert gone.enabled and gone.send(READY=1) is False  # logged once, never raised
    gone.close()


def test_the_status_line_is_short_and_names_losses_only_when_there_are_some():
    stats = {"state": "running", "fps": 999.96, "subscribers": 2, "ring_overrun_planes": 0, "camera_reconnects": 0}
    assert status_line(stats) == "running: 1000.0 frames/s, 2 subscriber(s)"
    assert status_line({**stats, "ring_overrun_planes": 80, "worker_skipped_windows": 3}) == (
        "running: 1000.0 frames/s, 2 subscriber(s), 80 overrun planes, 3 skipped windows")


# -- a real daemon ----------------------------------------------------------------------------------
def test_a_daemon_notifies_ready_status_and_watchdog_from_its_loop(start_daemon, tmp_path, notify_socket):
    sock, path = notify_socket
    d = start_daemon(live_clip(tmp_path), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000"})
    got = receive_until(sock, lambda m: m.startswith("READY=1"), 30, d.text)
    ready = next(fields(m) for _, m in got if m.startswith("READY=1"))
    assert ready["STATUS"].startswith("running: "), ready
    assert "capture started" in d.text()  # READY once the source runs
    got += receive_all(sock, 2.0)
    kicks = [t for t, m in got if m == "WATCHDOG=1"]
    after_ready = [t for t in kicks if t > got[0][0]]
    assert len(after_ready) >= 6, f"{len(after_ready)} kicks in ~2 s at a 0.15 s interval: {[m for _, m in got]}"
    assert max(np.diff(after_ready[-6:])) < 0.3 + 0.5  # never a whole WatchdogSec (0.3 s) apart, bar scheduling
    statuses = [fields(m)["STATUS"] for _, m in got if m.startswith("STATUS=")]
    assert any(s.startswith("running: ") and " frames/s" in s and "subscriber(s)" in s for s in statuses), statuses
    assert sum(m.startswith("READY=1") for _, m in got) == 1
    # A stopped loop stops kicking (what makes systemd restart a stalled daemon), and kicks again after
    d.proc.send_signal(signal.SIGSTOP)
    try:
        receive_all(sock, 0.2)  # whatever was already in flight
        assert [m for _, m in receive_all(sock, 1.0) if m == "WATCHDOG=1"] == []
    finally:
        d.proc.send_signal(signal.SIGCONT)
    receive_until(sock, lambda m: m == "WATCHDOG=1", 5, d.text)
    d.terminate(within_s=2.0)
    tail = [fields(m) for _, m in receive_all(sock, 0.5)]
    assert any(f.get("STOPPING") == "1" and "SIGTERM" in f.get("STATUS", "") for f in tail), tail


def test_a_watchdog_meant_for_another_process_is_not_kicked(start_daemon, tmp_path, notify_socket):
    sock, path = notify_socket
    d = start_daemon(live_clip(tmp_path), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    got = receive_until(sock, lambda m: m.startswith("READY=1"), 30, d.text)
    got += receive_all(sock, 1.0)
    assert not [m for _, m in got if m == "WATCHDOG=1"]
    d.terminate(within_s=2.0)
