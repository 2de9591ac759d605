"""Recording a received frame stream: ``.npz``, a crash-safe folder, or a video; readers beside the writers.

Layouts:

- ``OUT.npz``: ``frames`` ``(n, H, W)`` in the wire dtype, plus one array per header field
  (``COLUMNS``: ``seq``, timestamps, ``stream_id`` ...) and the subscriber's ``recv_t_ns``,
  ``gap_frames``, ``skipped_frames``, ``new_stream``. Kept in memory, written once at the end
  under a temporary name and renamed into place (a crash leaves no half file, but no file either).
- ``DIR/``: crash-safe. Each frame is ``frame_XXXXXX.npy`` (XXXXXX: index in the recording,
  written atomically), then one JSON line per frame is appended to ``frames.jsonl`` and
  flushed: the header fields, the subscriber fields and ``file``. A line only names a file
  that is complete, so a crash leaves a readable recording; a torn last line is ignored on read.
- ``OUT.mp4`` (or another ``firmware_io.frame_files.VIDEO_SUFFIXES``): 8-bit video via
  ``firmware_io.frame_files.VideoWriter`` (the ``video`` extra) on a display scale: each frame
  min-max normalised (``scale=None``) or value v shown as v/scale*255 for every frame. Lossy;
  headers are not kept.

Design: one ``Recorder`` protocol (``append(item)``, ``close()``, ``abort()``, context manager;
exiting on an exception aborts, except the folder, which keeps what it has) and a factory
``open_recorder`` choosing by suffix, like ``firmware_io.frame_files.write_frames``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from firmware_io.frame_files import VIDEO_SUFFIXES, VideoWriter
from edge.protocol.wire import FrameHeader, int_fields
from firmware_io.atomic import atomic_path

from .subscriber import Received

INT_COLUMNS = int_fields(FrameHeader) + ("recv_t_ns", "gap_frames", "skipped_frames")
FLOAT_COLUMNS = ("rate_hz",)
BOOL_COLUMNS = ("discontinuity", "new_stream")
STR_COLUMNS = ("stream_id", "method", "backend", "weights_id", "dtype")
COLUMNS = INT_COLUMNS + FLOAT_COLUMNS + BOOL_COLUMNS + STR_COLUMNS
FOLDER_INDEX = "frames.jsonl"
FOLDER_FRAME = "frame_{:06d}.npy"


class RecordingError(ValueError):
    """A recording that cannot be written or read as its layout says."""


def frame_row(item: Received) -> dict[str, Any]:
    """The per-frame record of a received frame: header fields (``shape`` as a list) plus subscriber fields."""
    if item.kind != "frame" or item.header is None:
        raise ValueError(f"only frames are recorded, got a {item.kind!r} item")
    row = item.header.to_dict()
    row.pop("kind", None)
    row.update(
        recv_t_ns=item.recv_t_ns,
        gap_frames=item.gap_frames,
        skipped_frames=item.skipped_frames,
        new_stream=item.new_stream,
    )
    return row


def columns_from_rows(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-frame rows to one typed array per ``COLUMNS`` entry (missing values: 0/False/'')."""
    cols: dict[str, np.ndarray] = {}
    for name in INT_COLUMNS:
        cols[name] = np.array([int(r.get(name, 0)) for r in rows], dtype=np.int64)
    for name in FLOAT_COLUMNS:
        cols[name] = np.array([float(r.get(name, 0.0)) for r in rows], dtype=np.float64)
    for name in BOOL_COLUMNS:
        cols[name] = np.array([bool(r.get(name, False)) for r in rows], dtype=bool)
    for name in STR_COLUMNS:
        cols[name] = np.array([str(r.get(name, "")) for r in rows], dtype=np.str_)
    return cols


