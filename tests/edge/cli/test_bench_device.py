"""``spike-edge bench device`` on the CPU: it runs end to end at a small geometry and writes its results files."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from edge.cli.processes import EDGE

pytest.importorskip("torch")


def test_bench_device_cpu_writes_json_and_markdown(tmp_path):
    out = tmp_path / "results" / "x.json"
    proc = subprocess.run(
        [*EDGE, "bench", "device", "--device", "cpu", "--methods", "lrn", "--seconds", "0.5", "--batch-sizes", "1,2",
         "--height", "32", "--width", "48", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["schema"].startswith("spike-edge bench device") and report["device"] == "cpu"
    env = report["environment"]
    for key in ("torch", "onnxruntime", "tensorrt", "cpu_count", "gpu", "utc", "command"):
        assert key in env
    assert env["cpu_count"] > 0 and env["gpu"] is None
    assert report["targets"]["lrn"] == {"min_frames_per_s": 2000.0, "max_latency_ms": 0.5}
    lrn = report["methods"]["lrn"]
    assert lrn["geometry"] == {"height": 32, "width": 48} and not lrn["target_geometry"]
    assert lrn["window_planes"] == 200 and lrn["agreement_source"]
    keys = [c["key"] for c in lrn["candidates"]]
    assert keys[:3] == ["eager-fp32", "torch", "torch-bf16"]
    assert set(env["cpu_bf16"]) >= {"avx512_bf16", "amx_bf16", "amx_tile", "fast_bf16", "torch_capability"}
    assert any(s["key"] == "tensorrt" for s in lrn["skipped"])
    for cand in lrn["candidates"]:
        lat = cand["latency_ms"]
        assert lat["p50"] > 0 and lat["p99"] >= lat["p50"] and lat["calls"] >= 3
        assert [e["batch"] for e in cand["throughput"]] == [1, 2]
        assert all(e["frames_per_s"] > 0 for e in cand["throughput"])
        agr = cand["agreement_vs_fp32"]
        if cand["key"] == "torch-bf16":
            assert agr["psnr_db"] > 35  # bf16 rounds, but stays close to fp32
        else:
            assert 0 <= agr["max_abs_diff"] < 1e-4  # every other CPU candidate is fp32
        assert cand["target"]["verdict"] in ("PASS", "FAIL")
    assert lrn["verdict"] in ("PASS", "FAIL")
    assert report["pipeline"]["command"].startswith("spike-edge bench pipeline")

    md = out.with_suffix(".md").read_text()
    assert "| backend | latency p50 / p99 ms | frames/s b=1 | frames/s b=2 |" in md
    assert "torch-cpu-fp32" in md and "LRN at 32x48" in md and "spike-edge bench pipeline" in md
    assert not list(out.parent.glob(".*.part"))  # the atomic writes left no temporaries


def test_bench_device_cuda_without_gpu_fails_clearly(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "x.json"
    proc = subprocess.run([*EDGE, "bench", "device", "--device", "cuda", "--methods", "lrn", "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4
    assert "--device cuda" in proc.stderr and "no CUDA GPU" in proc.stderr
    assert not out.exists()


def test_agreement_windows_fit_the_geometry():
    from edge.cli.bench.device import _fit, agreement
    from firmware_io.contract import Geometry

    planes = np.arange(2 * 5 * 6).reshape(2, 5, 6)
    fitted = _fit(planes, Geometry(3, 8))
    assert fitted.shape == (2, 3, 8)
    np.testing.assert_array_equal(fitted[:, :, 1:7], planes[:, 1:4, :])  # centre rows, original columns
    ref = np.zeros((2, 4, 4), np.float32)
    ref[:, 0, 0] = 1.0
    assert agreement(ref, ref)["identical"] and agreement(ref, ref)["psnr_db"] is None
    assert agreement(ref + 0.01, ref)["psnr_db"] == pytest.approx(40.0, abs=0.01)
