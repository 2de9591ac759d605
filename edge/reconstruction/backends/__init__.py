"""Choosing a reconstructor: ``make_reconstructor(method, backend, ...)``.

Classical methods always run on numpy. The networks (LRN, STIR) run on torch, ONNX Runtime or
TensorRT; ``auto`` picks the fastest one available and the returned object's ``backend`` says which.
"""

from __future__ import annotations

from pathlib import Path

from edge.reconstruction.backends.base import BackendName, BackendUnavailable, Device, Reconstructor
from edge.reconstruction.backends.classical import ClassicalReconstructor
from edge.reconstruction.methods import Method, method_spec
from firmware_io.contract import Geometry

__all__ = ["BackendName", "BackendUnavailable", "Device", "Reconstructor", "make_reconstructor"]


def make_reconstructor(
    method: str | Method,
    geometry: Geometry,
    *,
    backend: str | BackendName = BackendName.AUTO,
    device: str | Device = Device.CPU,
    window_planes: int | None = None,  # classical: the window; networks: must match the weights if given
    checkpoint: str | Path | None = None,
    engine: str | Path | None = None,
) -> Reconstructor:
    spec = method_spec(method)
    backend = BackendName(backend)
    if not spec.learned:
        if backend not in (BackendName.AUTO, BackendName.NUMPY):
            raise BackendUnavailable(f"{spec.method.value} runs on the numpy backend only, not {backend.value}")
        return ClassicalReconstructor(spec.method, geometry, window_planes or spec.window_planes)
    from edge.reconstruction.backends.networks import make_network_reconstructor  # torch is optional

    recon = make_network_reconstructor(spec.method, geometry, backend=backend, device=Device(device),
                                       checkpoint=checkpoint, engine=engine)
    if window_planes is not None and window_planes != recon.window_planes:
        raise ValueError(f"these {spec.method.value} weights take a fixed {recon.window_planes}-plane window, "
                         f"not {window_planes}")
    return recon
