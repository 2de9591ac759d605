"""The one atomic writer (``firmware_io.atomic``): files and directories appear whole or not at all,
temporaries never collide or linger, and the CLIs that write long files clean up on SIGTERM."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_io.atomic import (
    PendingFile,
    Terminated,
    atomic_dir,
    atomic_path,
    sigterm_as_exception,
    write_bytes_atomic,
    write_text_atomic,
)
from firmware_io.exits import ExitCode
from firmware_io.frame_files import FrameSink

REPO = Path(__file__).resolve().parents[2]
EDGE = [sys.executable, "-m", "edge"]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def test_success_renames_into_place_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.bin.") and tmp.name.endswith(".part")
        assert tmp.exists() and not target.exists()  # nothing under the final name while writing
        tmp.write_bytes(b"payload")
    assert target.read_bytes() == b"payload"
    assert names(target.parent) == ["out.bin"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(3), Terminated("SIGTERM")],
                         ids=lambda e: type(e).__name__)
def test_any_failure_keeps_the_old_target_and_removes_the_temporary(tmp_path, error):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(type(error)):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise error
    assert target.read_text() == "old"
    assert names(tmp_path) == ["out.txt"]


def test_two_writers_to_one_target_do_not_collide(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert target.read_bytes() == b"first"  # the outer block commits last
    assert names(tmp_path) == ["out.bin"]

    payloads = [bytes([i]) * 65536 for i in range(4)]
    start = threading.Barrier(len(payloads))
    errors: list[BaseException] = []

    def writer(payload: bytes) -> None:
        try:
            start.wait()
            for _ in range(20):
                write_bytes_atomic(target, payload)
        except BaseException as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert target.read_bytes() in payloads  # one writer's bytes, whole
    assert names(tmp_path) == ["out.bin"]


def test_permissions_are_those_of_a_plain_open(tmp_path, umask_027):
    write_text_atomic(tmp_path / "a.txt", "x")
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o640
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("x")
    (tmp_path / "plain_dir").mkdir()
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == stat.S_IMODE((tmp_path / "plain_dir").stat().st_mode) == 0o750


def test_conveniences_and_suffix(tmp_path):
    assert write_text_atomic(tmp_path / "t.json", "{\"a\": \"é\"}").read_text(encoding="utf-8") == "{\"a\": \"é\"}"
    assert write_bytes_atomic(tmp_path / "b.bin", b"\0\1").read_bytes() == b"\0\1"
    with atomic_path(tmp_path / "x.npy", suffix=".npy") as tmp:
        assert tmp.suffix == ".npy"  # libraries that pick the format from the suffix see the right one
        np.save(tmp, np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), np.arange(3))
    assert names(tmp_path) == ["b.bin", "t.json", "x.npy"]


def test_pending_file_commit_once_abort_idempotent(tmp_path):
    pending = PendingFile(tmp_path / "out.bin")
    pending.path.write_bytes(b"x")
    assert pending.commit() == tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="already committed"):
        pending.commit()
    other = PendingFile(tmp_path / "out.bin")
    other.abort()
    other.abort()
    assert names(tmp_path) == ["out.bin"] and (tmp_path / "out.bin").read_bytes() == b"x"
    with pytest.raises(IsADirectoryError, match="is a directory"):
        PendingFile(tmp_path)
    with pytest.raises(RuntimeError, match="failed"):
        with PendingFile(tmp_path / "out.bin").guard():
            raise RuntimeError("failed")
    assert names(tmp_path) == ["out.bin"]


def test_atomic_dir_success_replacement_and_failure(tmp_path):
    target = tmp_path / "engine"
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".engine.") and not target.exists()
        (tmp / "model.onnx").write_bytes(b"v1")
        (tmp / "manifest.json").write_text("{}")
    assert names(target) == ["manifest.json", "model.onnx"]
    with atomic_dir(target) as tmp:
        (tmp / "model.ts").write_bytes(b"v2")
    assert names(target) == ["model.ts"]  # replaced as a whole, not merged
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "model.ep").write_bytes(b"half")
            raise KeyboardInterrupt
    assert names(target) == ["model.ts"] and (target / "model.ts").read_bytes() == b"v2"
    assert names(tmp_path) == ["engine"]  # no temporary or set-aside directory left
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        with atomic_dir(tmp_path / "file"):
            pass
    assert names(tmp_path) == ["engine", "file"]


def test_streaming_writers_leave_nothing_on_interrupt(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with FrameSink(tmp_path / "f.npy", 3, (4, 5)) as sink:
            sink.append(np.ones((4, 5)))
            raise KeyboardInterrupt
    assert names(tmp_path) == []
    with FrameSink(tmp_path / "f.npy", 1, (4, 5)) as sink:
        sink.append(np.ones((4, 5)))
    assert np.load(tmp_path / "f.npy").shape == (1, 4, 5) and names(tmp_path) == ["f.npy"]


def test_sigterm_as_exception_raises_then_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated, match="SIGTERM"):
        with sigterm_as_exception():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # interrupted by the handler
    assert signal.getsignal(signal.SIGTERM) is before


def _terminate_mid_write(argv: list[str], out_dir: Path) -> subprocess.CompletedProcess:
    """Start ``argv``, wait for its hidden temporary in ``out_dir``, SIGTERM it while it still runs."""
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".") for p in out_dir.iterdir()):
            assert proc.poll() is None, f"exited {proc.returncode} before writing: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, "no temporary file appeared within 60 s"
            time.sleep(0.02)
        time.sleep(0.2)
        assert proc.poll() is None, "the job ended before it could be interrupted; make it longer"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def test_reconstruct_killed_by_sigterm_leaves_no_output(tmp_path):
    # 64x64 planes, an 8000-plane TFP window every plane: about 8000 frames of work, many seconds
    window, frames, plane_bytes = 8000, 8000, 64 * 64 // 8
    source = tmp_path / "in" / "long.dat"
    source.parent.mkdir()
    source.write_bytes(np.random.default_rng(0).integers(0, 256, (window + frames - 1) * plane_bytes, np.uint8).tobytes())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = _terminate_mid_write(
        [*EDGE, "reconstruct", str(source), "--height", "64", "--width", "64", "--method", "tfp",
         "--window", str(window), "--every", "1", "--out", str(out_dir / "OUT.npy")], out_dir)
    assert result.returncode == ExitCode.INCOMPLETE, result.stderr
    assert "error: terminated by signal SIGTERM before" in result.stderr and "OUT.npy" in result.stderr
    assert names(out_dir) == []  # no partial OUT.npy, no hidden temporary


def test_simulate_killed_by_sigterm_keeps_the_old_output(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "OUT.dat").write_bytes(b"old")
    result = _terminate_mid_write(
        [*EDGE, "simulate", "--scene", "shapes", "--height", "64", "--width", "64", "--planes", "100000000",
         "--out", str(out_dir / "OUT.dat")], out_dir)
    assert result.returncode == ExitCode.INCOMPLETE, result.stderr
    assert "error: terminated by signal SIGTERM before" in result.stderr
    assert names(out_dir) == ["OUT.dat"] and (out_dir / "OUT.dat").read_bytes() == b"old"
