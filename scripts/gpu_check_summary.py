"""The GPU check's reports (scripts/gpu_check.sh): the pipeline runs gathered into one file, and the summary.

    gpu_check_summary.py pipeline WORKDIR OUT.json     gather WORKDIR/pipeline-*.json (bench pipeline --json)
    gpu_check_summary.py summary STEPS.tsv OUTDIR [--dry 0|1] [--wall-s N]
                                                       summary.md and summary.json from the files in OUTDIR

Standard library only: it runs on the GPU machine's python3 beside the project, not as part of it.
``summary.json`` holds ``steps`` (name, status, seconds, exit code) and ``figures``: one flat
``name -> number or null`` map (latency, frames/s per batch, relative error, peak GPU memory and the
per-stage split per candidate; published frames/s, overruns and latency per pipeline run), so a
figure missing because its step failed shows as null rather than disappearing.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def gather_pipeline(work: Path, out: Path) -> None:
    runs: dict[str, Any] = {}
    for path in sorted(work.glob("pipeline-*.json")):
        name = path.stem.removeprefix("pipeline-")
        try:
            runs[name] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            runs[name] = {"error": f"no JSON from the run ({type(exc).__name__}: {exc})"}
    write_atomic(out, json.dumps(runs, indent=2) + "\n")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def bench_figures(report: dict[str, Any]) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}
    for method, res in report.get("methods", {}).items():
        for row in res.get("candidates", []):
            key = f"{method}.{row['key']}"
            figures[f"{key}.latency_p50_ms"] = _number((row.get("latency_ms") or {}).get("p50"))
            for entry in row.get("throughput", []):
                figures[f"{key}.frames_per_s.b{entry['batch']}"] = _number(entry.get("frames_per_s"))
            agreement = row.get("agreement_vs_fp32") or {}
            figures[f"{key}.max_rel_error"] = _number(agreement.get("max_rel_error"))
            if "peak_gpu_memory_mib" in row:
                figures[f"{key}.peak_gpu_memory_mib"] = _number(row["peak_gpu_memory_mib"])
            for stage in (row.get("stages_ms") or {}).get("batches", []):
                for name in ("h2d", "prepare", "network", "d2h"):
                    figures[f"{key}.stage_ms.b{stage['batch']}.{name}"] = _number(stage.get(name))
    return figures


def pipeline_figures(runs: dict[str, Any]) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}
    for name, report in runs.items():
        run = report.get("run") or {}
        for field in ("nominal_fps", "published_fps", "ring_overrun_planes", "capture_to_publish_ms_p50",
                      "capture_to_publish_ms_p99"):
            figures[f"pipeline.{name}.{field}"] = _number(run.get(field))
    return figures


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summarise(steps_tsv: Path, outdir: Path, dry: bool, wall_s: int) -> None:
    steps = []
    for line in steps_tsv.read_text().splitlines():
        name, status, seconds, rc = line.split("\t")
        steps.append({"name": name, "status": status, "seconds": int(seconds), "exit": rc})
    figures: dict[str, float | None] = {}
    lines = [f"# spike-edge GPU check{' (DRY: CPU, tiny sizes)' if dry else ''}", "",
             f"Wall time {wall_s} s.", "", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} |" for s in steps]
    for method in ("lrn", "stir"):
        report = _load(outdir / f"bench-{method}.json")
        lines += ["", f"## bench device: {method.upper()}", ""]
        if report is None:
            lines.append("No report (see gpu_check.log).")
            continue
        figures.update(bench_figures(report))
        gpu = (report.get("environment") or {}).get("gpu")
        if gpu:
            lines.append(f"{gpu['name']}, torch {report['environment']['torch']}")
            lines.append("")
        lines += ["| candidate | backend | p50 ms | frames/s by batch | max rel error | peak GPU MiB | "
                  "stages b=1 ms (H2D / prep / net / D2H) |", "|---|---|---|---|---|---|---|"]
        for res in report.get("methods", {}).values():
            for row in res.get("candidates", []):
                rates = ", ".join(f"b{e['batch']}: {e.get('frames_per_s', e.get('error', e.get('skipped')))}"
                                  for e in row.get("throughput", []))
                stage = next((b for b in (row.get("stages_ms") or {}).get("batches", []) if b.get("batch") == 1), {})
                split = " / ".join(str(stage.get(n, "-")) for n in ("h2d", "prepare", "network", "d2h"))
                agreement = row.get("agreement_vs_fp32") or {}
                lines.append(f"| {row['key']} | {row.get('backend') or row.get('error', '-')} | "
                             f"{(row.get('latency_ms') or {}).get('p50', '-')} | {rates or '-'} | "
                             f"{agreement.get('max_rel_error', agreement.get('error', '-'))} | "
                             f"{row.get('peak_gpu_memory_mib', '-')} | {split} |")
            for skipped in res.get("skipped", []):
                lines.append(f"- skipped {skipped['key']}: {skipped['reason']}")
    runs = _load(outdir / "pipeline.json") or {}
    figures.update(pipeline_figures(runs))
    lines += ["", "## bench pipeline", "", "| run | nominal fps | published fps | overruns | capture->publish p50 / p99 ms "
              "| passed |", "|---|---|---|---|---|---|"]
    for name, report in runs.items():
        run = report.get("run") or {}
        if "error" in report:
            lines.append(f"| {name} | {report['error']} | | | | |")
            continue
        lines.append(f"| {name} | {run.get('nominal_fps')} | {run.get('published_fps')} | "
                     f"{run.get('ring_overrun_planes')} | {run.get('capture_to_publish_ms_p50')} / "
                     f"{run.get('capture_to_publish_ms_p99')} | {run.get('passed')} |")
    summary = {"dry": dry, "wall_s": wall_s, "steps": steps, "figures": figures}
    write_atomic(outdir / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_atomic(outdir / "summary.md", "\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "pipeline":
        gather_pipeline(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) >= 3 and argv[0] == "summary":
        options = dict(zip(argv[3::2], argv[4::2]))
        summarise(Path(argv[1]), Path(argv[2]), options.get("--dry", "0") == "1", int(options.get("--wall-s", "0")))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
