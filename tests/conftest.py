"""Shared fixtures: the sample data beside the checkout, as ``tests/fixtures_catalogue.py`` lists it
(digests checked once per session; skipped cleanly where absent), the fake SpikeLink SDK, and daemons.

Collection on a machine without pyzmq (the GPU machine: ``pytest -m gpu``, ``docs/gpu-check.md``):
a test module or folder that cannot be imported because pyzmq is absent is reported as skipped with
that reason instead of failing the whole collection, so the tests that need no sockets (the GPU
tests among them) still run. With pyzmq present nothing changes: any import error fails as before.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fixtures_catalogue import (CATALOGUE, LRN_CHECKPOINT, REDSBASE_CLIPS, SHARED_DATA, SHARED_DATA_ENV, SampleFile,
                                verify)

if TYPE_CHECKING:
    from daemon_harness import Daemon


def sample_data_line() -> str:
    """Where the sample data was looked for and how much of it is there."""
    if not SHARED_DATA.is_dir():
        return (f"sample data: not found at {SHARED_DATA}; the tests that need it are skipped "
                f"(set {SHARED_DATA_ENV} to the folder holding it)")
    missing = [s.relpath for s in CATALOGUE if not s.path().is_file()]
    note = f"; missing {', '.join(missing)} (their tests are skipped)" if missing else ""
    return f"sample data: {SHARED_DATA} ({len(CATALOGUE) - len(missing)} of {len(CATALOGUE)} catalogued files{note})"


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return importlib.util.find_spec(module) is not None


# core dependencies a GPU machine may lack; a module that needs one is skipped there, not an error
ABSENT_HERE = tuple(m for m in ("zmq",) if not _importable(m))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A collection error caused by a module in ``ABSENT_HERE`` becomes a skip naming it (module docstring)."""
    outcome = yield
    report = outcome.get_result()
    if not (ABSENT_HERE and report.failed):
        return
    text = str(report.longrepr)
    missing = [m for m in ABSENT_HERE if "ImportError" in text and (f"'{m}'" in text or f"{m}/__init__" in text)]
    if missing:
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), 0, f"Skipped: needs {', '.join(missing)}, which is not importable here")


def pytest_terminal_summary(terminalreporter) -> None:
    """Say at the end of every run (``-q`` included) where the sample data was looked for."""
    terminalreporter.write_line(sample_data_line())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED_DATA} (set {SHARED_DATA_ENV} to the folder holding it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def verified_samples(shared_data: Path) -> dict[str, Path]:
    """The catalogued files present under ``shared_data`` (by relative path), each checked against its
    sha256 once per session; a file with other bytes fails every test that uses the samples."""
    present, problems = verify(shared_data)
    if problems:
        pytest.fail("shared sample data differs from tests/fixtures_catalogue.py:\n" + "\n".join(problems), pytrace=False)
    return present


def _sample(samples: dict[str, Path], sample: SampleFile) -> Path:
    if sample.relpath not in samples:
        pytest.skip(f"{sample.kind.value} not found at {sample.path()} (set {SHARED_DATA_ENV} to the folder holding it)")
    return samples[sample.relpath]


@pytest.fixture(scope="session")
def redsbase_clips(verified_samples: dict[str, Path]) -> list[tuple[Path, Path]]:
    """(spike .dat, ground-truth .png) pairs of ``fixtures_catalogue.REDSBASE_CLIPS`` (geometry: ``REDSBASE_SHAPE``)."""
    return [(_sample(verified_samples, clip.dat), _sample(verified_samples, clip.png)) for clip in REDSBASE_CLIPS]


@pytest.fixture(scope="session")
def lrn_checkpoint(verified_samples: dict[str, Path]) -> Path:
    return _sample(verified_samples, LRN_CHECKPOINT)


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory) -> str:
    """The fake SpikeLink SDK built from C for this module (skipped where no C compiler is found)."""
    from firmware_io.fake_spikelink import CompilerNotFoundError, build_fake_spikelink

    try:
        return str(build_fake_spikelink(tmp_path_factory.mktemp("fake_sdk")))
    except CompilerNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def control(fake_lib):
    """The fake SDK's control block (fail, vanish, stall, ...), reset before and after the test."""
    from firmware_io.fake_spikelink import FakeControl

    fc = FakeControl(fake_lib)
    fc.reset()
    yield fc
    fc.reset()


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
