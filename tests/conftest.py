"""Shared fixtures: the sample data beside the checkout (skipped cleanly where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("SPIKE_EDGE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def redsbase_clips(shared_data: Path) -> list[tuple[Path, Path]]:
    """(spike .dat, ground-truth .png) pairs from ../shared/data/redsbase."""
    folder = shared_data / "redsbase"
    clips = [(dat, dat.with_suffix(".png")) for dat in sorted(folder.glob("*.dat")) if dat.with_suffix(".png").exists()]
    if not clips:
        pytest.skip(f"no .dat/.png pairs in {folder}")
    return clips


@pytest.fixture(scope="session")
def lrn_checkpoint(shared_data: Path) -> Path:
    path = shared_data / "checkpoints" / "LRN_CALTECH.pth"
    if not path.exists():
        pytest.skip(f"official LRN checkpoint not found at {path}")
    return path
