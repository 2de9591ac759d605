"""Choosing a reconstructor: ``make_reconstructor(method, geometry, backend=..., ...)``.

Classical methods run on numpy. The networks (LRN, STIR) run on torch, ONNX Runtime, TensorRT or
as AOTInductor packages (the last two: prebuilt engines only); ``auto`` picks the fastest one
installed and the returned object's ``backend`` says which. What each backend needs and how it is
chosen, built, loaded from an engine directory or exported is the table in ``registry``; this
package's front door re-exports it.
"""

from __future__ import annotations

from pathlib import Path

from edge.reconstruction.backends.base import BackendName, BackendUnavailable, Device, Reconstructor
from edge.reconstruction.backends.registry import (
    available_backends,
    build_backend,
    build_classical,
    check_device,
    export_engine,
    load_engine_dir,
)
from edge.reconstruction.engines import read_manifest
from edge.reconstruction.methods import Method, method_spec
from edge.reconstruction.models import Precision, PrecisionSetting
from edge.reconstruction.networks import load_network
from firmware_io.contract import Geometry

__all__ = ["BackendName", "BackendUnavailable", "Device", "Reconstructor", "available_backends", "build_backend",
           "check_device", "export_engine", "load_engine_dir", "make_reconstructor"]


def make_reconstructor(
    method: str | Method,
    geometry: Geometry,
    *,
    backend: str | BackendName = BackendName.AUTO,
    device: str | Device = Device.CPU,
    window_planes: int | None = None,  # classical: the window; networks: must match the weights if given
    checkpoint: str | Path | None = None,
    engine: str | Path | None = None,
    precision: str | Precision | PrecisionSetting | None = None,  # networks from weights; None: the backend's default
) -> Reconstructor:
    """A reconstructor for ``method``: classical on numpy; a network from ``engine`` (a directory written by
    ``spike-train export``, in the precision it was written in) or from ``checkpoint`` / the packaged default
    weights on ``backend`` in ``precision`` (``auto``: ``edge.reconstruction.backends.precision``)."""
    spec = method_spec(method)
    backend = BackendName(backend)
    if not spec.learned:
        return build_classical(spec.method, geometry, window_planes or spec.window_planes, backend)
    device = Device(device)
    if engine is not None:
        if checkpoint is not None:
            raise ValueError("give --checkpoint or --engine, not both (an engine directory carries its own weights)")
        asked = None if precision is None else PrecisionSetting(precision)
        written = read_manifest(engine)["precision"]
        if asked not in (None, PrecisionSetting.AUTO, PrecisionSetting(written)):
            raise ValueError(f"the engine directory {engine} is {written}, not {asked.value}: an engine runs in the "
                             "precision it was exported in (drop --precision, or export another)")
        recon = load_engine_dir(engine, geometry, model=spec.method, backend=backend, device=device)
    else:
        recon = build_backend(load_network(spec.method, checkpoint), geometry, backend, device, precision=precision)
    if window_planes is not None and window_planes != recon.window_planes:
        raise ValueError(f"these {spec.method.value} weights take a fixed {recon.window_planes}-plane window, "
                         f"not {window_planes}")
    return recon
