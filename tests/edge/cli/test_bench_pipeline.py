"""``spike-edge bench pipeline`` with the options the recording figures need (``--height/--width``, ``--record``):
a short real run of the bench, its report read back."""

from __future__ import annotations

import json
import subprocess

from edge.cli.processes import EDGE
from firmware_io.recording import open_recording


def test_bench_pipeline_reports_what_the_recorder_kept_up_with(tmp_path):
    r = subprocess.run([*EDGE, "bench", "pipeline", "--seconds", "1.5", "--warmup", "0.5", "--rate-hz", "4000",
                        "--height", "32", "--width", "48", "--record", str(tmp_path), "--record-segment-mb", "0.2",
                        "--json"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["file"] == "generated 32x48 random planes"
    run = report["run"]
    assert run["frames_received"] > 0
    record = run["record"]
    assert record["planes_captured"] > 0 and record["planes_recorded"] > 0 and record["write_mb_per_s"] > 0
    assert record["planes_dropped"] == record["drops"] == 0 and record["state_at_end"] == "recording"
    folder = tmp_path / "run-001-4000hz"
    assert record["folder"]["path"] == str(folder) and record["folder"]["open_segments"] == 0
    with open_recording(folder) as rec:  # kept, complete, and as long as the report says
        assert rec.geometry.shape == (32, 48) and rec.recorded_planes == record["folder"]["recorded_planes"]
        assert rec.recorded_planes >= record["planes_recorded"] and len(rec.segments) > 1
