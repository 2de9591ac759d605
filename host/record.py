"""Recording a received frame stream: ``.npz``, a crash-safe folder, or a video; readers beside the writers.

Layouts:

- ``OUT.npz``: ``frames`` ``(n, H, W)`` in the wire dtype, plus one array per header field
  (``COLUMNS``: ``seq``, timestamps, ``stream_id`` ...) and the subscriber's ``recv_t_ns``,
  ``gap_frames``, ``skipped_frames``, ``new_stream``. Written as it is recorded, with flat memory:
  the archive (stored, zip64, the members ``numpy.savez`` writes) grows under a hidden temporary
  name beside OUT (``.OUT.npz.<random>.part``), each frame appended to its ``frames.npy`` member
  as it arrives, the header fields kept as compact typed columns (about 200 bytes a frame).
  ``close`` appends the columns, rewrites the frame count in the ``.npy`` header (fixed length) and
  the member's CRC-32 (corrected arithmetically, nothing is read back) and renames the archive into
  place. A crash (SIGKILL) leaves no half ``OUT.npz``, only the hidden temporary file.
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

import array
import contextlib
import json
import logging
import os
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from firmware_io.frame_files import VIDEO_SUFFIXES, VideoWriter
from edge.protocol.wire import FrameHeader, int_fields
from firmware_io.atomic import PendingFile, atomic_path

from .subscriber import Received

INT_COLUMNS = int_fields(FrameHeader) + ("recv_t_ns", "gap_frames", "skipped_frames")
FLOAT_COLUMNS = ("rate_hz",)
BOOL_COLUMNS = ("discontinuity", "new_stream")
STR_COLUMNS = ("stream_id", "method", "backend", "weights_id", "dtype")
COLUMNS = INT_COLUMNS + FLOAT_COLUMNS + BOOL_COLUMNS + STR_COLUMNS
log = logging.getLogger(__name__)

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


class ColumnBuffer:
    """The ``COLUMNS`` of many frames in compact typed buffers (a few hundred bytes a frame, no dicts kept)."""

    def __init__(self) -> None:
        self._ints = {name: array.array("q") for name in INT_COLUMNS}
        self._floats = {name: array.array("d") for name in FLOAT_COLUMNS}
        self._bools = {name: bytearray() for name in BOOL_COLUMNS}
        self._strs: dict[str, list[str]] = {name: [] for name in STR_COLUMNS}  # interned: repeats cost a pointer
        self.n = 0

    @staticmethod
    def prepare(row: dict[str, Any]) -> tuple:
        """Check and convert one ``frame_row`` (``RecordingError`` for a value that does not fit its column)."""
        try:
            ints = array.array("q", [int(row.get(name, 0)) for name in INT_COLUMNS])
            floats = [float(row.get(name, 0.0)) for name in FLOAT_COLUMNS]
        except (TypeError, ValueError, OverflowError) as exc:
            raise RecordingError(f"frame seq {row.get('seq')!r} has a value that does not fit its int64/float "
                                 f"column: {exc}") from exc
        bools = [1 if row.get(name, False) else 0 for name in BOOL_COLUMNS]
        strs = [sys.intern(str(row.get(name, ""))) for name in STR_COLUMNS]
        return ints, floats, bools, strs

    def add(self, row: dict[str, Any], prepared: tuple | None = None) -> None:
        """Append one ``frame_row`` (or what ``prepare`` made of it); nothing changes if it does not fit."""
        ints, floats, bools, strs = prepared if prepared is not None else self.prepare(row)
        for name, value in zip(INT_COLUMNS, ints):
            self._ints[name].append(value)
        for name, value in zip(FLOAT_COLUMNS, floats):
            self._floats[name].append(value)
        for name, value in zip(BOOL_COLUMNS, bools):
            self._bools[name].append(value)
        for name, value in zip(STR_COLUMNS, strs):
            self._strs[name].append(value)
        self.n += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """One array per column, typed like ``columns_from_rows``."""
        cols: dict[str, np.ndarray] = {}
        for name, values in self._ints.items():
            cols[name] = np.frombuffer(values, dtype=np.int64).copy() if values else np.zeros(0, np.int64)
        for name, values in self._floats.items():
            cols[name] = np.frombuffer(values, dtype=np.float64).copy() if values else np.zeros(0, np.float64)
        for name, values in self._bools.items():
            cols[name] = np.frombuffer(bytes(values), dtype=np.uint8).astype(bool)
        for name, values in self._strs.items():
            cols[name] = np.array(values, dtype=np.str_)
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


# -- .npz written as it is recorded --------------------------------------------------------------------------
# The frames member is written as frames arrive, behind an .npy header whose length is fixed up front; at
# the end the header is rewritten with the final count and the member's CRC-32 is corrected for it. CRC-32
# is linear: for equal-length prefixes A and B, crc(B+D) = crc(A+D) ^ shift(crc(A) ^ crc(B), len(D)), where
# shift multiplies by x^(8 len(D)) modulo the CRC polynomial, so nothing is read back.

NPY_HEADER_BYTES = 128  # the frames member's .npy header, padded to this length (a multiple of 64)
_CRC32_POLY = 0xEDB88320  # CRC-32 (zip, zlib), bit-reflected


def _gf2_mulmod(a: int, b: int) -> int:
    """Product of two bit-reflected polynomials modulo the CRC-32 polynomial (bit 31 is x^0)."""
    product = 0
    for bit in range(31, -1, -1):
        if a >> bit & 1:
            product ^= b
        b = (b >> 1) ^ _CRC32_POLY if b & 1 else b >> 1
    return product


def crc32_shift(crc: int, nbytes: int) -> int:
    """``crc`` times x^(8 nbytes) modulo the CRC-32 polynomial: what ``crc`` contributes after ``nbytes`` more bytes."""
    result, power = crc, 1 << 23  # x^8: one byte
    while nbytes:
        if nbytes & 1:
            result = _gf2_mulmod(power, result)
        power = _gf2_mulmod(power, power)
        nbytes >>= 1
    return result


def crc32_replace_prefix(crc: int, old_prefix: bytes, new_prefix: bytes, rest_bytes: int) -> int:
    """CRC-32 of ``new_prefix + rest`` from the CRC-32 of ``old_prefix + rest`` (prefixes of equal length)."""
    if len(old_prefix) != len(new_prefix):
        raise ValueError(f"prefixes differ in length: {len(old_prefix)} and {len(new_prefix)} bytes")
    return crc ^ crc32_shift(zlib.crc32(old_prefix) ^ zlib.crc32(new_prefix), rest_bytes)


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """An .npy (version 1.0) header for a C-order array, padded to exactly ``NPY_HEADER_BYTES``."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.lib.format.dtype_to_descr(dtype), tuple(shape))
    body = NPY_HEADER_BYTES - 10
    if len(text) + 1 > body:
        raise RecordingError(f"an .npy header for {dtype} {shape} does not fit {NPY_HEADER_BYTES} bytes")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body) + (text.ljust(body - 1) + "\n").encode("latin1")


