"""Evaluation against ground truth (``spike-train eval``): PSNR / SSIM on REDS_BASE-layout folders.

For each clip (``training.datasets.find_pairs``) every method reconstructs the clip's centre plane
(``edge.reconstruction.windows.default_key``) from its window of packed planes through
``edge.reconstruction.backends.make_reconstructor``; the output (a firing-rate image) becomes intensity with
``training.datasets.rate_to_intensity`` (x 1/0.6, clipped to [0, 1]) and is scored against the PNG
(``training.metrics``: PSNR, SSIM with an 11x11 Gaussian window, data range 1).

The TFP and TFI baselines are always part of the report: TFP at ``tfp_window`` planes (41 unless
told), TFP at each window of ``TFP_SWEEP`` with the best one named (the best is chosen on the same
clips, so it is an optimistic baseline), and TFI at its 41-plane window.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.reconstruction.methods import Method, method_spec
from edge.reconstruction.windows import check_window_fits, default_key
from firmware_io.contract import Geometry
from firmware_io.dat import DatReader
from training.datasets import find_pairs, rate_to_intensity, read_gt_png
from training.metrics import psnr, ssim

TFP_SWEEP = (11, 15, 21, 31, 41, 61)


def score(output_rate: np.ndarray, gt_intensity: np.ndarray) -> dict:
    image = rate_to_intensity(np.asarray(output_rate, dtype=np.float64))
    return {"psnr": psnr(image, gt_intensity), "ssim": ssim(image, gt_intensity)}


def _run(reconstructor, reader: DatReader, key: int) -> np.ndarray:
    start, stop = check_window_fits(key, reconstructor.window_planes, reader.n_planes)
    # a writable copy: the memory map is read-only and torch warns about wrapping it
    return reconstructor.reconstruct(np.array(reader.packed(start, stop)[None]))[0]


def evaluate(
    methods: Sequence[str],
    data: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    backend: str = "auto",
    tfp_window: int = 41,
    tfp_sweep: Sequence[int] = TFP_SWEEP,
) -> dict:
    """Per-clip and mean PSNR/SSIM of ``methods`` plus the TFP/TFI baselines on the clips of ``data``."""
    from edge.reconstruction.backends import make_reconstructor

    pairs = find_pairs(data)
    learned = [Method(m) for m in methods if method_spec(m).learned]
    if checkpoint is not None and len(learned) > 1:
        raise ValueError(f"--checkpoint applies to one network, but {', '.join(m.value for m in learned)} were asked for")
    entries: dict[str, dict] = {}  # label -> {"method", "window", "weights_id", "clips": {name: scores}}
    reconstructors: dict[tuple, object] = {}

    def get(label: str, method: Method, geometry: Geometry, window: int | None):
        key = (label, geometry)
        if key not in reconstructors:
            if method_spec(method).learned:
                reconstructors[key] = make_reconstructor(method, geometry, backend=backend, checkpoint=checkpoint)
            else:
                reconstructors[key] = make_reconstructor(method, geometry, window_planes=window)
            r = reconstructors[key]
            entries.setdefault(label, {"method": method.value, "window": int(r.window_planes),
                                       "backend": r.backend, "weights_id": r.weights_id, "clips": {}})
        return reconstructors[key]

    plan: list[tuple[str, Method, int | None]] = [(f"tfp-{tfp_window}", Method.TFP, tfp_window), ("tfi-41", Method.TFI, 41)]
    plan += [(f"tfp-{w}", Method.TFP, w) for w in tfp_sweep if w != tfp_window]
    plan += [(m.value, m, None) for m in learned]
    for dat, png in pairs:
        gt = read_gt_png(png)
        geometry = Geometry(*gt.shape)
        with DatReader(dat, geometry) as reader:
            key = default_key(reader.n_planes)
            for label, method, window in plan:
                out = _run(get(label, method, geometry, window), reader, key)
                entries[label]["clips"][dat.stem] = score(out, gt)
    for entry in entries.values():
        clips = entry["clips"].values()
        entry["mean_psnr"] = float(np.mean([c["psnr"] for c in clips]))
        entry["mean_ssim"] = float(np.mean([c["ssim"] for c in clips]))
    sweep = {label: e for label, e in entries.items() if e["method"] == "tfp"}
    best = max(sweep, key=lambda label: sweep[label]["mean_psnr"])
    return {
        "data": str(Path(data)),
        "clips": [dat.stem for dat, _ in pairs],
        "key_plane": "centre (n_planes // 2)",
        "scale": "intensity = clip(output / 0.6, 0, 1)",
        "tfp_window": tfp_window,
        "tfp_best_window": sweep[best]["window"],
        "results": entries,
    }


def format_table(report: dict) -> str:
    lines = [f"{len(report['clips'])} clips in {report['data']}; key = {report['key_plane']}; {report['scale']}",
             f"{'method':<10} {'window':>6} {'PSNR dB':>8} {'SSIM':>7}  weights"]
    for label, e in report["results"].items():
        mark = "  (best TFP window)" if e["method"] == "tfp" and e["window"] == report["tfp_best_window"] else ""
        lines.append(f"{label:<10} {e['window']:>6} {e['mean_psnr']:>8.2f} {e['mean_ssim']:>7.4f}  {e['weights_id']}{mark}")
    return "\n".join(lines)


__all__ = ["evaluate", "format_table", "score", "TFP_SWEEP"]
