"""Grey-frame inputs for the simulator: built-in procedural scenes, image folders and video files.

Every input is a ``FrameSequence``: an iterable of upright ``float32 (H, W)`` grey frames in
``[0, 1]`` with its ``geometry`` and ``n_frames`` (``None`` = endless) known before iteration, so
callers can size writers and sources first and then stream frames with bounded memory.

Built-in scenes (``SceneName``) are generated procedurally from a seed, for any ``H x W``, with no
input files; frame ``i`` is a pure function of ``(scene, geometry, seed, speed, i)``
(``ProceduralScene.frame``):

- ``shapes``: textured discs, boxes and rings moving (and bouncing) over a slowly drifting
  textured background.
- ``pan``: a seamless multi-octave value-noise + checker + stripe texture panned with a slight wobble.
- ``rotate``: rings, spokes and noise rotating about the centre.
- ``text``: a line of large text scrolling across a gradient.

``speed`` scales all motion; at ``speed=1`` the fastest content moves about one pixel per frame.

Design: textures are built once per scene (value noise from seeded random grids upsampled with
wrap-around, so pans tile seamlessly) and each frame is a bilinear lookup at moved coordinates:
about a millisecond or two per 250x400 frame, amortised over ``planes_per_frame`` ticks.
Alternatives considered: drawing with Pillow per frame (no sub-pixel motion, aliasing at slow
speeds) and precomputed frame stacks (memory grows with length).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from firmware_io.contract import FormatError, Geometry

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm")


class SceneName(str, enum.Enum):
    """Built-in procedural scenes (CLI ``--scene``)."""

    SHAPES = "shapes"
    PAN = "pan"
    ROTATE = "rotate"
    TEXT = "text"


@dataclass
class FrameSequence:
    """Upright grey frames in [0, 1] with their geometry; ``n_frames is None`` means endless."""

    geometry: Geometry
    n_frames: int | None
    _make_iter: Callable[[], Iterator[np.ndarray]]
    description: str = ""

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._make_iter()


# ---------------------------------------------------------------------------------------------
# Texture helpers (pure functions)
# ---------------------------------------------------------------------------------------------


def _upsample_periodic(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a periodic grid to ``(height, width)``, wrapping at the edges."""
    gh, gw = grid.shape
    ys = np.arange(height) * (gh / height)
    xs = np.arange(width) * (gw / width)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    y1 = (y0 + 1) % gh
    x1 = (x0 + 1) % gw
    # smoothstep weights give value noise without visible grid creases
    fy = fy * fy * (3 - 2 * fy)
    fx = fx * fx * (3 - 2 * fx)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def value_noise(height: int, width: int, rng: np.random.Generator, *, base_cells: int = 4, octaves: int = 5) -> np.ndarray:
    """Seamless (periodic) multi-octave value noise in [0, 1], ``float32 (height, width)``."""
    out = np.zeros((height, width))
    amplitude, total = 1.0, 0.0
    cells = base_cells
    for _ in range(octaves):
        gh = max(1, min(height, cells))
        gw = max(1, min(width, round(cells * width / max(height, 1))))
        out += amplitude * _upsample_periodic(rng.random((gh, gw)), height, width)
        total += amplitude
        amplitude *= 0.5
        cells *= 2
    out /= total
    lo, hi = out.min(), out.max()
    return ((out - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


def sample_wrapped(texture: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``texture`` at float coordinates, wrapping around (periodic texture)."""
    th, tw = texture.shape
    y0 = np.floor(ys)
    x0 = np.floor(xs)
    fy = (ys - y0).astype(np.float32)
    fx = (xs - x0).astype(np.float32)
    y0 = y0.astype(np.int64) % th
    x0 = x0.astype(np.int64) % tw
    y1 = (y0 + 1) % th
    x1 = (x0 + 1) % tw
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def shift_wrapped(texture: np.ndarray, dy: float, dx: float, height: int, width: int) -> np.ndarray:
    """``(height, width)`` window of a periodic texture at a sub-pixel offset ``(dy, dx)`` (bilinear).

    Same result as ``sample_wrapped`` on a shifted grid, but one gather of rows and columns plus
    four slices instead of four per-pixel gathers (about ten times faster).
    """
    th, tw = texture.shape
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = np.float32(dy - iy), np.float32(dx - ix)
    rows = (iy + np.arange(height + 1)) % th
    cols = (ix + np.arange(width + 1)) % tw
    window = texture[np.ix_(rows, cols)]
    top = window[:-1, :-1] * (1 - fx) + window[:-1, 1:] * fx
    bottom = window[1:, :-1] * (1 - fx) + window[1:, 1:] * fx
    return top * (1 - fy) + bottom * fy


def _smooth_edge(signed_distance: np.ndarray) -> np.ndarray:
    """Coverage of a shape from its signed distance in pixels (1 inside, 0 outside, 1-pixel ramp)."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _bounce(position: float, low: float, high: float) -> float:
    """Reflect a linearly moving coordinate into ``[low, high]`` (triangle wave)."""
    span = high - low
    if span <= 0:
        return low
    p = (position - low) % (2 * span)
    return low + (p if p <= span else 2 * span - p)


# ---------------------------------------------------------------------------------------------
# Procedural scenes
# ---------------------------------------------------------------------------------------------


class ProceduralScene:
    """One built-in scene for a geometry and seed; ``frame(i)`` renders frame ``i`` (float index ok).

    ``ProceduralScene(name, geometry, seed=0, speed=1.0)``; ``frames(n_frames=None)`` is the
    ``FrameSequence`` of frames ``0, 1, 2, ...`` (endless when ``n_frames`` is ``None``).
    """

    def __init__(self, name: SceneName | str, geometry: Geometry, seed: int = 0, speed: float = 1.0) -> None:
        self.name = scene_name(name)
        self.geometry = geometry
        self.seed = int(seed)
        if not (speed >= 0):
            raise ValueError(f"scene speed must be >= 0, got {speed!r}")
        self.speed = float(speed)
        rng = np.random.default_rng([self.seed, list(SceneName).index(self.name)])
        h, w = geometry.shape
        self._yy, self._xx = np.mgrid[0:h, 0:w].astype(np.float32)
        getattr(self, f"_setup_{self.name.value}")(rng)

    # -- pan ------------------------------------------------------------------------------------
    def _setup_pan(self, rng: np.random.Generator) -> None:
        h, w = self.geometry.shape
        th, tw = 2 * h, 2 * w
        noise = value_noise(th, tw, rng, base_cells=4, octaves=6)
        ty, tx = np.mgrid[0:th, 0:tw].astype(np.float32)
        period = max(8, min(th, tw) // 8)
        checker = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * ty / (th / round(th / period))) * np.sin(
            2 * np.pi * tx / (tw / round(tw / period))))
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (3 * tx / tw + 2 * ty / th))
        self._texture = (0.6 * noise + 0.25 * checker + 0.15 * stripes).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        self._velocity = (np.sin(angle), np.cos(angle))
        self._wobble = rng.uniform(0.1, 0.3)

    def _frame_pan(self, t: float) -> np.ndarray:
        s = t * self.speed
        dy = self._velocity[0] * s + self._wobble * 10 * np.sin(s / 40)
        dx = self._velocity[1] * s
        return shift_wrapped(self._texture, dy, dx, *self.geometry.shape)

    # -- rotate ---------------------------------------------------------------------------------
    def _setup_rotate(self, rng: np.random.Generator) -> None:
        # The image is a sum of angular harmonics sin(k*A + phi) with radius-dependent amplitudes,
        # so rotating by theta is a fixed linear combination of precomputed planes (one matvec).
        h, w = self.geometry.shape
        y = self._yy - (h - 1) / 2
        x = self._xx - (w - 1) / 2
        radius = np.hypot(y, x)
        angle = np.arctan2(y, x)
        r_max = float(radius.max()) or 1.0
        ring_period = max(6.0, min(h, w) / rng.uniform(6, 10))
        self._static = 0.5 + 0.2 * np.cos(2 * np.pi * radius / ring_period)
        spokes = int(rng.integers(5, 11))
        orders, amplitudes, phases = [], [], []
        for j in range(3):  # a square wave in angle: spokes
            orders.append(spokes * (2 * j + 1))
            amplitudes.append(np.full_like(radius, 0.2 * 4 / np.pi / (2 * j + 1)))
            phases.append(0.0)
        radial = np.linspace(0, 1, 64)
        for k in rng.choice(np.arange(1, 24), size=6, replace=False):  # texture with radial variation
            profile = np.interp(radius / r_max, radial, rng.uniform(-1, 1, size=64).cumsum() / 8)
            orders.append(int(k))
            amplitudes.append(0.08 * np.clip(profile, -1.5, 1.5))
            phases.append(rng.uniform(0, 2 * np.pi))
        self._orders = np.array(orders, dtype=np.float64)
        planes = []
        for k, amp, phi in zip(orders, amplitudes, phases):
            planes.append(amp * np.sin(k * angle + phi))
            planes.append(amp * np.cos(k * angle + phi))
        self._harmonics = np.stack(planes).reshape(len(planes), -1).astype(np.float32)
        self._vignette = np.clip(1.25 - radius / r_max * 0.6, 0.3, 1.0).astype(np.float32)
        self._omega = 1.0 / max(h, w)  # radians per frame at speed 1: the rim moves ~0.5-1 px/frame

    def _frame_rotate(self, t: float) -> np.ndarray:
        theta = self._omega * t * self.speed
        # sin(k(A - theta) + phi) = sin(kA + phi) cos(k theta) - cos(kA + phi) sin(k theta)
        weights = np.empty(2 * len(self._orders), dtype=np.float32)
        weights[0::2] = np.cos(self._orders * theta)
        weights[1::2] = -np.sin(self._orders * theta)
        moving = (weights @ self._harmonics).reshape(self.geometry.shape)
        return (self._vignette * (self._static + moving)).astype(np.float32)

    # -- shapes ---------------------------------------------------------------------------------
    def _setup_shapes(self, rng: np.random.Generator) -> None:
        h, w = self.geometry.shape
        self._background = 0.15 + 0.35 * value_noise(h, w, rng, base_cells=3, octaves=5)
        self._bg_velocity = rng.uniform(-0.15, 0.15, size=2)
        size = min(h, w)
        self._shapes = []
        for i in range(int(rng.integers(4, 8))):
            kind = ("disc", "box", "ring")[i % 3]
            radius = rng.uniform(0.08, 0.2) * size
            self._shapes.append(
                dict(
                    kind=kind,
                    radius=max(radius, 2.0),
                    start=(rng.uniform(0, h), rng.uniform(0, w)),
                    velocity=rng.uniform(-1, 1, size=2) / np.sqrt(2),
                    grey=rng.uniform(0.55, 1.0),
                    stripe_period=rng.uniform(4, 12),
                    stripe_angle=rng.uniform(0, np.pi),
                    spin=rng.uniform(-0.02, 0.02),
                )
            )

    def _frame_shapes(self, t: float) -> np.ndarray:
        h, w = self.geometry.shape
        s = t * self.speed
        frame = shift_wrapped(self._background, self._bg_velocity[0] * s, self._bg_velocity[1] * s, h, w)
        for shape in self._shapes:
            r = shape["radius"]
            cy = _bounce(shape["start"][0] + shape["velocity"][0] * s, r, h - 1 - r)
            cx = _bounce(shape["start"][1] + shape["velocity"][1] * s, r, w - 1 - r)
            y0, y1 = max(0, int(cy - r - 2)), min(h, int(cy + r + 3))
            x0, x1 = max(0, int(cx - r - 2)), min(w, int(cx + r + 3))
            if y0 >= y1 or x0 >= x1:
                continue
            y = self._yy[y0:y1, x0:x1] - cy
            x = self._xx[y0:y1, x0:x1] - cx
            spin = shape["spin"] * s
            c, sn = np.cos(spin), np.sin(spin)
            ry, rx = c * y - sn * x, sn * y + c * x
            if shape["kind"] == "disc":
                distance = np.hypot(ry, rx) - r
            elif shape["kind"] == "box":
                half = r / np.sqrt(2)
                qy, qx = np.abs(ry) - half, np.abs(rx) - half
                distance = np.hypot(np.maximum(qy, 0), np.maximum(qx, 0)) + np.minimum(np.maximum(qy, qx), 0)
            else:
                distance = np.abs(np.hypot(ry, rx) - 0.7 * r) - 0.3 * r
            coverage = _smooth_edge(distance)
            a = shape["stripe_angle"]
            stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (ry * np.cos(a) + rx * np.sin(a)) / shape["stripe_period"])
            colour = shape["grey"] * (0.75 + 0.25 * stripes)
            patch = frame[y0:y1, x0:x1]
            frame[y0:y1, x0:x1] = patch * (1 - coverage) + colour * coverage
        return frame.astype(np.float32)

    # -- text -----------------------------------------------------------------------------------
    def _setup_text(self, rng: np.random.Generator) -> None:
        from PIL import Image, ImageDraw, ImageFont

        h, w = self.geometry.shape
        words = ["SPIKE", "EDGE", "40 kHz", "VIDAR", "TFP", "TFI", "0123456789", "ABCDEFG"]
        order = rng.permutation(len(words))
        message = "   ".join(words[i] for i in order) + "   "
        font_px = max(8, int(h * 0.35))
        try:
            font = ImageFont.load_default(size=font_px)
        except TypeError:  # Pillow without FreeType sizes: scale the bitmap font instead
            font = ImageFont.load_default()
        left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), message, font=font)
        strip = Image.new("L", (max(right - left + 4, w), bottom - top + 4), 0)
        ImageDraw.Draw(strip).text((2 - left, 2 - top), message, fill=255, font=font)
        if strip.height > h:
            strip = strip.resize((max(1, strip.width * h // strip.height), h), Image.BILINEAR)
        glyphs = np.asarray(strip, dtype=np.float32) / 255.0
        band = np.zeros((h, glyphs.shape[1]), dtype=np.float32)
        y0 = (h - glyphs.shape[0]) // 2
        band[y0 : y0 + glyphs.shape[0]] = glyphs
        self._band = band
        ty = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        tx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
        self._gradient = 0.15 + 0.25 * (0.6 * ty + 0.4 * tx)

    def _frame_text(self, t: float) -> np.ndarray:
        shift = t * self.speed
        glyphs = shift_wrapped(self._band, 0.0, shift, *self.geometry.shape)
        return (self._gradient * (1 - glyphs) + 0.95 * glyphs).astype(np.float32)

    # -- public -----------------------------------------------------------------------------------
    def frame(self, index: float) -> np.ndarray:
        """Upright ``float32 (H, W)`` grey frame in [0, 1] at frame time ``index``."""
        frame = getattr(self, f"_frame_{self.name.value}")(float(index))
        return np.clip(frame, 0.0, 1.0).astype(np.float32, copy=False)

    def frames(self, n_frames: int | None = None) -> FrameSequence:
        if n_frames is not None and n_frames < 0:
            raise ValueError(f"n_frames must be >= 0 or None, got {n_frames}")

        def generate() -> Iterator[np.ndarray]:
            i = 0
            while n_frames is None or i < n_frames:
                yield self.frame(i)
                i += 1

        return FrameSequence(self.geometry, n_frames, generate, f"scene {self.name.value} seed {self.seed}")


def scene_name(name: SceneName | str) -> SceneName:
    """Validate a scene name, naming the valid ones when it is unknown."""
    try:
        return SceneName(name)
    except ValueError:
        raise ValueError(f"unknown scene {name!r}; expected one of {[s.value for s in SceneName]}") from None


def scene_frames(
    name: SceneName | str, geometry: Geometry, *, seed: int = 0, speed: float = 1.0, n_frames: int | None = None
) -> FrameSequence:
    """Frames of a built-in scene (endless unless ``n_frames``), deterministic for a seed."""
    return ProceduralScene(name, geometry, seed, speed).frames(n_frames)


# ---------------------------------------------------------------------------------------------
# Files: images and video
# ---------------------------------------------------------------------------------------------


def _to_geometry(grey: np.ndarray, geometry: Geometry | None, origin: str) -> np.ndarray:
    if geometry is None or grey.shape == geometry.shape:
        return grey
    from PIL import Image

    image = Image.fromarray(grey.astype(np.float32), mode="F")
    return np.asarray(image.resize((geometry.width, geometry.height), Image.BILINEAR), dtype=np.float32)


def frames_from_images(directory: str | os.PathLike, geometry: Geometry | None = None) -> FrameSequence:
    """Grey frames from the image files in ``directory`` (sorted by name; PNG, JPEG, BMP, TIFF, PGM).

    Colour images are converted to grey (Pillow ``L``). Without ``geometry`` the first image sets
    it and every image must have that size; with ``geometry`` images are resized to it (bilinear).
    """
    from PIL import Image

    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")

    def load(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        except OSError as exc:
            raise FormatError(f"cannot read image {path}: {exc}") from exc

    if geometry is None:
        first = load(files[0])
        geometry = Geometry(*first.shape)
        strict = True
    else:
        strict = False
    target = geometry

    def generate() -> Iterator[np.ndarray]:
        for path in files:
            grey = load(path)
            if strict and grey.shape != target.shape:
                raise FormatError(
                    f"{path} is {grey.shape[0]}x{grey.shape[1]} but the first image is {target}; "
                    f"give a geometry (--height/--width) to resize all images"
                )
            yield _to_geometry(grey, target, str(path))

    return FrameSequence(geometry, len(files), generate, f"{len(files)} images in {folder}")


def _luma(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    scale = 65535.0 if frame.dtype == np.uint16 else (255.0 if frame.dtype == np.uint8 else 1.0)
    grey = frame.astype(np.float32) / np.float32(scale)
    if grey.ndim == 3:
        if grey.shape[2] >= 3:
            grey = grey[..., 0] * 0.299 + grey[..., 1] * 0.587 + grey[..., 2] * 0.114
        else:
            grey = grey[..., 0]
    return grey.astype(np.float32)


def frames_from_video(path: str | os.PathLike, geometry: Geometry | None = None) -> FrameSequence:
    """Grey frames (BT.601 luma) of a video file through imageio (the ``video`` extra).

    Without ``geometry`` the video's own size is used; with it frames are resized (bilinear).
    ``n_frames`` is ``None`` (read until the file ends).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        import imageio.v3 as iio
    except ImportError as exc:
        raise ImportError(
            "reading video needs imageio; install the video extra: pip install 'spike-edge[video]'"
        ) from exc

    def open_iter() -> Iterator[np.ndarray]:
        try:
            for frame in iio.imiter(path):
                yield _luma(frame)
        except (OSError, ValueError, RuntimeError) as exc:
            raise FormatError(f"cannot read video {path}: {exc} (for MP4/AVI install the video extra: "
                              f"pip install 'spike-edge[video]')") from exc

    first_iter = open_iter()
    try:
        first = next(first_iter)
    except StopIteration:
        raise FormatError(f"video {path} has no frames") from None
    first_iter.close()
    target = geometry or Geometry(*first.shape)

    def generate() -> Iterator[np.ndarray]:
        for grey in open_iter():
            yield _to_geometry(grey, target, str(path))

    return FrameSequence(target, None, generate, f"video {path}")


def constant_frames(grey: float, geometry: Geometry, n_frames: int | None = None) -> FrameSequence:
    """A uniform grey level, for calibration and tests."""
    frame = np.full(geometry.shape, np.clip(grey, 0, 1), dtype=np.float32)

    def generate() -> Iterator[np.ndarray]:
        i = 0
        while n_frames is None or i < n_frames:
            yield frame
            i += 1

    return FrameSequence(geometry, n_frames, generate, f"constant {grey}")


def frames_from_arrays(frames: Iterable[np.ndarray], geometry: Geometry, n_frames: int | None = None) -> FrameSequence:
    """Wrap an iterable of ``(H, W)`` greys (re-iterable if a list) as a ``FrameSequence``."""
    return FrameSequence(geometry, n_frames, lambda: iter(frames), "arrays")
