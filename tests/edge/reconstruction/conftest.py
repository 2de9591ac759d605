"""Fixtures shared by the reconstruction tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def random_lrn(tmp_path_factory):
    """An LRN state_dict of seeded random weights, saved as a checkpoint file."""
    torch = pytest.importorskip("torch", reason="the networks need torch (pip install 'spike-edge[torch]')")
    from edge.reconstruction.models.lrn import LRN

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("w") / "lrn_random.pt"
    torch.save(LRN().state_dict(), path)
    return path
