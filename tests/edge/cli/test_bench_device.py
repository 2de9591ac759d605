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
         "--height", "32", "--width", "48", "--threads", "1", "--out", str(out),
         # every kind of candidate once (aoti-bf16 would be a second compile of the same path)
         "--candidates", "eager-fp32,torch,torch-bf16,onnxruntime,aoti-fp32,tensorrt"],
        capture_output=True, text=True, timeout=300)
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
    assert keys[:3] == ["eager-fp32", "torch", "torch-bf16"] and "aoti-fp32" in keys  # the package compiled in the run
    assert set(env["cpu_bf16"]) >= {"avx512_bf16", "amx_bf16", "amx_tile", "fast_bf16", "torch_capability"}
    assert any(s["key"] == "tensorrt" for s in lrn["skipped"])
    for cand in lrn["candidates"]:
        assert "error" not in cand, cand
        lat = cand["latency_ms"]
        assert lat["p50"] > 0 and lat["p99"] >= lat["p50"] and lat["calls"] >= 3
        assert [e["batch"] for e in cand["throughput"]] == [1, 2]
        assert all(e["frames_per_s"] > 0 for e in cand["throughput"])
        agr = cand["agreement_vs_fp32"]
        assert agr["finite"] and agr["within_tolerance"] and cand["target"]["output_pass"]
        if cand["key"] == "torch-bf16":
            assert agr["psnr_db"] > 35  # bf16 rounds, but stays close to fp32
        else:
            assert 0 <= agr["max_rel_error"] < 1e-4  # every other CPU candidate is fp32
        assert cand["target"]["verdict"] in ("PASS", "FAIL")
    for key in ("eager-fp32", "torch"):  # torch modules: the per-stage split at batch 1 and the largest batch
        stages = next(c for c in lrn["candidates"] if c["key"] == key)["stages_ms"]
        assert stages["method"] == "perf_counter" and [b["batch"] for b in stages["batches"]] == [1, 2]
        for b in stages["batches"]:
            assert all(b[s] >= 0 for s in ("h2d", "prepare", "network", "d2h")) and b["network"] > 0
    assert lrn["verdict"] in ("PASS", "FAIL")
    assert report["pipeline"]["command"].startswith("spike-edge bench pipeline")

    md = out.with_suffix(".md").read_text()
    assert "| candidate | backend | latency p50 / p99 ms | frames/s b=1 | frames/s b=2 |" in md
    assert "| H2D | unpack + prepare | network | D2H |" in md
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


def test_candidates_option_times_only_those_and_names_the_unknown(tmp_path):
    out = tmp_path / "x.json"
    proc = subprocess.run(
        [*EDGE, "bench", "device", "--device", "cpu", "--methods", "lrn", "--seconds", "0", "--batch-sizes", "1",
         "--height", "16", "--width", "16", "--threads", "1", "--candidates", "tor?h,aoti-nonexistent",
         "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lrn = json.loads(out.read_text())["methods"]["lrn"]
    assert [c["key"] for c in lrn["candidates"]] == ["torch"]
    assert lrn["skipped"] == [{"key": "aoti-nonexistent", "reason": "no candidate of this version matches (--candidates)"}]


def test_a_failing_candidate_is_recorded_and_the_others_still_run():
    from edge.cli.bench.device import Candidate, TARGETS, bench_candidate
    from edge.reconstruction.backends.base import Device
    from edge.reconstruction.methods import Method

    class CompileError(Exception):  # not one of the exception types the bench used to expect
        pass

    def make():
        raise CompileError("inductor gave up")

    ref = np.zeros((1, 4, 4), np.float32)
    row = bench_candidate(Candidate("broken", "raises while building", make), np.zeros((1, 8, 2), np.uint8), ref,
                          {1: np.zeros((1, 8, 2), np.uint8)}, [1], 0.0, Device.CPU, TARGETS[Method.LRN],
                          lambda packed, geometry: packed)
    assert row["error"] == "CompileError: inductor gave up" and "inductor gave up" in row["traceback"]
    assert row["target"]["verdict"] == "FAIL" and row["throughput"] == []


def test_agreement_requires_finite_output_and_judges_relative_error():
    from edge.reconstruction.reference import agreement, within

    ref = np.linspace(0, 100, 32, dtype=np.float32).reshape(2, 4, 4)
    close = agreement(ref + 0.05, ref)
    assert close["finite"] and close["max_rel_error"] == pytest.approx(5e-4, rel=1e-3) and within(close, 1e-3)
    assert not within(close, 1e-4)
    bad = ref.copy()
    bad[1, 2, 3] = np.nan
    result = agreement(bad, ref)
    assert not result["finite"] and result["non_finite_values"] == 1 and not within(result, 1.0)
    assert result["min_psnr_db"] is None and result["max_rel_error"] is None


def test_strict_fp32_turns_tf32_off_and_restores_the_settings():
    import torch

    from edge.reconstruction.reference import strict_fp32, tf32_convolutions

    conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    before = (conv, torch.backends.cuda.matmul.fp32_precision) if conv is not None else \
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with strict_fp32():
        assert not tf32_convolutions()
        if conv is not None:
            assert torch.backends.cudnn.conv.fp32_precision == "ieee"
            assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))  # no mixed-API error
    after = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) if conv is not None \
        else (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    assert after == before
    with pytest.raises(KeyError):  # restored on an exception too
        with strict_fp32():
            raise KeyError("x")
    assert tf32_convolutions() == (before[0] == "tf32" if conv is not None else bool(before[0]))


def test_agreement_windows_fit_the_geometry():
    from edge.reconstruction.reference import agreement, fit_planes as _fit
    from firmware_io.contract import Geometry

    planes = np.arange(2 * 5 * 6).reshape(2, 5, 6)
    fitted = _fit(planes, Geometry(3, 8))
    assert fitted.shape == (2, 3, 8)
    np.testing.assert_array_equal(fitted[:, :, 1:7], planes[:, 1:4, :])  # centre rows, original columns
    ref = np.zeros((2, 4, 4), np.float32)
    ref[:, 0, 0] = 1.0
    assert agreement(ref, ref)["identical"] and agreement(ref, ref)["psnr_db"] is None
    assert agreement(ref + 0.01, ref)["psnr_db"] == pytest.approx(40.0, abs=0.01)
