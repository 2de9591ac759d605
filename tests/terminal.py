"""Running a command with its stderr on a pseudo-terminal, as a person at a shell would see it (the
progress-bar tests: bars appear on a terminal, and never in a pipe)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import tempfile
import termios
import time


def run_on_terminal(cmd: list[str], timeout_s: float = 120.0, columns: int = 100) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``cmd`` run with stderr on a pty ``columns`` wide, stdout to a file."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=slave)
        os.close(slave)
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.1)
                if not ready:
                    if proc.poll() is not None:
                        break
                    continue
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # EIO: the child closed its end of the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            else:
                proc.kill()
                raise TimeoutError(f"{cmd} did not finish within {timeout_s} s")
            code = proc.wait(timeout_s)
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        return code, out.read().decode(errors="replace"), b"".join(chunks).decode(errors="replace")
