"""The fp32 reference a network backend is judged against, and how far an output is from it.

- ``EagerReconstructor``: the network in plain eager torch fp32 on a device (no channels_last, no
  CUDA graphs), with the same packed-windows-in, float32-images-out interface as the backends.
- ``strict_fp32()``: TF32 off for convolutions and matmuls while the context is open (a true fp32
  reference on Ampere and later GPUs); the previous settings come back on exit.
- ``agreement(outputs, reference)``: finiteness, max abs / relative error and PSNR of one output
  against the reference; ``within(result, rel_tol)`` is the pass test the GPU tests and the device
  bench share.
- ``agreement_windows``: packed windows of real REDS_BASE spikes (fitted to a geometry) when the
  sample data is present, else of a simulated scene.

Design: these were helpers of ``spike-edge bench device``; the GPU tests use them too, and importing
``edge.cli`` loads every command (the daemon's pyzmq among them), which a GPU machine without pyzmq
cannot import. Here they need numpy, torch and ``firmware_io`` only. Errors are judged relative to
the reference's range rather than as bit equality or a flat absolute tolerance: a CUDA graph and
the same kernels launched one by one may pick other cuDNN algorithms, and the networks' outputs are
unnormalised (their scale depends on the weights).

``strict_fp32`` uses ``torch.backends.{cuda.matmul,cudnn.conv}.fp32_precision = "ieee"`` where torch
has it (2.9 and later; mixing it with the older ``allow_tf32`` flags raises there), and the
``allow_tf32`` flags on older torch.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.reconstruction.backends.base import Device, check_windows
from firmware_io.contract import Geometry

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA_ENV = "SPIKE_EDGE_SHARED_DATA"
AGREEMENT_WINDOWS = 4


def shared_redsbase() -> Path:
    """The REDS_BASE sample folder: ``$SPIKE_EDGE_SHARED_DATA/redsbase``, else ``../shared/data/redsbase``."""
    return Path(os.environ.get(SHARED_DATA_ENV, REPO_ROOT.parent / "shared" / "data")) / "redsbase"


class EagerReconstructor:
    """Plain eager torch fp32 on ``device``: no channels_last, no CUDA graphs; same I/O as the backends."""

    def __init__(self, loaded, geometry: Geometry, device: Device) -> None:
        import torch

        self.method = loaded.method
        self._prepare = loaded.network.prepare_torch
        self.geometry = geometry
        self.window_planes = loaded.window_planes
        self.weights_id = loaded.weights_id
        self._device = torch.device("cuda" if device is Device.CUDA else "cpu")
        self.module = loaded.model.eval().to(self._device, dtype=torch.float32)
        self.backend = f"torch-{device.value}-fp32-eager"

    def reconstruct(self, packed_windows: np.ndarray) -> np.ndarray:
        import torch

        windows = check_windows(packed_windows, self.window_planes, self.geometry)
        packed = torch.from_numpy(np.require(windows, requirements=("C", "W"))).to(self._device)
        with torch.inference_mode():
            return self.module(self._prepare(packed, self.geometry))[:, 0].float().cpu().numpy()


def _fp32_precision_knobs(torch) -> list[Any] | None:
    """The ``fp32_precision`` settings of cuDNN convolutions and CUDA matmuls, or ``None`` on torch < 2.9."""
    conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    matmul = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    if conv is None or matmul is None:
        return None
    return [torch.backends.cudnn.conv, torch.backends.cuda.matmul]


@contextlib.contextmanager
def strict_fp32():
    """TF32 off for convolutions and matmuls while open (see the module docstring); restored on exit."""
    import torch

    knobs = _fp32_precision_knobs(torch)
    if knobs is not None:
        saved = [k.fp32_precision for k in knobs]
        try:
            for k in knobs:
                k.fp32_precision = "ieee"
            yield
        finally:
            for k, value in zip(knobs, saved):
                k.fp32_precision = value
        return
    saved_flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved_flags


def tf32_convolutions() -> bool:
    """Whether cuDNN convolutions may use TF32 now (read the same way ``strict_fp32`` sets it)."""
    import torch

    knobs = _fp32_precision_knobs(torch)
    if knobs is not None:
        return knobs[0].fp32_precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)


# -- agreement -------------------------------------------------------------------------------------


def _psnr(image: np.ndarray, reference: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    mse = float(np.mean((image.astype(np.float64) - reference) ** 2))
    peak = float(reference.max() - reference.min()) or 1.0
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def _rounded(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 2)  # JSON has no inf / nan


def agreement(outputs: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """How far ``outputs`` are from ``reference`` (same shape ``(B, H, W)``).

    ``finite``: every output value is finite (NaN / inf fail everything else); ``max_rel_error``: the
    max abs difference over the reference's range (its max - min, 1 where flat); ``psnr_db`` /
    ``min_psnr_db`` (whole batch / worst window; ``None`` where identical, since JSON has no inf).
    """
    outputs = np.asarray(outputs)
    reference = np.asarray(reference)
    if outputs.shape != reference.shape:
        raise ValueError(f"outputs of shape {outputs.shape} do not match the reference's {reference.shape}")
    finite = bool(np.isfinite(outputs).all())
    scale = float(reference.max() - reference.min()) or 1.0
    result: dict[str, Any] = {"finite": finite, "identical": bool(np.array_equal(outputs, reference))}
    if not finite:
        bad = int((~np.isfinite(outputs)).sum())
        return {**result, "non_finite_values": bad, "max_abs_diff": None, "max_rel_error": None, "psnr_db": None,
                "min_psnr_db": None}
    diff = float(np.abs(outputs.astype(np.float64) - reference).max())
    per_window = [_psnr(o, r) for o, r in zip(outputs, reference)]
    return {**result, "max_abs_diff": diff, "max_rel_error": diff / scale,
            "psnr_db": _rounded(_psnr(outputs, reference)), "min_psnr_db": _rounded(min(per_window))}


def within(result: dict[str, Any], rel_tol: float) -> bool:
    """An ``agreement`` result passes: finite output and max relative error at most ``rel_tol``."""
    return bool(result.get("finite")) and result.get("max_rel_error") is not None and result["max_rel_error"] <= rel_tol


# -- windows to compare on -------------------------------------------------------------------------


def fit_planes(planes: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Upright planes ``(T, h, w)`` centre-cropped / wrap-padded to ``geometry``."""
    out = planes
    for axis, want in ((1, geometry.height), (2, geometry.width)):
        have = out.shape[axis]
        if have > want:
            start = (have - want) // 2
            out = np.take(out, np.arange(start, start + want), axis=axis)
        elif have < want:
            pad = [(0, 0)] * 3
            pad[axis] = ((want - have) // 2, want - have - (want - have) // 2)
            out = np.pad(out, pad, mode="wrap")
    return out


def agreement_windows(window_planes: int, geometry: Geometry, n: int = AGREEMENT_WINDOWS,
                      folder: Path | None = None) -> tuple[np.ndarray, str]:
    """``n`` packed windows ``(n, T, plane_bytes)`` of real (REDS_BASE) or simulated spikes, and their source."""
    from firmware_io.bitpack import pack_planes

    folder = shared_redsbase() if folder is None else folder
    dats = sorted(folder.glob("*.dat")) if folder.is_dir() else []
    windows: list[np.ndarray] = []
    used: list[str] = []
    if dats:
        from firmware_io.dat import DatReader

        per_clip = max(1, -(-n // len(dats)))
        for dat in dats:
            with DatReader(dat) as reader:
                total = len(reader)
                if total < window_planes:
                    continue
                for start in np.linspace(0, total - window_planes, per_clip).astype(int):
                    planes = np.asarray(reader.unpacked(int(start), int(start) + window_planes))
                    windows.append(pack_planes(fit_planes(planes, geometry)))
                used.append(dat.stem)
                source_geometry = reader.geometry
            if len(windows) >= n:
                break
        if windows:
            fit = "" if source_geometry == geometry else f", fitted from {source_geometry} to {geometry}"
            return np.stack(windows[:n]), f"redsbase ({', '.join(used)}; {len(windows[:n])} windows{fit})"
    from firmware_io.scenes import scene_frames
    from firmware_io.simulator import simulate_frames

    planes_per_frame = 10
    need = n * window_planes
    frames = scene_frames("shapes", geometry, seed=0, n_frames=-(-need // planes_per_frame))
    chunks = list(simulate_frames(frames, geometry, planes_per_frame=planes_per_frame, seed=0, packed=True))
    packed = np.concatenate(chunks)[:need]
    return packed.reshape(n, window_planes, geometry.plane_bytes), f"simulated (shapes scene; {n} windows)"


__all__ = ["AGREEMENT_WINDOWS", "EagerReconstructor", "agreement", "agreement_windows", "fit_planes",
           "shared_redsbase", "strict_fp32", "tf32_convolutions", "within"]
