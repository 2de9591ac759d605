"""REDS-like training samples: real photographs moved the way REDS_BASE's scenes move, spikes by its convention.

Motion, measured on the two sample REDS_BASE clips (phase correlation of 20-plane TFP images 20 and 40
planes apart, whole frame and quadrants; ``docs/training.md`` has the command): a global pan of
0.11-0.17 pixels per plane, the same in every quadrant to within 0.04 (a little zoom or parallax),
and people moving on their own. So a sample is:

- a **background**: a photograph of ``training.photos`` (train split), a random region resampled by a
  random factor (REDS_BASE's 250x400 frames are REDS's 720x1280 scaled by about 0.35) so the detail
  per pixel varies, the most detailed of a few draws, with a random tone curve; in half the samples
  occluded by shapes cut from other photos (``collage``): wallpaper collections are smoother than
  REDS's street scenes (mean neighbour difference 0.01-0.03 against REDS_BASE's 0.039-0.053);
- a **global motion**: pan speed log-normal around ``pan_median_px_per_plane`` (capped, a share static),
  any direction, plus a zoom rate (scale change per plane);
- **independent objects**: patches of other photographs behind soft elliptical masks, each with its
  own velocity;
- a share of **procedural** samples (``training.datasets.make_synthetic_sample``: dead-leaves images
  with sharp occlusion edges), because wallpaper collections are light on hard edges;
- **spikes** from ``firmware_io.simulator`` with REDS_BASE's convention: firing rate = 0.6 x intensity,
  integrate-and-fire from a uniform random start, optional small fixed-pattern gain noise (the facts
  file's SpikingSIM-style noise); the target is the rate image of the key plane.

``RedsLikeSettings`` holds every number above with a ``version``; its ``as_dict()`` goes into each run's
``summary.json`` and the model card, so the weights say which generator made their data.
Each sample is a pure function of the generator it is given (``training.fit`` seeds one per
(seed, step, rank, index)), so runs are reproducible and resumable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.datasets import (
    RATE_PER_INTENSITY, SpikeSample, SyntheticSettings, augment, make_synthetic_sample, simulate_spikes,
)

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class RedsLikeSettings:
    window_planes: int
    crop: int = 96
    version: int = GENERATOR_VERSION
    scale_range: tuple[float, float] = (0.15, 0.6)  # photo pixels -> scene pixels (log-uniform)
    pan_median_px_per_plane: float = 0.14
    pan_sigma: float = 0.6  # of log speed
    max_pan_px_per_plane: float = 0.5
    static_fraction: float = 0.1
    zoom_sigma_per_plane: float = 3e-4  # scale change per plane (normal)
    object_probability: float = 0.6
    max_objects: int = 2
    object_median_px_per_plane: float = 0.2
    max_object_px_per_plane: float = 0.6
    procedural_fraction: float = 0.2
    collage_probability: float = 0.5  # background = a photo occluded by shapes cut from other photos
    collage_shapes: tuple[int, int] = (8, 40)
    min_gradient: float = 0.035  # detail wanted of a region (mean_gradient; REDS_BASE: 0.039-0.053)
    region_tries: int = 8
    gain_fpn: tuple[float, float] = (0.0, 0.01)
    rate_per_intensity: float = RATE_PER_INTENSITY

    def __post_init__(self) -> None:
        if self.window_planes < 1 or self.crop < 8:
            raise ValueError(f"bad REDS-like settings: window {self.window_planes}, crop {self.crop}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale_range must satisfy 0 < lo <= hi <= 1, got {self.scale_range}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _speed(rng: np.random.Generator, median: float, sigma: float, cap: float) -> float:
    return float(min(median * np.exp(sigma * rng.standard_normal()), cap))


def _velocity(rng: np.random.Generator, speed: float) -> tuple[float, float]:
    angle = rng.uniform(0, 2 * np.pi)
    return speed * float(np.sin(angle)), speed * float(np.cos(angle))


def mean_gradient(image: np.ndarray) -> float:
    """Mean absolute difference of neighbouring pixels (both axes): how much detail an image has."""
    return float((np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean()) / 2)


def photo_region(photo: np.ndarray, size: int, rng: np.random.Generator, s: RedsLikeSettings,
                 tries: int | None = None) -> np.ndarray:
    """A ``size x size`` float32 intensity region of ``photo`` at a random scale, tone-curved: the most
    detailed (``mean_gradient``) of up to ``tries`` (default ``s.region_tries``) draws, stopping at one
    that reaches ``s.min_gradient`` (REDS_BASE's ground truths measure 0.039 and 0.053)."""
    lo, hi = s.scale_range
    best, best_detail = None, -1.0
    for _ in range(s.region_tries if tries is None else tries):
        scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        side = min(int(np.ceil(size / scale)), min(photo.shape))
        y = int(rng.integers(0, photo.shape[0] - side + 1))
        x = int(rng.integers(0, photo.shape[1] - side + 1))
        region = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)
        pixels = np.asarray(region, dtype=np.float32) / 255.0
        detail = mean_gradient(pixels)
        if detail > best_detail:
            best, best_detail = pixels, detail
        if detail >= s.min_gradient:
            break
    assert best is not None
    gamma = float(np.exp(rng.uniform(np.log(0.75), np.log(1.33))))
    return np.clip(best, 0.0, 1.0) ** gamma