class Recorder(Protocol):
    path: Path
    n_frames: int

    def append(self, item: Received) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class _RecorderBase:
    path: Path
    n_frames: int = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self.close() if exc_type is None else self.abort()

    def abort(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class NpzRecorder(_RecorderBase):
    """Frames and header columns in memory, one ``.npz`` written atomically by ``close``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".npz":
            raise RecordingError(f"{self.path} must end in .npz")
        self._frames: list[np.ndarray] = []
        self._rows: list[dict[str, Any]] = []
        self.n_frames = 0
        self._done = False

    def append(self, item: Received) -> None:
        row = frame_row(item)
        image = item.image
        if self._frames and (image.shape != self._frames[0].shape or image.dtype != self._frames[0].dtype):
            first = self._frames[0]
            raise RecordingError(
                f"frame seq {row['seq']} is {image.dtype} {image.shape} but the recording is {first.dtype} "
                f"{first.shape}; an .npz holds one geometry (record to a folder instead)"
            )
        self._frames.append(np.array(image))  # copy: the received buffer is read-only and reused
        self._rows.append(row)
        self.n_frames += 1

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        frames = np.stack(self._frames) if self._frames else np.zeros((0, 0, 0), dtype=np.float32)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, frames=frames, **columns_from_rows(self._rows))

    def abort(self) -> None:
        self._done = True
        self._frames.clear()


class FolderRecorder(_RecorderBase):
    """Crash-safe folder: ``frame_XXXXXX.npy`` files plus an append-only, flushed ``frames.jsonl``
    (``fsync=True`` also fsyncs each frame file and index line, for power cuts)."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RecordingError(f"{self.path} exists and is not a folder")
        if (self.path / FOLDER_INDEX).exists():
            raise FileExistsError(
                f"{self.path / FOLDER_INDEX} exists: refusing to mix two recordings; choose a new folder"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._index = open(self.path / FOLDER_INDEX, "a", encoding="utf-8")
        self.n_frames = 0

    def append(self, item: Received) -> None:
        row = frame_row(item)
        name = FOLDER_FRAME.format(self.n_frames)
        target = self.path / name
        with atomic_path(target, fsync=self._fsync) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(item.image), allow_pickle=False)
        row["file"] = name
        self._index.write(json.dumps(row, separators=(",", ":")) + "\n")
        self._index.flush()
        if self._fsync:
            os.fsync(self._index.fileno())
        self.n_frames += 1

    def close(self) -> None:
        if not self._index.closed:
            self._index.close()

    abort = close  # what is written is a valid recording


class VideoRecorder(_RecorderBase):
    """Video through ``firmware_io.frame_files.VideoWriter`` (``scale``: its display scale, None = per frame)."""

    def __init__(self, path: str | os.PathLike, *, fps: float = 25.0, scale: float | None = None) -> None:
        self.path = Path(path)
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self._writer = VideoWriter(self.path, fps=fps, scale=scale)
        self.n_frames = 0
        self._done = False

    def append(self, item: Received) -> None:
        frame_row(item)  # validates the kind
        self._writer.append(item.image)
        self.n_frames += 1

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._writer.close()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._writer.abort()


def open_recorder(out: str | os.PathLike, *, fps: float = 25.0,
                  scale: float | None = None) -> NpzRecorder | FolderRecorder | VideoRecorder:
    """A recorder chosen by ``out``: ``.npz``, a video suffix (on display ``scale``), or no suffix (a folder)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".npz":
        return NpzRecorder(out)
    if suffix in VIDEO_SUFFIXES:
        return VideoRecorder(out, fps=fps, scale=scale)
    if not suffix or out.is_dir():
        return FolderRecorder(out)
    raise RecordingError(
        f"unknown recording type {suffix!r} for {out}; use .npz, a folder, or {'/'.join(VIDEO_SUFFIXES)}"
    )


def read_npz(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(frames (n, H, W), columns)`` of an ``.npz`` recording."""
    with np.load(path, allow_pickle=False) as z:
        if "frames" not in z.files:
            raise RecordingError(f"{path} has no 'frames' array; arrays: {z.files}")
        return z["frames"], {k: z[k] for k in z.files if k != "frames"}


def read_folder(path: str | os.PathLike) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """``(frames, columns)`` of a folder recording; a torn last line (crash) is ignored."""
    path = Path(path)
    index = path / FOLDER_INDEX
    if not index.is_file():
        raise FileNotFoundError(f"{index} not found: not a spike-host folder recording")
    rows: list[dict[str, Any]] = []
    lines = index.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break  # interrupted while writing the last line
            raise RecordingError(f"{index} line {i + 1} is not JSON: {exc}") from exc
    frames = [np.load(path / row["file"], allow_pickle=False) for row in rows]
    return frames, columns_from_rows(rows)
