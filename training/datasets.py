"""Training and evaluation data: file readers, the synthetic set and the output-scale convention.

Output scale (the one place it is written down)
-----------------------------------------------
The networks output a *firing-rate image*: expected spikes per plane, the scale of TFP. Spike-Zoo's
REDS_BASE (and our simulator's scenes) fire at ``RATE_PER_INTENSITY = 0.6`` spikes per plane for a
white pixel, so the training target of REDS-like data is ``intensity_to_rate(gt_png / 255)`` and an
output is compared with ground truth as ``rate_to_intensity(output)`` (divided by 0.6, clipped to
[0, 1]).

Samples
-------
Every dataset yields ``SpikeSample``: ``planes`` uint8 0/1 ``(T, H, W)`` upright, ``T`` the model's
window with the ground-truth plane at index ``T // 2`` (``edge.reconstruction.windows`` contract); ``target``
float32 ``(H, W)`` rate image at that plane (``None`` where there is none, e.g. UHSR); ``label``
(UHSR class index or -1) and ``name``.

Readers
-------
- ``PairedSpikeDataset``: REDS_BASE (``spike/<name>.dat`` beside ``gt/<name>.png``, or the flat
  ``<name>.dat`` beside ``<name>.png``) and SREDS-style folders (the same pairing under nested
  sub-folders, any geometry: each ``.dat`` takes its geometry from its PNG). The key plane is the
  recording's centre (``edge.reconstruction.windows.default_key``).
- ``UHSRDataset``: UHSR ``.npz`` samples (spikes + class label); files numbered 0-4999 are the train
  split, the rest the test split.
- ``SyntheticSpikeDataset``: made on the fly from natural-like procedural images (no downloads) and,
  for a ``scene_fraction`` of samples, the built-in scenes of ``firmware_io.scenes``; random global motion plus an
  independently moving foreground object, random crops and flips/rotations, optional low light (low
  gain, fixed-pattern gain noise, spurious spikes). Spikes come from ``firmware_io.simulator``.

Design: each item of the synthetic set is a pure function of ``(seed, index)`` so a training run is
reproducible and resumable without saving sampler state, and validation sets are just other seeds.
Augmentation for file datasets draws from a generator the caller passes (see ``training.fit``),
for the same reason. Alternatives considered: torch ``DataLoader`` shuffling with saved sampler
state (fragile across world sizes) and pre-rendered synthetic sets on disk (slow to change, big).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from edge.reconstruction.windows import check_window_fits, default_key
from firmware_io.contract import FormatError, Geometry
from firmware_io.dat import DatReader
from firmware_io.npz import NpzReader

# ------------------------------------------------------------------------------------------ scale

RATE_PER_INTENSITY = 0.6
"""Spikes per plane of a white pixel in REDS_BASE and in our simulated scenes."""


def intensity_to_rate(intensity):
    """Intensity in [0, 1] -> firing-rate image (the networks' output scale). numpy or torch."""
    return intensity * RATE_PER_INTENSITY


def rate_to_intensity(rate):
    """Firing-rate image (a network's or TFP's output) -> intensity clipped to [0, 1]. numpy or torch."""
    return (rate / RATE_PER_INTENSITY).clip(0.0, 1.0)


# ----------------------------------------------------------------------------------------- sample


@dataclass
class SpikeSample:
    planes: np.ndarray  # uint8 (T, H, W) 0/1 upright; ground truth at plane T // 2
    target: np.ndarray | None  # float32 (H, W) rate image, or None
    label: int = -1
    name: str = ""


def augment(sample: SpikeSample, rng: np.random.Generator, crop: int | None, flips: bool = True) -> SpikeSample:
    """Random ``crop x crop`` window, flips and 90-degree rotations applied alike to planes and target."""
    planes, target = sample.planes, sample.target
    height, width = planes.shape[1:]
    if crop is not None:
        if crop > height or crop > width:
            raise ValueError(f"crop {crop} does not fit {sample.name!r} of {height}x{width}")
        y = int(rng.integers(0, height - crop + 1))
        x = int(rng.integers(0, width - crop + 1))
        planes = planes[:, y : y + crop, x : x + crop]
        target = None if target is None else target[y : y + crop, x : x + crop]
    if flips:
        if rng.random() < 0.5:
            planes, target = planes[:, :, ::-1], None if target is None else target[:, ::-1]
        if rng.random() < 0.5:
            planes, target = planes[:, ::-1, :], None if target is None else target[::-1, :]
        if planes.shape[1] == planes.shape[2] and rng.random() < 0.5:
            planes, target = planes.transpose(0, 2, 1), None if target is None else target.T
    return SpikeSample(
        np.ascontiguousarray(planes), None if target is None else np.ascontiguousarray(target, dtype=np.float32),
        sample.label, sample.name,
    )


# --------------------------------------------------------------------------- REDS_BASE and SREDS

SPIKE_DIRS = ("spike", "spikes")
GT_DIRS = ("gt", "GT", "gts")


def read_gt_png(path: str | os.PathLike) -> np.ndarray:
    """Grey ground truth PNG -> intensity float32 (H, W) in [0, 1]."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no ground-truth image {path}")
    with Image.open(path) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float32)
    return grey / 255.0


def find_pairs(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(spike .dat, ground-truth .png) pairs of a REDS_BASE / SREDS folder, sorted.

    Layouts: ``spike/**/<name>.dat`` with ``gt/**/<name>.png`` at the same relative path, or the
    flat ``<name>.dat`` beside ``<name>.png`` (searched recursively).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    spike_dir = next((root / d for d in SPIKE_DIRS if (root / d).is_dir()), None)
    gt_dir = next((root / d for d in GT_DIRS if (root / d).is_dir()), None)
    pairs: list[tuple[Path, Path]] = []
    if spike_dir is not None and gt_dir is not None:
        for dat in sorted(spike_dir.rglob("*.dat")):
            png = (gt_dir / dat.relative_to(spike_dir)).with_suffix(".png")
            if png.exists():
                pairs.append((dat, png))
    else:
        for dat in sorted(root.rglob("*.dat")):
            png = dat.with_suffix(".png")
            if png.exists():
                pairs.append((dat, png))
    if not pairs:
        raise FileNotFoundError(
            f"no spike/ground-truth pairs in {root}: expected spike/<name>.dat with gt/<name>.png, "
            f"or <name>.dat beside <name>.png"
        )
    return pairs


class PairedSpikeDataset:
    """REDS_BASE / SREDS-style pairs; item ``i`` is the model window around the clip's centre plane."""

    def __init__(self, root: str | os.PathLike, window_planes: int) -> None:
        self.root = Path(root)
        self.window_planes = window_planes
        self.pairs = find_pairs(root)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> SpikeSample:
        dat, png = self.pairs[index]
        intensity = read_gt_png(png)
        geometry = Geometry(*intensity.shape)
        with DatReader(dat, geometry) as reader:
            key = default_key(reader.n_planes)
            start, stop = check_window_fits(key, self.window_planes, reader.n_planes)
            planes = reader.unpacked(start, stop).copy()
        return SpikeSample(planes, intensity_to_rate(intensity).astype(np.float32), -1, dat.stem)

    def __getitem__(self, index: int) -> SpikeSample:
        return self.load(index)


# ------------------------------------------------------------------------------------------ UHSR

UHSR_TRAIN_FILES = 5000  # files numbered 0..4999 are the train split


def _file_number(path: Path) -> int:
    match = re.search(r"(\d+)$", path.stem) or re.search(r"(\d+)", path.stem)
    if match is None:
        raise FormatError(f"UHSR file name {path.name!r} has no sample number; expected e.g. '123.npz'")
    return int(match.group(1))


def class_name_of(label_name: str) -> str:
    """``'4144_helicopter.jpg'`` -> ``'helicopter'`` (underscores to spaces)."""
    stem = Path(label_name).stem
    stem = re.sub(r"^\d+_", "", stem)
    return stem.replace("_", " ").strip()


class UHSRDataset:
    """UHSR ``.npz`` samples of one split (``train``: files 0-4999; ``test``: the rest)."""

    def __init__(self, root: str | os.PathLike, split: str = "train", window_planes: int | None = None) -> None:
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"UHSR folder {self.root} does not exist")
        files = sorted(self.root.rglob("*.npz"), key=lambda p: (_file_number(p), str(p)))
        if split == "train":
            files = [f for f in files if _file_number(f) < UHSR_TRAIN_FILES]
        elif split == "test":
            files = [f for f in files if _file_number(f) >= UHSR_TRAIN_FILES]
        if not files:
            raise FileNotFoundError(f"no UHSR .npz files of the {split} split in {self.root}")
        self.files = files
        self.window_planes = window_planes
        self._names: dict[int, str] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> SpikeSample:
        reader = NpzReader(self.files[index])
        planes = reader.unpacked()
        if self.window_planes is not None:
            start, stop = check_window_fits(default_key(reader.n_planes), self.window_planes, reader.n_planes)
            planes = planes[start:stop]
        label = -1 if reader.label is None else reader.label
        return SpikeSample(np.ascontiguousarray(planes), None, label, reader.label_name or self.files[index].stem)

    def class_names(self) -> dict[int, str]:
        """Label -> class name, read from the samples' ``label_name`` fields."""
        if self._names is None:
            names: dict[int, str] = {}
            for path in self.files:
                with np.load(path, allow_pickle=False) as data:
                    if "label" in data.files and "label_name" in data.files:
                        names.setdefault(int(data["label"]), class_name_of(str(data["label_name"])))
            self._names = names
        return self._names


