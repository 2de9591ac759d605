"""Evaluation against ground truth (``spike-train eval``): PSNR / SSIM on REDS_BASE-layout folders.

For each clip (``training.datasets.find_pairs``) every method reconstructs the clip's centre plane
(``edge.reconstruction.windows.default_key``) from its window of packed planes through
``edge.reconstruction.backends.make_reconstructor``; the output (a firing-rate image) becomes intensity with
``training.datasets.rate_to_intensity`` (x 1/0.6, clipped to [0, 1]) and is scored against the PNG
(``training.metrics``: PSNR, SSIM with an 11x11 Gaussian window, data range 1).

The TFP and TFI baselines are always part of the report: TFP at ``tfp_window`` planes (41 unless
told), TFP at each window of ``TFP_SWEEP`` with the best one named (the best is chosen on the same
clips, so it is an optimistic baseline), and TFI at its 41-plane window.

Output scale: the scores assume a network outputs a firing rate (spikes per plane), as ours are
trained to. Weights trained to another scale (the published LRN_CALTECH.pth outputs about 8.4x the
rate) would score a few dB for the wrong reason, so each network's ``output_scale`` is measured
against TFP over the same window of the same clip: ``mean(output) / mean(TFP rate)`` (1.0 for our
weights). Outside ``1 / SCALE_TOLERANCE .. SCALE_TOLERANCE`` the report says so (``scale_note``)
and also scores the output divided by its scale (``rescaled``: PSNR/SSIM of ``output / output_scale``);
the plain scores stay as they are, so a checkpoint is never flattered silently.

``progress=True`` shows a bar on stderr when it is a terminal (``firmware_io.progress``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.reconstruction.classical import tfp_packed
from edge.reconstruction.methods import Method, method_spec
from edge.reconstruction.windows import check_window_fits, default_key
from firmware_io.contract import Geometry
from firmware_io.dat import DatReader
from firmware_io.progress import progress_bar
from training.datasets import find_pairs, rate_to_intensity, read_gt_png
from training.metrics import psnr, ssim

TFP_SWEEP = (11, 15, 21, 31, 41, 61)
SCALE_TOLERANCE = 1.25  # a network's output_scale outside 1/1.25 .. 1.25 is reported as another scale


def score(output_rate: np.ndarray, gt_intensity: np.ndarray) -> dict:
    image = rate_to_intensity(np.asarray(output_rate, dtype=np.float64))
    return {"psnr": psnr(image, gt_intensity), "ssim": ssim(image, gt_intensity)}


def _run(reconstructor, reader: DatReader, key: int) -> np.ndarray:
    start, stop = check_window_fits(key, reconstructor.window_planes, reader.n_planes)
    # a writable copy: the memory map is read-only and torch warns about wrapping it
    return reconstructor.reconstruct(np.array(reader.packed(start, stop)[None]))[0]


def output_scale(output: np.ndarray, reader: DatReader, key: int, window_planes: int) -> float:
    """``mean(output) / mean(TFP rate)`` over the same window: 1.0 for an output in spikes per plane."""
    start, stop = check_window_fits(key, window_planes, reader.n_planes)
    rate = float(np.mean(tfp_packed(np.asarray(reader.packed(start, stop)), reader.geometry)))
    return float(np.mean(output)) / rate if rate > 0 else float("nan")


def _scale_note(label: str, scale: float) -> str:
    return (f"{label}: its output is {scale:.2f}x the firing rate TFP measures over the same planes, so these weights "
            f"were trained to another output scale (not spikes per plane) and its PSNR/SSIM compare the wrong scale; "
            f"divided by {scale:.2f} it scores the '{label} / {scale:.2f}' row")


def evaluate(
    methods: Sequence[str],
    data: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    backend: str = "auto",
    tfp_window: int = 41,
    tfp_sweep: Sequence[int] = TFP_SWEEP,
    progress: bool = False,
) -> dict:
    """Per-clip and mean PSNR/SSIM of ``methods`` plus the TFP/TFI baselines on the clips of ``data``
    (and each network's output scale, see the module docstring)."""
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
    outputs: dict[str, dict[str, tuple]] = {}  # network label -> clip -> (output, ground truth, output scale)
    bar = progress_bar(total=len(pairs) * len(plan), desc="eval", unit="run", disable=not progress)
    with bar:
        for dat, png in pairs:
            gt = read_gt_png(png)
            geometry = Geometry(*gt.shape)
            with DatReader(dat, geometry) as reader:
                key = default_key(reader.n_planes)
                for label, method, window in plan:
                    reconstructor = get(label, method, geometry, window)
                    out = _run(reconstructor, reader, key)
                    entries[label]["clips"][dat.stem] = score(out, gt)
                    if method_spec(method).learned:
                        scale = output_scale(out, reader, key, reconstructor.window_planes)
                        entries[label]["clips"][dat.stem]["output_scale"] = scale
                        outputs.setdefault(label, {})[dat.stem] = (out, gt, scale)
                    bar.update(1)
    for entry in entries.values():
        clips = entry["clips"].values()
        entry["mean_psnr"] = float(np.mean([c["psnr"] for c in clips]))
        entry["mean_ssim"] = float(np.mean([c["ssim"] for c in clips]))
    for label, clips in outputs.items():
        scale = float(np.mean([s for _, _, s in clips.values()]))
        entries[label]["output_scale"] = scale
        if not (1 / SCALE_TOLERANCE <= scale <= SCALE_TOLERANCE):
            rescaled = {name: score(out / s, gt) for name, (out, gt, s) in clips.items()}
            entries[label]["scale_note"] = _scale_note(label, scale)
            entries[label]["rescaled"] = {"clips": rescaled,
                                          "mean_psnr": float(np.mean([c["psnr"] for c in rescaled.values()])),
                                          "mean_ssim": float(np.mean([c["ssim"] for c in rescaled.values()]))}
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
    notes = []
    for label, e in report["results"].items():
        mark = "  (best TFP window)" if e["method"] == "tfp" and e["window"] == report["tfp_best_window"] else ""
        lines.append(f"{label:<10} {e['window']:>6} {e['mean_psnr']:>8.2f} {e['mean_ssim']:>7.4f}  {e['weights_id']}{mark}")
        if "rescaled" in e:
            r = e["rescaled"]
            row = f"{label} / {e['output_scale']:.2f}"
            lines.append(f"{row:<10} {e['window']:>6} {r['mean_psnr']:>8.2f} {r['mean_ssim']:>7.4f}  {e['weights_id']}"
                         "  (output divided by its scale)")
            notes.append(f"note: {e['scale_note']}")
    return "\n".join(lines + notes)


__all__ = ["evaluate", "format_table", "output_scale", "score", "SCALE_TOLERANCE", "TFP_SWEEP"]
