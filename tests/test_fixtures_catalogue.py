"""The sample-data catalogue (``tests/fixtures_catalogue.py``) and its fixtures: the catalogued
geometry matches the files, a missing folder skips naming it, a file with other bytes fails loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_catalogue import CATALOGUE, LRN_CHECKPOINT, REDSBASE_CLIPS, SHARED_DATA_ENV, SampleKind, verify

REPO = Path(__file__).resolve().parents[1]

PROBE = '''
def test_checkpoint(lrn_checkpoint):
    assert lrn_checkpoint.is_file()


def test_clips(redsbase_clips):
    assert redsbase_clips
'''


def test_catalogued_geometry_matches_the_files(redsbase_clips, verified_samples):
    from PIL import Image

    assert len(redsbase_clips) == len(REDSBASE_CLIPS)
    for clip in REDSBASE_CLIPS:
        dat, png = verified_samples[clip.dat.relpath], verified_samples[clip.png.relpath]
        assert dat.stat().st_size == clip.dat.planes * clip.dat.height * clip.dat.width // 8
        with Image.open(png) as image:
            assert (image.mode, image.size) == ("L", (clip.png.width, clip.png.height))
    assert {s.kind for s in CATALOGUE} == set(SampleKind)
    assert len({s.relpath for s in CATALOGUE}) == len(CATALOGUE)


def test_verify_reports_other_bytes_and_ignores_absent_files(tmp_path):
    bad = LRN_CHECKPOINT.path(tmp_path)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the checkpoint")
    present, problems = verify(tmp_path)
    assert present == {}
    assert len(problems) == 1 and str(bad) in problems[0] and LRN_CHECKPOINT.sha256 in problems[0]


def _run_probe(tmp_path: Path, data: Path) -> subprocess.CompletedProcess:
    """pytest on two tests that need the samples, with ``tests/conftest.py`` loaded as a plugin."""
    probe = tmp_path / "probe" / "test_probe.py"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text(PROBE)
    path = [str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, SHARED_DATA_ENV: str(data), "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsE", "-p", "conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(probe.parent), str(probe)],
                          cwd=probe.parent, env=env, capture_output=True, text=True, timeout=120)


def test_missing_folder_skips_naming_it_and_the_variable(tmp_path):
    absent = tmp_path / "no-such-folder"
    result = _run_probe(tmp_path, absent)
    assert result.returncode == 0 and "2 skipped" in result.stdout, result.stdout + result.stderr
    assert str(absent) in result.stdout and SHARED_DATA_ENV in result.stdout


def test_every_run_ends_saying_where_the_data_was_looked_for(tmp_path):
    absent = tmp_path / "no-such-folder"
    lines = _run_probe(tmp_path, absent).stdout.splitlines()
    assert (f"sample data: not found at {absent}; the tests that need it are skipped "
            f"(set {SHARED_DATA_ENV} to the folder holding it)") in lines
    partial = tmp_path / "partial"
    LRN_CHECKPOINT.path(partial).parent.mkdir(parents=True)
    LRN_CHECKPOINT.path(partial).write_bytes(b"placeholder")
    missing = ", ".join(s.relpath for s in CATALOGUE if s is not LRN_CHECKPOINT)
    assert (f"sample data: {partial} (1 of {len(CATALOGUE)} catalogued files; missing {missing} "
            "(their tests are skipped))") in _run_probe(tmp_path, partial).stdout.splitlines()


def test_other_bytes_fail_every_test_that_uses_the_samples(tmp_path):
    data = tmp_path / "data"
    bad = LRN_CHECKPOINT.path(data)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the checkpoint")
    result = _run_probe(tmp_path, data)
    assert result.returncode == 1 and "2 errors" in result.stdout, result.stdout + result.stderr
    assert str(bad) in result.stdout and LRN_CHECKPOINT.sha256 in result.stdout


@pytest.mark.parametrize("sample", CATALOGUE, ids=lambda s: s.relpath)
def test_every_entry_is_complete(sample):
    assert len(sample.sha256) == 64 and set(sample.sha256) <= set("0123456789abcdef")
    if sample.kind is not SampleKind.CHECKPOINT:
        assert sample.height and sample.width
    assert (sample.planes is not None) == (sample.kind is SampleKind.SPIKES_DAT)