# -------------------------------------------------------------------------------- the simulator


def simulate_spikes(greys: np.ndarray, rng: np.random.Generator, rate_scale: float = RATE_PER_INTENSITY,
                    gain_fpn: float = 0.0, gain_jitter: float = 0.0, spurious_rate: float = 0.0) -> np.ndarray:
    """Upright grey frames ``(T, H, W)`` in [0, 1], one per plane -> uint8 0/1 planes, by the project's
    simulator (``firmware_io.simulator``); firing rate = ``rate_scale`` x grey plus the given noise."""
    from firmware_io.simulator import NoiseParams, SimParams, SpikeSimulator

    greys = np.asarray(greys, dtype=np.float32)
    noise = NoiseParams(spurious_rate=spurious_rate, gain_fpn=gain_fpn, gain_jitter=gain_jitter)
    sim = SpikeSimulator(Geometry(greys.shape[1], greys.shape[2]), SimParams.from_rate_scale(rate_scale),
                         noise, seed=int(rng.integers(0, 2**62)))
    return sim.simulate(greys).view(np.uint8)


# ------------------------------------------------------------------------ natural-like images


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur by FFT (periodic boundary; fine for textures)."""
    if sigma <= 0:
        return image
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.rfftfreq(image.shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    return np.fft.irfft2(np.fft.rfft2(image) * kernel, s=image.shape).astype(np.float32)


def pink_noise(rng: np.random.Generator, height: int, width: int, exponent: float = 2.0) -> np.ndarray:
    """1/f^(exponent/2)-amplitude noise (natural images have power ~ 1/f^2), scaled to [0, 1]."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f ** (exponent / 2)
    spectrum[0, 0] = 0
    image = np.fft.irfft2(spectrum, s=(height, width))
    image -= image.min()
    return (image / max(image.max(), 1e-8)).astype(np.float32)


