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


EXPECTED_FILES = {"gpu_check.log", "bench-lrn.json", "bench-lrn.md", "bench-stir.json", "bench-stir.md",
                  "pipeline.json", "summary.md", "summary.json"}


@pytest.mark.slow
def test_dry_run_writes_every_report_with_finite_figures(tmp_path):
    out = tmp_path / "gpu-check"
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "GPU_CHECK_DRY")}
    env["PYTHON"] = sys.executable
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + log[-3000:]
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES  # the device tool brings back at most 8 files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry"] is True
    statuses = {s["name"]: s["status"] for s in summary["steps"]}
    assert set(statuses) == {"nvidia-smi", "wheels", "pytest-gpu", "bench-lrn", "bench-stir",
                             "pipeline-250x400-40k", "pipeline-1000x1000-20k"}
    assert all(status in ("ok", "absent") for status in statuses.values()), statuses
    figures = summary["figures"]
    for name in ("lrn.torch.latency_p50_ms", "stir.torch.frames_per_s.b2", "lrn.eager-fp32.max_rel_error",
                 "stir.torch.stage_ms.b1.network", "pipeline.250x400-40k.published_fps",
                 "pipeline.1000x1000-20k.capture_to_publish_ms_p50"):
        assert name in figures, sorted(figures)
    assert all(value is not None and math.isfinite(value) for value in figures.values()), figures
    assert figures["lrn.torch.latency_p50_ms"] > 0 and figures["pipeline.250x400-40k.published_fps"] > 0
    keys = {method: [c["key"] for c in json.loads((out / f"bench-{method}.json").read_text())["methods"][method]["candidates"]]
            for method in ("lrn", "stir")}
    assert keys["lrn"][:3] == ["eager-fp32", "torch", "torch-bf16"] and "aoti-fp32" in keys["lrn"], keys
    assert keys["stir"] == ["eager-fp32", "torch", "torch-bf16"], keys  # no STIR package in the dry run
    assert "| pipeline-1000x1000-20k | ok |" in (out / "summary.md").read_text()
