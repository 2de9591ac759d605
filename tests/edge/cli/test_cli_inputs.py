"""Bad inputs through the real command lines: every one exits 2 with a message (never a traceback), and a small
file that declares a huge array neither takes the memory it declares nor gets past the budget."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge.cli.processes import EDGE, loopback_urls
from firmware_io.npz import MAX_MB_ENV

HUGE = ["--height", "100000", "--width", "100000"]


def edge(*args, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGE, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# Runs the command given as arguments and prints its exit code and peak resident memory (KiB): ``wait4`` reports
# the child's own peak, and a child forked from this small launcher (rather than from pytest, whose memory a
# forked child counts until it execs) starts with next to nothing.
_LAUNCHER = """
import os, subprocess, sys
with subprocess.Popen(sys.argv[1:]) as proc:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
print(proc.returncode, usage.ru_maxrss)
"""


def edge_peak_rss_mb(*args, env: dict[str, str] | None = None) -> tuple[int, float, str]:
    """``(exit code, peak resident memory in MB, stderr)`` of one ``spike-edge`` run."""
    result = subprocess.run([sys.executable, "-c", _LAUNCHER, *EDGE, *map(str, args)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    code, peak_kib = map(int, result.stdout.split()[-2:])
    return code, peak_kib / 1024, result.stderr  # ru_maxrss is in KiB on Linux


def commands(path: Path, tmp_path: Path) -> dict[str, list[str]]:
    """``info``, ``reconstruct`` and ``run`` on ``path`` (``run`` on free loopback ports, in case it started)."""
    pub, ctl = loopback_urls()
    return {"info": ["info", path],
            "reconstruct": ["reconstruct", path, "--method", "tfp", "--out", tmp_path / "out.npy"],
            "run": ["run", "--replay", path, "--bind", pub, "--control", ctl]}


def planes(n=50, h=6, w=8):
    return (np.random.default_rng(0).random((n, h, w)) < 0.3).astype(np.uint8)


def _not_a_zip(path):
    path.write_bytes(b"just some text, not an archive")


def _array_label(path):
    np.savez(path, spk=planes(), label=np.arange(3))


def _string_spk(path):
    np.savez(path, spk=np.array([[["a", "b"]]]))


def _structured_spk(path):
    np.savez(path, spk=np.zeros((50, 6, 8), dtype=[("a", "u1"), ("b", "f4")]))


def _negative_spk(path):
    np.savez(path, spk=-planes().astype(np.int8))


def _fractional_spk(path):
    np.savez(path, spk=planes() * 0.3)


BAD_NPZ = {
    "not-a-zip": (_not_a_zip, "is not a valid .npz file"),
    "array-label": (_array_label, "'label' must be an integer, got an array of shape (3,)"),
    "string-spk": (_string_spk, "'spk' must hold 0/1 numbers (bool, integer or float), got dtype <U1"),
    "structured-spk": (_structured_spk, "'spk' must hold 0/1 numbers (bool, integer or float), got dtype [("),
    "negative-spk": (_negative_spk, "'spk' must hold only 0 and 1, but plane 0 holds -1"),
    "fractional-spk": (_fractional_spk, "'spk' must hold only 0 and 1, but plane 0 holds 0.3"),
}


@pytest.mark.parametrize("case", BAD_NPZ)
def test_bad_npz_exits_2_with_a_message_in_every_command(tmp_path, case):
    write, message = BAD_NPZ[case]
    path = tmp_path / f"{case}.npz"
    write(path)
    for name, args in commands(path, tmp_path).items():
        result = edge(*args)
        assert result.returncode == 2, f"{name}: exit {result.returncode}\n{result.stderr}"
        assert message in result.stderr and f"{case}.npz" in result.stderr, f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr, f"{name}: {result.stderr}"


def test_huge_geometry_exits_2_before_allocating(tmp_path):
    """One 100000x100000 plane is 1.25 GB packed: a sparse file holding exactly one would be read as a valid
    recording, and counting or reconstructing it would allocate tens of GB."""
    path = tmp_path / "one_huge_plane.dat"
    with open(path, "wb") as f:
        f.truncate(100_000 * 100_000 // 8)
    pub, ctl = loopback_urls()
    for args in (["info", path, *HUGE], ["reconstruct", path, *HUGE, "--method", "tfp", "--out", tmp_path / "o.npy"],
                 ["run", "--simulate", *HUGE, "--bind", pub, "--control", ctl],
                 ["run", "--replay", path, *HUGE, "--bind", pub, "--control", ctl], ["bench", "simulate", *HUGE]):
        code, peak_mb, stderr = edge_peak_rss_mb(*args)
        assert code == 2, f"{args[0]}: exit {code}\n{stderr}"
        assert "100000x100000 plane has 10,000,000,000 pixels; at most 67,108,864" in stderr, stderr
        assert "Traceback" not in stderr and peak_mb < 500, (peak_mb, stderr)


def write_bomb(path: Path, n_planes: int, height: int = 250, width: int = 400) -> None:
    """A decompression bomb: a deflated 'spk' of ``n_planes`` all-zero planes (about 1,000:1)."""
    zeros = bytes(1 << 22)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("spk.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                     "shape": (n_planes, height, width)})
            left = n_planes * height * width
            while left:
                f.write(zeros[: min(left, len(zeros))])
                left -= min(left, len(zeros))


def test_decompression_bomb_memory_stays_bounded(tmp_path):
    """300 MB of zero planes deflated to about 300 KB: info keeps only the packed planes (37.5 MB) plus one
    chunk, and over the budget it refuses the file from its header alone."""
    n_planes = 3000
    bomb = tmp_path / "bomb.npz"
    write_bomb(bomb, n_planes)
    assert bomb.stat().st_size < 1_000_000
    small = tmp_path / "small.npz"
    np.savez(small, spk=planes())
    code, baseline_mb, stderr = edge_peak_rss_mb("info", small, "--json")
    assert code == 0, stderr
    code, peak_mb, stderr = edge_peak_rss_mb("info", bomb, "--json", env={MAX_MB_ENV: "1024"})
    assert code == 0, stderr
    packed_mb = n_planes * 250 * 400 / 8 / 2**20
    raw_mb = n_planes * 250 * 400 / 2**20
    assert peak_mb < baseline_mb + packed_mb + 100, (baseline_mb, peak_mb)
    assert peak_mb - baseline_mb < raw_mb / 2, (baseline_mb, peak_mb)  # growth: far below the decompressed size
    started = time.monotonic()
    code, peak_mb, stderr = edge_peak_rss_mb("info", bomb, env={MAX_MB_ENV: "20"})
    assert code == 2 and "3,000 planes of 250x400 uint8: reading it needs 104.3 MB, over the 20.0 MB budget" in stderr, stderr
    assert time.monotonic() - started < 20 and peak_mb < baseline_mb + 20, peak_mb  # nothing was decompressed
    for args in (["reconstruct", bomb, "--method", "tfp", "--out", tmp_path / "o.npy"], ["run", "--replay", bomb]):
        code, _, stderr = edge_peak_rss_mb(*args, env={MAX_MB_ENV: "20"})
        assert code == 2 and "over the 20.0 MB budget" in stderr, (args[0], stderr)
    assert "SPIKE_EDGE_NPZ_MAX_MB" in edge("info", "--help").stdout


def test_file_truncated_under_info_is_a_clear_error(tmp_path):
    """The reader reads with positioned reads: a file that loses planes between open and read is a message."""
    code = (
        "import os, sys\n"
        "from firmware_io.contract import Geometry\n"
        "from firmware_io.dat import DatReader\n"
        "reader = DatReader(sys.argv[1], Geometry(6, 8))\n"
        "os.truncate(sys.argv[1], 10)\n"
        "try:\n"
        "    reader.packed(0, reader.n_planes)\n"
        "except ValueError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    path = tmp_path / "t.dat"
    path.write_bytes(bytes(6 * 8 // 8 * 5000))
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"exit {result.returncode} (-7 is SIGBUS)\n{result.stderr}"
    assert result.stdout.startswith("FormatError") and "shrank from 30000 to 10 bytes while open" in result.stdout