def natural_like_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A procedural natural-like grey image in [0, 1]: dead-leaves occlusion of textured shapes
    (discs, ellipses, rectangles, stripes) over a 1/f background, with shading and mild blur."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = 0.15 + 0.7 * pink_noise(rng, height, width, rng.uniform(1.6, 2.6))
    n_leaves = int(rng.integers(20, 90))
    scale = max(height, width)
    for _ in range(n_leaves):
        radius = scale * float(rng.uniform(0.02, 0.25)) ** 1.0 * float(rng.uniform(0.4, 1.0))
        cy, cx = rng.uniform(-0.1, 1.1) * height, rng.uniform(-0.1, 1.1) * width
        kind = rng.integers(0, 4)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        aspect = rng.uniform(0.3, 1.0)
        if kind == 0:
            mask = u**2 + v**2 < radius**2
        elif kind == 1:
            mask = (u / radius) ** 2 + (v / (radius * aspect)) ** 2 < 1
        else:
            mask = (np.abs(u) < radius) & (np.abs(v) < radius * aspect)
        if not mask.any():
            continue
        base = rng.uniform(0.0, 1.0) ** 0.8
        texture_kind = rng.integers(0, 4)
        if texture_kind == 0:
            value = np.full(mask.sum(), base, dtype=np.float32)
        elif texture_kind == 1:  # smooth shading
            g = (u[mask] / max(radius, 1.0)) * rng.uniform(-0.3, 0.3)
            value = base + g
        elif texture_kind == 2:  # stripes
            period = rng.uniform(3, 20)
            value = base + rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * v[mask] / period + rng.uniform(0, 6.3))
        else:  # fine texture
            value = base + rng.uniform(0.05, 0.3) * (pink_noise(rng, height, width, 1.2)[mask] - 0.5)
        image[mask] = value
    image = _blur(image, float(rng.uniform(0.3, 1.2)))
    shading = 1.0 + rng.uniform(-0.3, 0.3) * (yy / height - 0.5) + rng.uniform(-0.3, 0.3) * (xx / width - 0.5)
    image = image * shading
    # random tone curve, then back to [0, 1]
    image = np.clip(image, 0.0, 1.0) ** rng.uniform(0.7, 1.4)
    lo, hi = rng.uniform(0.0, 0.1), rng.uniform(0.85, 1.0)
    return np.clip(lo + (hi - lo) * image, 0.0, 1.0).astype(np.float32)


