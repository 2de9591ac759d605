"""Windows with ground truth, and the PSNR that says what a precision loses against fp32.

``truth_windows(window_planes, geometry)`` gives packed windows ``uint8 (N, T, plane_bytes)`` and
the ground-truth image at each window's key plane ``float (N, H, W)`` in [0, 1]: the REDS_BASE clips
(``$SPIKE_EDGE_SHARED_DATA/redsbase``, else ``../shared/data/redsbase`` beside the checkout: each
``.dat`` with the ``.png`` of its centre plane) when present at 250x400, else a simulated recording
of the ``shapes`` scene (the scene frame shown at each window's key plane).

``fitted_psnr(image, truth)``: PSNR (peak 1) after the least-squares gain and offset that map the
image onto the truth. The networks' outputs are not on the ground truth's scale (the published LRN
weights were trained on other captures), and the same fit applied to fp32 and to another precision
keeps their difference a difference in what the images show.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge.reconstruction.windows import default_key, window_range
from firmware_io.contract import Geometry

REPO_ROOT = Path(__file__).resolve().parents[3]
REDSBASE_GEOMETRY = Geometry(250, 400)
SIMULATED_WINDOWS = 2
SIMULATED_PLANES_PER_FRAME = 10


def redsbase_folder() -> Path:
    return Path(os.environ.get("SPIKE_EDGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "redsbase"


def _redsbase(window_planes: int, folder: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    from PIL import Image

    from firmware_io.dat import DatReader

    windows, truths, names = [], [], []
    for dat in sorted(folder.glob("*.dat")) if folder.is_dir() else []:
        png = dat.with_suffix(".png")
        if not png.is_file():
            continue
        with DatReader(dat, REDSBASE_GEOMETRY) as reader:
            start, stop = window_range(default_key(len(reader)), window_planes)
            if start < 0 or stop > len(reader):
                continue
            windows.append(reader.packed(start, stop))
        truths.append(np.asarray(Image.open(png).convert("L"), dtype=np.float64) / 255)
        names.append(dat.stem)
    return windows, truths, names


def truth_windows(window_planes: int, geometry: Geometry,
                  folder: Path | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Packed windows, the ground truth at their key planes, and where they come from (see the module docstring)."""
    if geometry == REDSBASE_GEOMETRY:
        windows, truths, names = _redsbase(window_planes, redsbase_folder() if folder is None else folder)
        if windows:
            return np.stack(windows), np.stack(truths), f"redsbase ({', '.join(names)}: centre windows, GT PNGs)"
    from firmware_io.scenes import scene_frames
    from firmware_io.simulator import simulate_frames

    n_planes = (SIMULATED_WINDOWS + 1) * window_planes
    n_frames = -(-n_planes // SIMULATED_PLANES_PER_FRAME)
    frames = list(scene_frames("shapes", geometry, seed=0, n_frames=n_frames))
    packed = np.concatenate(list(simulate_frames(frames, geometry, planes_per_frame=SIMULATED_PLANES_PER_FRAME,
                                                 seed=0, packed=True)))
    keys = [(i + 1) * window_planes for i in range(SIMULATED_WINDOWS)]
    windows = [packed[slice(*window_range(k, window_planes))] for k in keys]
    truths = [np.asarray(frames[k // SIMULATED_PLANES_PER_FRAME], dtype=np.float64) for k in keys]
    return np.stack(windows), np.stack(truths), f"simulated (shapes scene, {len(keys)} windows, scene frames as GT)"


def fitted_psnr(image: np.ndarray, truth: np.ndarray) -> float:
    """PSNR in dB (peak 1) of ``image`` against ``truth`` after the least-squares gain and offset."""
    x = np.asarray(image, dtype=np.float64).ravel()
    y = np.asarray(truth, dtype=np.float64).ravel()
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    mse = float(np.mean((design @ coef - y) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def psnr_against(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of ``image`` against ``reference`` (peak: the reference's range), no fit: how far the values moved."""
    reference = np.asarray(reference, dtype=np.float64)
    mse = float(np.mean((np.asarray(image, dtype=np.float64) - reference) ** 2))
    peak = float(reference.max() - reference.min()) or 1.0
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


__all__ = ["fitted_psnr", "psnr_against", "redsbase_folder", "truth_windows"]
