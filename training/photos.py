"""Real photographs as training scenes: found where Debian packages install them, made grey, split, digested.

``spike-train data`` calls ``collect``: it looks in the folders that desktop wallpaper packages install
(``PHOTO_SOURCES``: gnome-backgrounds, mate-backgrounds, ukui-wallpapers, plasma-workspace-wallpapers,
desktop-base ...) and scikit-image's bundled images when that package is installed, keeps each
picture once (the largest file of a folder of resolutions; no screenshots, no vector art), converts
it to grey (ITU-R 601 luma, PIL's ``L``), scales it so the short side is ``short_side_px`` (REDS is
720 px high), and writes ``<digest>.png`` files plus ``manifest.json`` into the output folder: for
each photo its source path, package folder, the SHA-256 of the source file and of the grey PNG, its
size, and its split. The split is a pure function of the source digest (``val_fraction`` of the
digest space), so adding photos never moves an old photo between train and validation.

The photographs are never committed to the repository: the output folder defaults to
``runs/photos`` (ignored by git) and CI trains nothing on them (the tests use a tiny folder of
procedural images written by the test itself).

``load_photo_set(folder, split)`` reads the grey images back (bounded: ``MAX_PHOTOS`` files, each
checked against its manifest digest) for ``training.reds_like``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from firmware_io.atomic import atomic_path

PHOTO_SOURCES: tuple[Path, ...] = (
    Path("/usr/share/backgrounds"),  # gnome-backgrounds, mate-backgrounds, ukui-wallpapers, desktop-base
    Path("/usr/share/wallpapers"),  # plasma-workspace-wallpapers
    Path("/usr/share/lomiri/wallpapers"),  # lomiri-wallpapers
)
"""Folders where Debian's wallpaper packages install their pictures (``make photos`` installs them)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SKIP_NAMES = ("screenshot", "thumbnail", "preview")
MIN_SOURCE_SHORT_SIDE_PX = 300
MAX_PHOTOS = 2_000
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PhotoRecord:
    source: str  # the file it came from
    collection: str  # its package folder, e.g. "backgrounds/mate"
    source_sha256: str
    sha256: str  # of the grey PNG written
    file: str  # the grey PNG's name in the set folder
    height_px: int
    width_px: int
    split: str  # "train" or "val"


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_of(source_sha256: str, val_fraction: float) -> str:
    """``"val"`` for the first ``val_fraction`` of the digest space, else ``"train"`` (stable under additions)."""
    return "val" if int(source_sha256[:8], 16) / 2**32 < val_fraction else "train"


def _skimage_folder() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "data"
    return folder if folder.is_dir() else None


def default_sources() -> list[Path]:
    """The photo folders present on this machine."""
    folders = [p for p in PHOTO_SOURCES if p.is_dir()]
    skimage = _skimage_folder()
    if skimage is not None:
        folders.append(skimage)
    return folders


def picture_key(path: Path) -> str:
    """One key per picture, whatever its resolution or light/dark variant: plasma's
    ``<Name>/contents/images/<W>x<H>.jpg`` is its ``<Name>``; ``Elephants_3840x2160.jpg`` and
    ``adwaita-d.webp`` are ``Elephants`` and ``adwaita`` of their folder."""
    if path.parent.name in ("images", "images_dark") and re.fullmatch(r"\d+x\d+", path.stem):
        return str(path.parent.parent.parent)
    return str(path.parent / re.sub(r"([_-]\d+x\d+|-[ld])$", "", path.stem))


def find_candidates(sources: Iterable[Path]) -> list[Path]:
    """Picture files under ``sources``: the largest file of each picture (``picture_key``), no screenshots."""
    chosen: dict[str, Path] = {}
    for root in sources:
        for path in sorted(Path(root).rglob("*")):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if any(word in path.stem.lower() for word in SKIP_NAMES):
                continue
            key = picture_key(path)
            if key not in chosen or path.stat().st_size > chosen[key].stat().st_size:
                chosen[key] = path
    return [chosen[key] for key in sorted(chosen)]