class NpzRecorder(_RecorderBase):
    """Frames written into the ``.npz`` as they arrive, header columns in compact buffers; ``close`` adds the
    columns, fixes the frame count and renames the archive into place (memory stays flat whatever the
    length of the recording, and closing takes about as long as writing the columns)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".npz":
            raise RecordingError(f"{self.path} must end in .npz")
        self._pending: PendingFile | None = None  # the archive being written, created with the first frame
        self._zip: zipfile.ZipFile | None = None
        self._member = None
        self._geometry: tuple[tuple[int, ...], np.dtype] | None = None
        self._columns = ColumnBuffer()
        self.n_frames = 0
        self._done = False

    def _start(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._geometry = (shape, dtype)
        self._pending = PendingFile(self.path, ".part")
        with self._pending.guard():
            self._zip = zipfile.ZipFile(self._pending.path, "w", zipfile.ZIP_STORED, allowZip64=True)
            self._member = self._zip.open("frames.npy", "w", force_zip64=True)
            self._member.write(self._frames_header(self.MAX_FRAMES))  # placeholder count, same length

    MAX_FRAMES = 10**18  # the placeholder count: as many digits as any real one needs

    def _frames_header(self, n: int) -> bytes:
        shape, dtype = self._geometry
        return npy_header((n, *shape), dtype)

    def append(self, item: Received) -> None:
        if self._done:
            raise RecordingError(f"{self.path} is already closed")
        row = frame_row(item)
        image = np.ascontiguousarray(item.image)
        if self._geometry is None:
            self._start(tuple(image.shape), image.dtype)
        elif (tuple(image.shape), image.dtype) != self._geometry:
            shape, dtype = self._geometry
            raise RecordingError(
                f"frame seq {row['seq']} is {image.dtype} {image.shape} but the recording is {dtype} "
                f"{shape}; an .npz holds one geometry (record to a folder instead)"
            )
        prepared = self._columns.prepare(row)  # a row that does not fit is refused before anything is written
        self._member.write(memoryview(image).cast("B"))
        self._columns.add(row, prepared)
        self.n_frames += 1

    @property
    def partial_path(self) -> Path | None:
        """The hidden file the archive is written to until ``close`` (None before the first frame)."""
        return None if self._pending is None else self._pending.path

    def close(self) -> None:
        """Finish the archive (columns, frame count, CRC) and rename it to ``path``."""
        if self._done:
            return
        self._done = True
        if self._pending is None:  # no frame: an empty recording, like numpy.savez would write it
            with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
                np.savez(f, frames=np.zeros((0, 0, 0), dtype=np.float32), **self._columns.arrays())
            return
        with self._pending.guard():
            n = self.n_frames
            shape, dtype = self._geometry
            frame_bytes = n * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            self._member.close()
            info = self._zip.getinfo("frames.npy")
            old, new = self._frames_header(self.MAX_FRAMES), self._frames_header(n)
            info.CRC = crc32_replace_prefix(info.CRC, old, new, info.file_size - len(old))
            for name, values in self._columns.arrays().items():
                with self._zip.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, values, allow_pickle=False)
            self._zip.close()  # the central directory carries the corrected CRC
            if info.file_size < len(old) + frame_bytes:
                raise RecordingError(f"{self._pending.path} holds {info.file_size} bytes of frames, fewer than "
                                     f"the {frame_bytes} of {n} frames")
            with open(self._pending.path, "r+b") as f:  # the local header's CRC, then the real count
                f.seek(info.header_offset)
                local = f.read(30)
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                f.seek(info.header_offset + 14)
                f.write(struct.pack("<I", info.CRC))
                f.seek(info.header_offset + 30 + name_len + extra_len)
                f.write(new)
            self._pending.commit()

    def abort(self) -> None:
        self._done = True
        if self._pending is not None:
            for handle in (self._member, self._zip):
                if handle is not None:
                    with contextlib.suppress(Exception):  # the file is deleted next: only the handles matter
                        handle.close()
            self._pending.abort()


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
    """``(frames, columns)`` of a folder recording; a torn last line (crash) is ignored, and so is (with a
    warning) a line whose values do not fit the columns (written by a version that did not check them)."""
    path = Path(path)
    index = path / FOLDER_INDEX
    if not index.is_file():
        raise FileNotFoundError(f"{index} not found: not a spike-host folder recording")
    columns = ColumnBuffer()
    files: list[str] = []
    lines = index.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break  # interrupted while writing the last line
            raise RecordingError(f"{index} line {i + 1} is not JSON: {exc}") from exc
        try:
            columns.add(row)
        except RecordingError as exc:
            log.warning("%s line %d skipped: %s", index, i + 1, exc)
            continue
        files.append(row["file"])
    frames = [np.load(path / name, allow_pickle=False) for name in files]
    return frames, columns.arrays()
