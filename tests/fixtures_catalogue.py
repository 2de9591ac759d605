"""The catalogue of sample files the tests read from the shared data folder: for each file its path
relative to that folder, what kind of file it is, its geometry and its sha256.

The folder is ``$SPIKE_EDGE_SHARED_DATA``, else ``../shared/data`` beside the checkout; it is never
copied into the repository. ``tests/conftest.py`` turns the catalogue into fixtures: the digests are
checked once per session, a missing folder skips the tests that need it, and a file whose bytes
differ from the catalogue fails them (a changed sample would silently change what they measure).
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

SHARED_DATA_ENV = "SPIKE_EDGE_SHARED_DATA"
SHARED_DATA = Path(os.environ.get(SHARED_DATA_ENV, Path(__file__).resolve().parents[1].parent / "shared" / "data"))


class SampleKind(enum.Enum):
    SPIKES_DAT = "spike recording (.dat, camera order, no head columns)"
    GROUND_TRUTH_PNG = "ground-truth image (.png, 8-bit grey)"
    CHECKPOINT = "network checkpoint (torch state_dict)"


@dataclass(frozen=True)
class SampleFile:
    """One catalogued file; ``height``/``width`` for images and recordings, ``planes`` for recordings."""

    relpath: str
    kind: SampleKind
    sha256: str
    height: int | None = None
    width: int | None = None
    planes: int | None = None

    def path(self, root: Path = SHARED_DATA) -> Path:
        return root / self.relpath


@dataclass(frozen=True)
class ClipEntry:
    """A spike recording and the ground-truth image of its centre plane."""

    dat: SampleFile
    png: SampleFile


REDSBASE_SHAPE = (250, 400)  # (height, width) of every REDS-base clip
REDSBASE_PLANES = 301


def _redsbase_clip(name: str, dat_sha256: str, png_sha256: str) -> ClipEntry:
    return ClipEntry(
        SampleFile(f"redsbase/{name}.dat", SampleKind.SPIKES_DAT, dat_sha256, *REDSBASE_SHAPE, REDSBASE_PLANES),
        SampleFile(f"redsbase/{name}.png", SampleKind.GROUND_TRUTH_PNG, png_sha256, *REDSBASE_SHAPE),
    )


REDSBASE_CLIPS = (
    _redsbase_clip("203_part2_key_id151",
                   "6047a72e66cfbdcc672a4567dceef20d561bf94c2933938f9518715562d8cb74",
                   "3aa065683a14208a42bcb2e955db36a8847b19d6d8c1bba054f2c57db62cb55a"),
    _redsbase_clip("203_part3_key_id151",
                   "318f6733a5f32a3f8ffad450df7599dc6e71ba5353a405ca3f4cbc650a3b0084",
                   "1ea51ec9294b7ae2728d18f734a8f2d1cd56d3abf7ac4add15a2c69dc25f45ec"),
)
LRN_CHECKPOINT = SampleFile("checkpoints/LRN_CALTECH.pth", SampleKind.CHECKPOINT,
                            "68c20592c476affd190c8c5f717bb03f590586e6d6bfbff8a89d1d32b14a60b2")

CATALOGUE: tuple[SampleFile, ...] = (*(f for clip in REDSBASE_CLIPS for f in (clip.dat, clip.png)), LRN_CHECKPOINT)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(root: Path = SHARED_DATA) -> tuple[dict[str, Path], list[str]]:
    """``(present, problems)``: the catalogued files found under ``root`` whose digest matches, by
    ``relpath``, and one message per file present with other bytes. Absent files are in neither."""
    present: dict[str, Path] = {}
    problems: list[str] = []
    for sample in CATALOGUE:
        path = sample.path(root)
        if not path.is_file():
            continue
        actual = file_sha256(path)
        if actual != sample.sha256:
            problems.append(f"{path}: sha256 {actual}, the catalogue says {sample.sha256} ({sample.kind.value})")
        else:
            present[sample.relpath] = path
    return present, problems