def builtin_scene_frames(rng: np.random.Generator, size: int, times: np.ndarray, speed: float) -> np.ndarray:
    """Frames ``(len(times), size, size)`` of a random built-in scene of ``firmware_io.scenes`` (its own
    motion: bouncing shapes, pans, rotation, scrolling text) at ``speed`` (about pixels per plane)."""
    from firmware_io.scenes import ProceduralScene, SceneName

    names = list(SceneName)
    scene = ProceduralScene(names[int(rng.integers(len(names)))], Geometry(size, size),
                            seed=int(rng.integers(0, 2**31)), speed=speed)
    start = float(rng.uniform(0, 1000))
    return np.stack([np.asarray(scene.frame(start + float(t)), dtype=np.float32) for t in times])


def _translate_frames(canvas: np.ndarray, y0: float, x0: float, vy: float, vx: float,
                     times: np.ndarray, size: int) -> np.ndarray:
    """Frames ``canvas[y0 + vy * t + i, x0 + vx * t + j]`` (bilinear) for ``i, j < size``, one per time."""
    h, w = canvas.shape
    out = np.empty((len(times), size, size), dtype=np.float32)
    for n, t in enumerate(times):
        y = min(max(y0 + vy * float(t), 0.0), h - size - 1.001)
        x = min(max(x0 + vx * float(t), 0.0), w - size - 1.001)
        iy, ix = int(y), int(x)
        fy, fx = y - iy, x - ix
        top = canvas[iy : iy + size + 1, ix : ix + size + 1]
        rows = top[:-1] * (1 - fy) + top[1:] * fy
        out[n] = rows[:, :-1] * (1 - fx) + rows[:, 1:] * fx
    return out


@dataclass(frozen=True)
class SyntheticSettings:
    window_planes: int
    crop: int = 96
    max_speed: float = 0.4  # pixels per plane (REDS_BASE clips move about 0.15)
    static_fraction: float = 0.15
    foreground_fraction: float = 0.5
    low_light_fraction: float = 0.0  # share of samples simulated in low light
    low_light_gain: tuple[float, float] = (0.05, 0.3)
    low_light_spurious: float = 1.0 / 140  # spurious spikes per pixel per plane in low light
    gain_fpn: tuple[float, float] = (0.0, 0.03)
    scene_fraction: float = 0.0  # share of samples from firmware_io.scenes' built-in scenes


class SyntheticSpikeDataset:
    """Simulated spike windows with ground truth; item ``i`` is a pure function of ``(seed, i)``."""

    def __init__(self, settings: SyntheticSettings, length: int = 1_000_000, seed: int = 0) -> None:
        if settings.window_planes < 1 or settings.crop < 8:
            raise ValueError(f"bad synthetic settings {settings}")
        self.settings = settings
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> SpikeSample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} outside [0, {self.length})")
        rng = np.random.default_rng([self.seed, index, 0x5EED])
        return make_synthetic_sample(self.settings, rng, name=f"synthetic-{self.seed}-{index}")