def collage(base: np.ndarray, photos: list[np.ndarray], rng: np.random.Generator, s: RedsLikeSettings) -> np.ndarray:
    """``base`` occluded by random ellipses and rectangles, each cut from another photo region (REDS
    scenes are crowded: many objects, many occlusion edges; wallpapers alone are too smooth)."""
    size = base.shape[0]
    out = base.copy()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(int(rng.integers(s.collage_shapes[0], s.collage_shapes[1] + 1))):
        radius = size * float(rng.uniform(0.03, 0.25))
        cy, cx = rng.uniform(0, size), rng.uniform(0, size)
        angle, aspect = rng.uniform(0, np.pi), rng.uniform(0.25, 1.0)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        w = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        if rng.random() < 0.5:
            dist = np.sqrt((u / radius) ** 2 + (w / (radius * aspect)) ** 2)
        else:
            dist = np.maximum(np.abs(u) / radius, np.abs(w) / (radius * aspect))
        alpha = np.clip((1.0 - dist) * radius + 0.5, 0.0, 1.0)
        if not alpha.any():
            continue
        patch = photo_region(photos[int(rng.integers(len(photos)))], size, rng, s, tries=1)  # a texture: one draw
        out = out * (1 - alpha) + patch * alpha
    return out


def warp_frames(canvas: np.ndarray, times: np.ndarray, height: int, width: int,
                v_px_per_plane: tuple[float, float], zoom_per_plane: float) -> np.ndarray:
    """Frames ``(len(times), height, width)``: the canvas's centre window, translated by ``v * t`` and
    scaled by ``1 + zoom * t`` about the canvas centre, sampled bilinearly (clamped at the canvas edge)."""
    size_y, size_x = canvas.shape
    t = times.astype(np.float32)[:, None]
    scale = 1.0 + zoom_per_plane * t
    gy = np.arange(height, dtype=np.float32) - (height - 1) / 2.0
    gx = np.arange(width, dtype=np.float32) - (width - 1) / 2.0
    ys = np.clip((size_y - 1) / 2.0 + gy[None, :] * scale + v_px_per_plane[0] * t, 0, size_y - 1.001)
    xs = np.clip((size_x - 1) / 2.0 + gx[None, :] * scale + v_px_per_plane[1] * t, 0, size_x - 1.001)
    iy, ix = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = (ys - iy)[:, :, None], (xs - ix)[:, None, :]
    rows0, rows1, cols0, cols1 = iy[:, :, None], iy[:, :, None] + 1, ix[:, None, :], ix[:, None, :] + 1
    top = canvas[rows0, cols0] * (1 - fx) + canvas[rows0, cols1] * fx
    bottom = canvas[rows1, cols0] * (1 - fx) + canvas[rows1, cols1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def render_scene(s: RedsLikeSettings, photos: list[np.ndarray], rng: np.random.Generator, times: np.ndarray,
                 height: int, width: int) -> np.ndarray:
    """Intensity frames ``(len(times), height, width)`` in [0, 1] of one REDS-like scene (module docstring)."""
    if not photos:
        raise ValueError("a REDS-like scene needs at least one photograph")
    reach = float(np.abs(times).max()) if len(times) else 0.0
    margin = int(np.ceil(max(s.max_pan_px_per_plane, s.max_object_px_per_plane) * reach
                         + 4 * s.zoom_sigma_per_plane * reach * max(height, width))) + 4
    size = max(height, width) + 2 * margin
    background = photo_region(photos[int(rng.integers(len(photos)))], size, rng, s)
    if rng.random() < s.collage_probability:
        background = collage(background, photos, rng, s)
    speed = 0.0 if rng.random() < s.static_fraction else _speed(rng, s.pan_median_px_per_plane, s.pan_sigma,
                                                                  s.max_pan_px_per_plane)
    zoom = float(rng.normal(0.0, s.zoom_sigma_per_plane))
    frames = warp_frames(background, times, height, width, _velocity(rng, speed), zoom)
    if rng.random() < s.object_probability:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        side = min(height, width)
        for _ in range(int(rng.integers(1, s.max_objects + 1))):
            patch = photo_region(photos[int(rng.integers(len(photos)))], size, rng, s, tries=2)
            vy, vx = _velocity(rng, _speed(rng, s.object_median_px_per_plane, s.pan_sigma, s.max_object_px_per_plane))
            obj = warp_frames(patch, times, height, width, (-vy, -vx), 0.0)
            radius = rng.uniform(0.15, 0.45) * side
            aspect = rng.uniform(0.35, 1.0)
            angle = rng.uniform(0, np.pi)
            cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width
            dy = yy[None] - (cy + vy * times[:, None, None])
            dx = xx[None] - (cx + vx * times[:, None, None])
            u = dx * np.cos(angle) + dy * np.sin(angle)
            w = -dx * np.sin(angle) + dy * np.cos(angle)
            dist = np.sqrt((u / radius) ** 2 + (w / (radius * aspect)) ** 2)
            alpha = np.clip((1.0 - dist) * radius + 0.5, 0.0, 1.0)  # about one pixel of soft edge
            frames = frames * (1 - alpha) + obj * alpha
    return np.clip(frames, 0.0, 1.0)


def make_reds_like_sample(s: RedsLikeSettings, photos: list[np.ndarray], rng: np.random.Generator,
                          name: str = "reds-like") -> SpikeSample:
    """One ``crop x crop`` training sample (see module docstring); ``photos`` are grey uint8 images."""
    if rng.random() < s.procedural_fraction:
        return make_synthetic_sample(SyntheticSettings(window_planes=s.window_planes, crop=s.crop), rng, name)
    key = s.window_planes // 2
    times = np.arange(s.window_planes, dtype=np.float32) - key
    frames = render_scene(s, photos, rng, times, s.crop, s.crop)
    planes = simulate_spikes(frames, rng, s.rate_per_intensity, gain_fpn=float(rng.uniform(*s.gain_fpn)))
    target = (frames[key] * s.rate_per_intensity).astype(np.float32)
    return augment(SpikeSample(planes, target, -1, name), rng, crop=None, flips=True)


def reds_like_source(photos_dir: str | Path, window_planes: int, crop: int, seed: int):
    """``--data reds-like``: a function ``(rng, draw_index) -> sample`` over the train split of the photo set."""
    from training.photos import load_photo_set

    settings = RedsLikeSettings(window_planes=window_planes, crop=crop)
    photos = load_photo_set(photos_dir, "train")

    def draw(rng: np.random.Generator, draw_index: int) -> SpikeSample:
        return make_reds_like_sample(settings, photos, rng, name=f"reds-like-{seed}-{draw_index}")

    return draw


def write_clip(s: RedsLikeSettings, photos: list[np.ndarray], rng: np.random.Generator, out_dir: Path, name: str,
               height: int = 250, width: int = 400, n_planes: int = 301) -> tuple[Path, Path]:
    """A REDS_BASE-layout clip: ``out_dir/spike/<name>.dat`` (``n_planes`` planes, camera order) and
    ``out_dir/gt/<name>.png`` (grey ground truth of the centre plane), so ``spike-train eval`` reads it."""
    from firmware_io.atomic import atomic_path
    from firmware_io.bitpack import pack_planes

    key = n_planes // 2
    times = np.arange(n_planes, dtype=np.float32) - key
    frames = render_scene(s, photos, rng, times, height, width)
    planes = simulate_spikes(frames, rng, s.rate_per_intensity, gain_fpn=float(rng.uniform(*s.gain_fpn)))
    dat = out_dir / "spike" / f"{name}.dat"
    png = out_dir / "gt" / f"{name}.png"
    dat.parent.mkdir(parents=True, exist_ok=True)
    png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dat) as tmp:
        Path(tmp).write_bytes(pack_planes(planes).tobytes())
    with atomic_path(png) as tmp:
        Image.fromarray(np.round(frames[key] * 255).astype(np.uint8)).save(tmp, format="PNG")
    return dat, png


__all__ = ["GENERATOR_VERSION", "RedsLikeSettings", "make_reds_like_sample", "photo_region", "reds_like_source",
           "render_scene",
           "warp_frames", "write_clip"]
