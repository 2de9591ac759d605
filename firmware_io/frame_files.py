"""Writing reconstructed frames for people: ``.npy`` (raw values), PNG, a folder of PNGs, ``.mp4``.

Raw values go to ``.npy`` untouched (float32 ``(frames, H, W)``). Pictures (PNG, video) are 8-bit
grey on one of two display scales (``scale``, the command lines' ``--scale``):

- ``auto`` (the default, ``None`` here): each frame is min-max normalised on its own, its lowest
  value black and its highest white (a constant frame black). Every frame uses the full range, so
  networks with unbounded output and TFI's 1/interval values are all viewable, but brightness is not
  comparable between frames (a video flickers as the extremes change).
- a fixed number ``S``: value ``v`` is shown as ``v / S * 255``, clipped to 0..255, the same for
  every frame. For firing rates (TFP, TFI, the networks) ``S = 1`` shows one spike per plane as
  white; ``0.6`` is white on REDS_BASE-like data and the simulator's default gain.

Every file is written under a temporary name and renamed into place (``firmware_io.atomic``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from firmware_io.atomic import PendingFile, atomic_path

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".gif")
AUTO_SCALE = "auto"
SCALE_HELP = ("Brightness of pictures (PNG, video): 'auto' min-max normalises each frame on its own (brightness not "
              "comparable across frames); a number S shows value v as v/S*255, clipped, the same for every frame "
              "(firing rates: 1 = one spike per plane is white; 0.6 for REDS-like data).")


def parse_display_scale(value: str | float | None) -> float | None:
    """``'auto'`` (or ``None``) -> ``None``; a positive finite number (or its text) -> that float."""
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO_SCALE):
        return None
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be {AUTO_SCALE!r} or a positive number (the value shown white), got {value!r}")
    return scale


def to_display_u8(frame: np.ndarray, scale: float | None = None) -> np.ndarray:
    """One frame to uint8 grey: ``scale None`` min-max normalises it (a constant frame maps to 0); a
    fixed ``scale`` maps ``v`` to ``v / scale * 255``, clipped (NaN to 0)."""
    frame = np.asarray(frame, dtype=np.float32)
    if scale is not None:
        return np.nan_to_num(np.clip(frame * np.float32(255.0 / scale) + 0.5, 0, 255), nan=0.0).astype(np.uint8)
    lo, hi = float(np.nanmin(frame)), float(np.nanmax(frame))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(frame.shape, dtype=np.uint8)
    return np.clip((frame - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def _pending(path: Path) -> PendingFile:
    return PendingFile(path, suffix=path.suffix)  # keep the suffix: writers pick the format from it


def write_png(path: str | os.PathLike, frame: np.ndarray, scale: float | None = None) -> Path:
    from PIL import Image

    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        Image.fromarray(to_display_u8(frame, scale), mode="L").save(tmp, format="PNG")
    return path


class VideoWriter:
    """Streams frames on a display scale (see the module docstring) to a video file (needs the ``video``
    extra: imageio-ffmpeg)."""

    def __init__(self, path: str | os.PathLike, fps: float = 25.0, scale: float | None = None) -> None:
        try:
            import imageio.v2 as imageio
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("writing video needs the 'video' extra: pip install 'spike-edge[video]'") from exc
        self.path = Path(path)
        self.scale = scale
        self._pending = _pending(self.path)
        kwargs = {"fps": fps}
        if self.path.suffix.lower() in (".mp4", ".mkv", ".avi"):
            kwargs.update(codec="libx264", quality=8, macro_block_size=1, pixelformat="yuv420p")
        with self._pending.guard():
            self._writer = imageio.get_writer(self._pending.path, **kwargs)
        self.n_frames = 0

    def append(self, frame: np.ndarray) -> None:
        u8 = to_display_u8(frame, self.scale)
        if self.path.suffix.lower() != ".gif" and u8.shape[0] % 2 + u8.shape[1] % 2:
            u8 = np.pad(u8, ((0, u8.shape[0] % 2), (0, u8.shape[1] % 2)), mode="edge")  # yuv420p needs even sizes
        self._writer.append_data(u8)
        self.n_frames += 1

    def close(self) -> None:
        with self._pending.guard():
            self._writer.close()
        self._pending.commit()

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._pending.abort()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self.close() if exc_type is None else self.abort()


class FrameSink:
    """Streams frames one at a time to ``.npy`` (raw float32), a PNG folder, a single ``.png`` or video.

    ``scale`` is the pictures' display scale (module docstring); ``.npy`` holds raw values, so a fixed
    scale with ``.npy`` is refused rather than ignored. The ``.npy`` file is written through a memory map of a ``PendingFile`` committed on ``close``,
    so memory stays bounded whatever the number of frames; ``abort`` leaves nothing behind.
    """

    def __init__(self, out: str | os.PathLike, n_frames: int, shape: tuple[int, int], fps: float = 25.0,
                 scale: float | None = None) -> None:
        self.out = Path(out)
        self.n_frames = n_frames
        self.scale = scale
        self.count = 0
        suffix = self.out.suffix.lower()
        self._npy = self._video = None
        if suffix == ".npy" and scale is not None:
            raise ValueError(f"{self.out} holds raw values; a display scale ({scale:g}) applies to pictures only "
                             f"(.png, a folder, {'/'.join(VIDEO_SUFFIXES)})")
        if suffix == ".npy":
            self._pending = _pending(self.out)
            with self._pending.guard():
                self._npy = np.lib.format.open_memmap(self._pending.path, mode="w+", dtype=np.float32,
                                                      shape=(n_frames, *shape))
        elif suffix == ".png":
            if n_frames != 1:
                raise ValueError(f"{self.out} is a single PNG but there are {n_frames} frames; give a folder or .mp4")
        elif suffix in VIDEO_SUFFIXES:
            self._video = VideoWriter(self.out, fps=fps, scale=scale)
        elif suffix:
            raise ValueError(f"unknown output type {suffix!r} for {self.out}; use .npy, .png, a folder, or {'/'.join(VIDEO_SUFFIXES)}")
        else:
            self.out.mkdir(parents=True, exist_ok=True)

    def append(self, frame: np.ndarray) -> None:
        if self.count >= self.n_frames:
            raise ValueError(f"more than the {self.n_frames} frames announced for {self.out}")
        if self._npy is not None:
            self._npy[self.count] = frame
        elif self._video is not None:
            self._video.append(frame)
        elif self.out.suffix.lower() == ".png":
            write_png(self.out, frame, self.scale)
        else:
            write_png(self.out / f"frame_{self.count:06d}.png", frame, self.scale)
        self.count += 1

    def close(self) -> Path:
        if self._npy is not None:
            self._npy.flush()
            del self._npy
            self._npy = None
            self._pending.commit()
        elif self._video is not None:
            self._video.close()
        return self.out

    def abort(self) -> None:
        if self._npy is not None:
            del self._npy
            self._npy = None
            self._pending.abort()
        elif self._video is not None:
            self._video.abort()

    def __enter__(self) -> "FrameSink":
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self.close() if exc_type is None else self.abort()


def write_frames(out: str | os.PathLike, frames: np.ndarray, fps: float = 25.0, scale: float | None = None) -> Path:
    """Write ``frames (n, H, W)`` by the suffix of ``out`` (see ``FrameSink``)."""
    frames = np.asarray(frames)
    with FrameSink(out, len(frames), frames.shape[1:], fps=fps, scale=scale) as sink:
        for frame in frames:
            sink.append(frame)
    return Path(out)