def make_synthetic_sample(s: SyntheticSettings, rng: np.random.Generator, name: str = "synthetic") -> SpikeSample:
    """Render a moving scene, simulate spikes; target = rate image at plane ``T // 2``."""
    t_planes, crop = s.window_planes, s.crop
    key = t_planes // 2
    speed = 0.0 if rng.random() < s.static_fraction else float(rng.uniform(0.0, s.max_speed))
    angle = rng.uniform(0, 2 * np.pi)
    vy, vx = speed * np.sin(angle), speed * np.cos(angle)
    margin = int(np.ceil(s.max_speed * t_planes / 2)) + 4
    size = crop + 2 * margin
    use_scene = rng.random() < s.scene_fraction
    times = np.arange(t_planes, dtype=np.float32) - key
    t = times[:, None, None]
    yy, xx = np.mgrid[0:crop, 0:crop].astype(np.float32)
    if use_scene:
        frames = builtin_scene_frames(rng, crop, times, max(speed, 1e-3))
    else:
        frames = _translate_frames(natural_like_image(rng, size, size), margin, margin, vy, vx, times, crop)
    if rng.random() < s.foreground_fraction:
        # an independently moving textured object (multi-motion)
        fg = natural_like_image(rng, size, size)
        fspeed = float(rng.uniform(0.0, s.max_speed))
        fangle = rng.uniform(0, 2 * np.pi)
        fvy, fvx = fspeed * np.sin(fangle), fspeed * np.cos(fangle)
        radius = rng.uniform(0.15, 0.45) * crop
        cy, cx = rng.uniform(0.2, 0.8) * crop, rng.uniform(0.2, 0.8) * crop
        aspect = rng.uniform(0.4, 1.0)
        oy, ox = yy[None] - (cy + fvy * t), xx[None] - (cx + fvx * t)
        dist = (oy / (radius * aspect)) ** 2 + (ox / radius) ** 2
        alpha = np.clip((1.0 - dist) * radius * 0.5 + 0.5, 0.0, 1.0)  # about one pixel of soft edge
        fg_frames = _translate_frames(fg, margin, margin, -fvy, -fvx, times, crop)
        frames = frames * (1 - alpha) + fg_frames * alpha
    gain, spurious = 1.0, 0.0
    if rng.random() < s.low_light_fraction:
        gain = float(rng.uniform(*s.low_light_gain))
        spurious = s.low_light_spurious
    rate_scale = RATE_PER_INTENSITY * gain
    planes = simulate_spikes(frames, rng, rate_scale, gain_fpn=float(rng.uniform(*s.gain_fpn)), spurious_rate=spurious)
    target = (np.clip(frames[key], 0.0, 1.0) * rate_scale).astype(np.float32)
    sample = SpikeSample(planes, target, -1, name)
    return augment(sample, rng, crop=None, flips=True)


# ----------------------------------------------------------------------------------- batching


def collate(samples: Sequence[SpikeSample]):
    """Samples -> (planes uint8 tensor (B, T, H, W), targets float32 (B, 1, H, W) or None, labels)."""
    import torch

    planes = torch.from_numpy(np.stack([s.planes for s in samples]))
    targets = None
    if all(s.target is not None for s in samples):
        targets = torch.from_numpy(np.stack([s.target for s in samples]))[:, None]
    labels = torch.tensor([s.label for s in samples], dtype=torch.int64)
    return planes, targets, labels


def training_source(data: str, window_planes: int, crop: int, seed: int, low_light_fraction: float = 0.0,
                    scene_fraction: float = 0.0) -> Callable[[np.random.Generator, int], SpikeSample]:
    """A function ``(rng, draw_index) -> augmented sample`` for ``--data synthetic`` or a folder
    (``--data reds-like`` is ``training.reds_like.reds_like_source``)."""
    if data == "synthetic":
        settings = SyntheticSettings(window_planes=window_planes, crop=crop, low_light_fraction=low_light_fraction,
                                     scene_fraction=scene_fraction)

        def draw_synthetic(rng: np.random.Generator, draw_index: int) -> SpikeSample:
            return make_synthetic_sample(settings, rng, name=f"synthetic-{seed}-{draw_index}")

        return draw_synthetic
    dataset = PairedSpikeDataset(data, window_planes)

    def draw_file(rng: np.random.Generator, draw_index: int) -> SpikeSample:
        return augment(dataset[int(rng.integers(len(dataset)))], rng, crop=crop)

    return draw_file


__all__ = [
    "RATE_PER_INTENSITY", "intensity_to_rate", "rate_to_intensity", "SpikeSample", "augment",
    "find_pairs", "read_gt_png", "PairedSpikeDataset", "UHSRDataset", "class_name_of", "simulate_spikes",
    "natural_like_image", "pink_noise", "builtin_scene_frames", "SyntheticSettings", "SyntheticSpikeDataset", "make_synthetic_sample",
    "collate", "training_source",
]
