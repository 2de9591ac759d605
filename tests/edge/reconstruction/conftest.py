"""Fixtures shared by the reconstruction tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def random_lrn(tmp_path_factory):
    """An LRN state_dict of seeded random weights, saved as a checkpoint file."""
    torch = pytest.importorskip("torch", reason="the networks need torch (pip install 'spike-edge[torch]')")
    from edge.reconstruction.models.lrn import LRN

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("w") / "lrn_random.pt"
    torch.save(LRN().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def lrn_engine(random_lrn, tmp_path_factory):
    """``lrn_engine(fmt, geometry, precision="fp32")``: the engine directory of ``random_lrn`` in format ``fmt``,
    exported once per session and shared (an AOTInductor package compiles for tens of seconds): copy it
    before changing it."""
    from edge.reconstruction.backends import export_engine
    from edge.reconstruction.models import ExportFormat, Precision

    root = tmp_path_factory.mktemp("engines")
    built = {}

    def build(fmt, geometry, precision="fp32"):
        key = (ExportFormat(fmt).value, geometry, Precision(precision).value)
        if key not in built:
            out = root / f"{len(built)}-{key[0]}-{geometry.height}x{geometry.width}-{key[2]}"
            built[key] = export_engine("lrn", random_lrn, fmt, geometry, out, precision=precision)
        return built[key]

    return build
