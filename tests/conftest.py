"""Shared fixtures: the sample data beside the checkout (skipped cleanly where absent), the fake
SpikeLink SDK, and daemons."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from daemon_harness import Daemon

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


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory) -> str:
    """The fake SpikeLink SDK built from C for this module (skipped where no C compiler is found)."""
    from firmware_io.fake_spikelink import CompilerNotFoundError, build_fake_spikelink

    try:
        return str(build_fake_spikelink(tmp_path_factory.mktemp("fake_sdk")))
    except CompilerNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def start_daemon(tmp_path):
    """``start_daemon(args, env=None)`` -> a running ``Daemon``; every one still alive is killed at the end."""
    from daemon_harness import Daemon  # imported here: only the end-to-end tests need edge and host

    started: list[Daemon] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(args, tmp_path, env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()
