"""``spike-edge bench reconstruct``: every torch precision timed and judged against fp32, the pick stored for auto."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from edge.cli.processes import EDGE

pytest.importorskip("torch")


def test_bench_reconstruct_reports_precisions_and_stores_the_pick(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([*EDGE, "bench", "reconstruct", "--method", "lrn", "--height", "32", "--width", "48",
                           "--iterations", "1", "--threads", "1", "--json"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["device"] == "cpu" and report["tolerance_db"] == 0.1
    assert report["quality_source"].startswith("simulated")  # REDS_BASE is 250x400
    assert {"avx512_bf16", "amx_bf16", "fast_bf16"} <= set(report["cpu_bf16"])
    rows = {r["backend"]: r for r in report["results"]}
    fp32, bf16 = rows["torch-cpu-fp32"], rows["torch-cpu-bf16"]
    assert fp32["precision"] == "fp32" and fp32["psnr_vs_fp32_db"] is None and fp32["loss_db"] == 0
    assert bf16["precision"] == "bf16" and bf16["psnr_vs_fp32_db"] > 35 and abs(bf16["loss_db"]) < 1
    assert all(r["ms_per_frame"] > 0 for r in report["results"])
    assert [r["precision"] for r in report["results"] if r["pick"]] == [report["pick"]]
    assert report["pick"] in ("fp32", "bf16") and not report["random_weights"]
    cache = json.loads((tmp_path / "cache" / "spike-edge" / "precision-picks.json").read_text())
    assert report["pick_stored"] == str(tmp_path / "cache" / "spike-edge" / "precision-picks.json")
    (entry,) = cache["entries"]
    assert entry["precision"] == report["pick"] and entry["key"]["method"] == "lrn" and entry["key"]["device"] == "cpu"
    assert [t["precision"] for t in entry["trials"]] == ["fp32", "bf16"]
