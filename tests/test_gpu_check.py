"""The GPU check's CPU side (``docs/gpu-check.md``): what a GPU machine without pyzmq collects, and the
dry run of ``scripts/gpu_check.sh``, which runs every step of the real check at tiny sizes on the CPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _without_zmq(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import pyzmq (a ``zmq`` package first on the path that refuses)."""
    shim = tmp_path / "nozmq" / "zmq"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text('raise ImportError("pyzmq made unimportable for this test")\n')
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim.parent), str(ROOT)])}


def test_gpu_tests_collect_without_pyzmq(tmp_path):
    env = _without_zmq(tmp_path)
    assert subprocess.run([sys.executable, "-c", "import zmq"], env=env, capture_output=True).returncode != 0
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-rs", "-m", "gpu",
                           "-p", "no:cacheprovider", "tests"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "error" not in proc.stdout.splitlines()[-1].lower(), proc.stdout[-2000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert any(line.startswith("tests/edge/reconstruction/test_gpu.py::") for line in collected), proc.stdout[-2000:]
    assert "needs zmq, which is not importable here" in proc.stdout  # the socket tests say why they are left out