def grey_photo(path: Path, short_side_px: int) -> np.ndarray | None:
    """The picture as grey uint8 scaled down to ``short_side_px`` on its short side (never up), or None when it is too
    small or nearly flat (vector-like art with few grey levels is no use as a scene)."""
    with Image.open(path) as image:
        image.load()
        if min(image.size) < MIN_SOURCE_SHORT_SIDE_PX:
            return None
        grey = image.convert("L")
    scale = min(1.0, short_side_px / min(grey.size))
    grey = grey.resize((max(1, round(grey.size[0] * scale)), max(1, round(grey.size[1] * scale))),
                       Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.uint8)
    if pixels.std() < 12 or len(np.unique(pixels)) < 64:
        return None
    return pixels


def collect(out: str | os.PathLike, *, sources: Iterable[Path] | None = None, short_side_px: int = 720,
            val_fraction: float = 0.15, progress: Callable[[str], None] | None = None) -> list[PhotoRecord]:
    """Write the grey photo set and its manifest into ``out``; return its records (see module docstring)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 64 <= short_side_px <= 4096:
        raise ValueError(f"short_side_px must be in [64, 4096], got {short_side_px}")
    folders = list(default_sources() if sources is None else sources)
    if not folders:
        raise FileNotFoundError(
            "no photo collections are installed here: install Debian's wallpaper packages "
            "(`make photos`, or apt-get install gnome-backgrounds mate-backgrounds ukui-wallpapers "
            "plasma-workspace-wallpapers) or pass --source DIR")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[PhotoRecord] = []
    seen: set[str] = set()
    candidates = find_candidates(folders)[:MAX_PHOTOS * 2]
    for n, path in enumerate(candidates, 1):
        source_sha = sha256_of(path)
        if source_sha in seen:
            continue
        seen.add(source_sha)
        try:
            pixels = grey_photo(path, short_side_px)
        except (OSError, ValueError) as exc:  # unreadable or unsupported picture: skip it, say so
            if progress:
                progress(f"skip {path}: {exc}")
            continue
        if pixels is None:
            continue
        name = f"{source_sha[:16]}.png"
        with atomic_path(out / name) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
        root = next((f for f in folders if path.is_relative_to(f)), path.parent)
        collection = str(Path(root.name) / path.relative_to(root).parts[0]) if path.parent != root else root.name
        records.append(PhotoRecord(str(path), collection, source_sha, sha256_of(out / name), name,
                                   int(pixels.shape[0]), int(pixels.shape[1]), split_of(source_sha, val_fraction)))
        if progress:
            progress(f"[{n}/{len(candidates)}] {path} -> {name} {pixels.shape[1]}x{pixels.shape[0]}")
        if len(records) >= MAX_PHOTOS:
            break
    if not records:
        raise FileNotFoundError(f"no usable photographs under {', '.join(map(str, folders))}")
    manifest = {"version": MANIFEST_VERSION, "short_side_px": short_side_px, "val_fraction": val_fraction,
                "sources": [str(f) for f in folders], "photos": [r.__dict__ for r in records]}
    with atomic_path(out / MANIFEST) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1) + "\n")
    return records


def read_manifest(folder: str | os.PathLike) -> list[PhotoRecord]:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no photo set in {folder} (no {MANIFEST}): run `spike-train data --out {folder}`")
    data = json.loads(path.read_text())
    if data.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path} is photo-set version {data.get('version')!r}; this code reads {MANIFEST_VERSION}")
    return [PhotoRecord(**row) for row in data["photos"]]


def load_photo_set(folder: str | os.PathLike, split: str) -> list[np.ndarray]:
    """The grey photos (uint8 ``(H, W)``) of one split, each checked against its manifest digest."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    records = [r for r in read_manifest(folder) if r.split == split][:MAX_PHOTOS]
    if not records:
        raise FileNotFoundError(f"the photo set in {folder} has no {split} photos")
    photos = []
    for record in records:
        path = Path(folder) / record.file
        if sha256_of(path) != record.sha256:
            raise ValueError(f"{path} does not match its manifest digest: re-run `spike-train data --out {folder}`")
        with Image.open(path) as image:
            photos.append(np.asarray(image.convert("L"), dtype=np.uint8))
    return photos


__all__ = ["PHOTO_SOURCES", "PhotoRecord", "collect", "default_sources", "find_candidates", "grey_photo",
           "load_photo_set", "read_manifest", "split_of"]
