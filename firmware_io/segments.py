"""Recording folders: a stream's planes in rotating ``.dat`` segments with a JSON sidecar each (writer and reader).

A folder written by ``SegmentedWriter`` (``spike-edge run --record DIR``) holds::

    segment-000000.dat   packed planes exactly as captured (firmware_io.contract), no header: a plain .dat
    segment-000000.json  its sidecar
    segment-000001.dat   ...

Sidecar (one JSON object, ``SIDECAR_FORMAT`` version ``SIDECAR_VERSION``):

- ``segment`` (index), ``file`` (the ``.dat`` name), ``status``: ``open`` while being written, ``closed``
  once complete;
- geometry: ``height``, ``width``, ``plane_bytes``; ``layout``: ``packed`` (the contract's camera-order
  packed planes); ``rate_hz``: the stream's plane rate;
- ``first_plane``: stream index of the segment's first stored plane; ``n_planes``, ``stop_plane``
  (stream index after its last) and ``bytes``: null while open;
- ``gaps``: ``[{"start", "stop", "cause"}]``, stream-index ranges missing between the segment's planes,
  or just before its first one (since the previous segment); ``cause`` is a ``MissingCause``:
  ``source-gap`` (never delivered by the source), ``dropped`` (the recorder fell behind);
- ``started_unix_ns`` / ``started_utc``: wall clock when its first plane was captured;
  ``closed_utc``; ``sha256`` of the ``.dat`` (null until closed); ``stream_id`` and ``source`` when known.

Crash safety (the writer may be SIGKILLed at any point): a segment's sidecar is written (atomically)
before its ``.dat`` is created; a gap is added to the sidecar (atomic rewrite) before the planes
after it are written; every plane ``write`` has accepted is in the ``.dat`` when it returns (``pwrite``
calls, below), whatever happens to the process afterwards. Closing fsyncs the data, then rewrites
the sidecar as ``closed`` with ``n_planes`` and ``sha256`` (computed while writing, on a second thread
while the planes go to disk). So after a crash the last segment is ``open`` and holds every plane
written, up to the last whole one.
A rotated-out segment is closed by a background thread while writing goes on in the next one, so
flushing a segment's data to disk never holds up the writer; ``close`` waits for all of them.

Writes bypass the page cache (``O_DIRECT``) where the file system allows it: planes are copied into
a page-aligned staging buffer and its whole 4 KiB blocks written directly; the few bytes after the
last whole block also go to the file through an ordinary write (and are rewritten with the next
block), so the file always holds every plane written. Streaming hundreds of MB/s through the page
cache costs about a core of kernel time per 500 MB/s here and evicts everything else cached;
direct writes cost almost nothing. Where ``O_DIRECT`` is refused, plain writes are used.

Reading (``SegmentedReader``, through ``firmware_io.recording.open_recording(FOLDER)``): segments in
index order; plane 0 of the reader is the first stored plane and indices follow the stream, so a gap
of the stream is a gap of the reader (``gaps``, ``MissingRange``). A closed segment must hold exactly
its ``n_planes``; an open one (or one whose sidecar is missing) holds ``size // plane_bytes`` planes
(a trailing partial plane is ignored); a segment without a sidecar is assumed to follow the previous
one directly, and holes nobody accounted for get cause ``unknown``.

Limits the writer enforces before every write (``RecordingFull`` names which): ``max_bytes`` in all
(a quota) and ``min_free_bytes`` left on the file system (checked on each new segment and every
``FREE_CHECK_BYTES`` written); a write that fails with ENOSPC/EDQUOT/EFBIG is cut back to its last
whole plane and reported the same way. A segment with ``MAX_GAPS_PER_SEGMENT`` gaps is rotated early,
so a sidecar stays small however lossy the stream.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import enum
import errno
import hashlib
import json
import mmap
import os
import re
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from firmware_io.atomic import atomic_path, write_text_atomic
from firmware_io.bitpack import unpack_planes
from firmware_io.contract import FormatError, Geometry
from firmware_io.dat import DatReader
from firmware_io.plane_range import MissingCause, MissingPlanesError, MissingRange, PlaneRangeReader

SIDECAR_FORMAT = "spike-edge-segment"
SIDECAR_VERSION = 1
PACKED_LAYOUT = "packed"  # the contract's camera-order packed planes: the only layout a recorder writes
SEGMENT_NAME = re.compile(r"^segment-(\d{6,})\.(dat|json)$")
FREE_CHECK_BYTES = 64 * 1024 * 1024  # re-check free space after this much written
MAX_GAPS_PER_SEGMENT = 1024
MAX_OPEN_SEGMENTS = 16  # memory maps a reader keeps open at once
DIRECT_ALIGN = 4096  # O_DIRECT offsets, lengths and buffer addresses are multiples of this
STAGE_BYTES = 16 * 1024 * 1024  # the aligned staging buffer of the O_DIRECT writes


class SegmentStatus(str, enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class FullReason(str, enum.Enum):
    """Why a ``SegmentedWriter`` stopped taking planes."""

    QUOTA = "quota"  # max_bytes reached
    DISK_FULL = "disk-full"  # the file system is (nearly) full: min_free_bytes, ENOSPC, EDQUOT or EFBIG


class RecordingFull(Exception):
    """The writer wrote ``planes_written`` planes of the last block and can take no more (``reason``)."""

    def __init__(self, reason: FullReason, message: str, planes_written: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.planes_written = planes_written


def segment_stem(index: int) -> str:
    return f"segment-{index:06d}"


def _utc(unix_ns: int) -> str:
    return datetime.fromtimestamp(unix_ns / 1e9, tz=timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def is_recording_folder(path: str | os.PathLike) -> bool:
    """``path`` is a folder (recording folders are the only folders spike files come in)."""
    return Path(path).is_dir()


def _segment_files(folder: Path) -> dict[int, dict[str, Path]]:
    """index -> {"dat": path, "json": path} for the segment files in ``folder`` (hidden temporaries skipped)."""
    found: dict[int, dict[str, Path]] = {}
    for entry in os.scandir(folder):
        match = SEGMENT_NAME.match(entry.name)
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = Path(entry.path)
    return found


def prepare_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and parents) for a new recording; refuse one that already holds segments.

    ``ValueError`` naming the folder when it is a file, holds a recording, or cannot be written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"record folder {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the record folder {folder}: {exc}") from None
    if _segment_files(folder):
        raise ValueError(f"record folder {folder} already holds a recording (segment-*.dat); choose a new folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"record folder {folder} is not writable")
    return folder


# -- writing ----------------------------------------------------------------------------------------
def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


class _Appender:
    """Appends bytes to a new file, with ``O_DIRECT`` through ``stage`` where possible (module docstring)."""

    def __init__(self, path: Path, stage: mmap.mmap | None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        self.direct = None
        if stage is not None and hasattr(os, "O_DIRECT"):
            try:
                self.direct = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            except OSError:
                self.direct = None  # a file system without O_DIRECT (tmpfs): plain writes
        self.stage = stage
        self.flushed = 0  # bytes written directly (a multiple of DIRECT_ALIGN)
        self.staged = 0  # bytes after them, in the stage (and in the file through the plain descriptor)

    @property
    def size(self) -> int:
        return self.flushed + self.staged

    def append(self, data: memoryview) -> None:
        if self.direct is None:
            _pwrite_all(self.fd, data, self.size)
            self.flushed += len(data)
            return
        stage, pos = self.stage, 0
        while pos < len(data):
            k = min(len(stage) - self.staged, len(data) - pos)
            stage[self.staged: self.staged + k] = data[pos: pos + k]
            self.staged += k
            pos += k
            whole = self.staged // DIRECT_ALIGN * DIRECT_ALIGN
            if whole:
                self._write_direct(memoryview(stage)[:whole])
                self.flushed += whole
                rest = self.staged - whole
                stage[:rest] = stage[whole: self.staged]
                self.staged = rest
        if self.staged:  # the tail: in the file now, rewritten by the next direct write
            _pwrite_all(self.fd, memoryview(stage)[: self.staged], self.flushed)

    def _write_direct(self, block: memoryview) -> None:
        try:
            _pwrite_all(self.direct, block, self.flushed)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            os.close(self.direct)  # accepted at open, refused at write: plain writes from now on
            self.direct = None
            _pwrite_all(self.fd, block, self.flushed)

    def truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes (after a failed write; no more appends follow)."""
        os.ftruncate(self.fd, size)

    def close(self) -> None:
        """fsync, drop the file from the page cache, close."""
        try:
            os.fdatasync(self.fd)
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)  # on disk now: leave the page cache to others
        finally:
            os.close(self.fd)
            if self.direct is not None:
                os.close(self.direct)
            self.fd, self.direct = -1, None


class _SegmentFile:
    """One segment being written: its sidecar (open), its ``.dat`` and the running sha256."""

    def __init__(self, folder: Path, index: int, geometry: Geometry, rate_hz: float, first_plane: int,
                 started_unix_ns: int, gaps: list[MissingRange], meta: dict[str, Any],
                 stage: mmap.mmap | None = None, hasher: concurrent.futures.Executor | None = None) -> None:
        self.index = index
        self.data_path = folder / f"{segment_stem(index)}.dat"
        self.sidecar_path = folder / f"{segment_stem(index)}.json"
        self.geometry = geometry
        self.rate_hz = rate_hz
        self.first_plane = first_plane
        self.started_unix_ns = started_unix_ns
        self.gaps = list(gaps)
        self.meta = meta
        self.n_planes = 0
        self._sha = hashlib.sha256()
        self._write_sidecar(SegmentStatus.OPEN, fsync=True)  # before the .dat exists: readers always find one
        self._file: _Appender | None = _Appender(self.data_path, stage)
        self._hasher = hasher

    @property
    def stop_plane(self) -> int:
        """Stream index after the last stored plane."""
        return self.first_plane + self.n_planes + sum(g.n_planes for g in self.gaps if g.start >= self.first_plane)

    def sidecar(self, status: SegmentStatus) -> dict[str, Any]:
        closed = status is SegmentStatus.CLOSED
        return {
            "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "segment": self.index, "file": self.data_path.name,
            "status": status.value, "height": self.geometry.height, "width": self.geometry.width,
            "plane_bytes": self.geometry.plane_bytes, "layout": PACKED_LAYOUT, "rate_hz": self.rate_hz,
            "first_plane": self.first_plane,
            "n_planes": self.n_planes if closed else None,
            "stop_plane": self.stop_plane if closed else None,
            "bytes": self.n_planes * self.geometry.plane_bytes if closed else None,
            "gaps": [{"start": g.start, "stop": g.stop, "cause": g.cause.value} for g in self.gaps],
            "started_unix_ns": self.started_unix_ns, "started_utc": _utc(self.started_unix_ns),
            "closed_utc": _utc(time.time_ns()) if closed else None,
            "sha256": self._sha.hexdigest() if closed else None,
            **self.meta,
        }

    def _write_sidecar(self, status: SegmentStatus, *, fsync: bool) -> None:
        text = json.dumps(self.sidecar(status), indent=1) + "\n"
        if fsync:
            write_text_atomic(self.sidecar_path, text)
        else:  # gap updates: atomic for readers, durability left to the kernel (rare, but may come in bursts)
            with atomic_path(self.sidecar_path, fsync=False) as tmp:
                tmp.write_text(text)

    def add_gaps(self, gaps: list[MissingRange]) -> None:
        self.gaps.extend(gaps)
        self._write_sidecar(SegmentStatus.OPEN, fsync=False)

    def write(self, planes: np.ndarray) -> None:
        """Append whole planes; on a failed write the file is cut back to its last whole plane and it raises."""
        view = memoryview(np.ascontiguousarray(planes)).cast("B")
        sha = self._sha.copy()  # becomes the segment's digest once the planes are in the file
        hashed = self._hasher.submit(sha.update, view) if self._hasher is not None else None
        try:
            self._file.append(view)  # while the hash is computed (both release the GIL)
        except OSError:
            self._file.truncate(self.n_planes * self.geometry.plane_bytes)
            raise
        finally:
            if hashed is not None:
                hashed.result()
        if hashed is None:
            sha.update(view)
        self._sha = sha
        self.n_planes += planes.shape[0]

    def close(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        file.close()
        self._write_sidecar(SegmentStatus.CLOSED, fsync=True)


class SegmentedWriter:
    """Writes a stream's planes into rotating segments of ``folder`` (see the module docstring).

    ``write(first_plane, planes)`` appends planes whose stream indices start at ``first_plane``;
    missing planes are declared with ``gap(start, stop, cause)`` first (an undeclared jump is recorded
    with cause ``unknown``). Raises ``RecordingFull`` when a limit stops it (the planes that fit are
    written first); ``close`` completes the last segment. ``started_unix_ns`` of a segment is taken from
    ``capture_unix_ns`` of its first write (default: now).
    """

    def __init__(self, folder: str | os.PathLike, geometry: Geometry, rate_hz: float, *, segment_bytes: int,
                 max_bytes: int | None = None, min_free_bytes: int = 0, meta: dict[str, Any] | None = None) -> None:
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes!r}")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes!r}")
        self.folder = prepare_folder(folder)
        self.geometry = geometry
        self.rate_hz = float(rate_hz)
        self.planes_per_segment = max(1, segment_bytes // geometry.plane_bytes)
        self.max_bytes = max_bytes
        self.min_free_bytes = int(min_free_bytes)
        self.meta = {k: v for k, v in (meta or {}).items() if v is not None}
        self.next_plane: int | None = None  # stream index expected next
        self.planes_written = 0
        self.segments = 0
        self.full: RecordingFull | None = None
        self.closed = False
        self._segment: _SegmentFile | None = None
        self._closing: list[concurrent.futures.Future] = []  # rotated-out segments being closed
        self._closer: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list[MissingRange] = []  # gaps not yet in a sidecar
        self._stage = mmap.mmap(-1, STAGE_BYTES)  # page-aligned: the O_DIRECT staging buffer, one segment at a time
        self._hasher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="segment-sha256")
        self._free_bytes = 0  # free space at the last check, when bytes_written was _free_checked_at
        self._free_checked_at = 0

    @property
    def bytes_written(self) -> int:
        return self.planes_written * self.geometry.plane_bytes

    def gap(self, start: int, stop: int, cause: MissingCause) -> None:
        """Planes ``[start, stop)`` of the stream will not come (``start`` is the next expected plane)."""
        if self.next_plane is None or stop <= start:
            return  # nothing recorded yet: the recording starts after it
        if start != self.next_plane:
            raise ValueError(f"a gap must start at the next plane {self.next_plane}, got [{start}, {stop})")
        last = self._pending[-1] if self._pending else None
        if last is not None and last.stop == start and last.cause is cause:
            self._pending[-1] = MissingRange(last.start, stop, cause)
        else:
            self._pending.append(MissingRange(start, stop, cause))
        self.next_plane = stop

    def _check_limits(self, n: int) -> int:
        """How many of ``n`` planes the quota and the free-space reserve let through now."""
        pb = self.geometry.plane_bytes
        fit = n
        if self.max_bytes is not None:
            fit = min(fit, max(0, (self.max_bytes - self.bytes_written) // pb))
        rotating = self._segment is None or self._segment.n_planes >= self.planes_per_segment
        if rotating or self.bytes_written - self._free_checked_at >= FREE_CHECK_BYTES:
            st = os.statvfs(self.folder)
            self._free_bytes, self._free_checked_at = st.f_bavail * st.f_frsize, self.bytes_written
        free_now = self._free_bytes - (self.bytes_written - self._free_checked_at)
        return min(fit, max(0, (free_now - self.min_free_bytes) // pb))

    def _full(self, reason: FullReason, written: int, detail: str) -> RecordingFull:
        self.full = RecordingFull(reason, f"recording stopped ({reason.value}): {detail}", written)
        return self.full

    def write(self, first_plane: int, planes: np.ndarray, capture_unix_ns: int | None = None) -> None:
        planes = np.asarray(planes)
        pb = self.geometry.plane_bytes
        if planes.ndim != 2 or planes.dtype != np.uint8 or planes.shape[1] != pb:
            raise ValueError(f"expected uint8 (n, {pb}) packed {self.geometry} planes, got {planes.dtype} {planes.shape}")
        if self.full is not None:
            raise self.full
        if self.closed:
            raise ValueError(f"the recording in {self.folder} is closed")
        n = planes.shape[0]
        if n == 0:
            return
        if self.next_plane is not None and first_plane < self.next_plane:
            raise ValueError(f"plane indices must increase: block starts at {first_plane}, expected {self.next_plane}")
        if self.next_plane is not None and first_plane > self.next_plane:
            self.gap(self.next_plane, first_plane, MissingCause.UNKNOWN)
        self.next_plane = first_plane
        fit = self._check_limits(n)
        done = 0
        while done < fit:
            segment = self._segment_for(first_plane + done, capture_unix_ns)
            k = min(fit - done, self.planes_per_segment - segment.n_planes)
            try:
                segment.write(planes[done: done + k])
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    self.next_plane = first_plane + done
                    raise self._full(FullReason.DISK_FULL, done, f"writing {segment.data_path}: {exc.strerror}") from None
                raise
            done += k
            self.planes_written += k
            self.next_plane = first_plane + done
        if fit < n:
            if self.max_bytes is not None and self.bytes_written + pb > self.max_bytes:
                raise self._full(FullReason.QUOTA, fit, f"{self.bytes_written} bytes written, quota {self.max_bytes}")
            raise self._full(FullReason.DISK_FULL, fit,
                             f"fewer than {self.min_free_bytes} bytes would be left free on {self.folder}")

    def _segment_for(self, plane: int, capture_unix_ns: int | None) -> _SegmentFile:
        """The segment the planes from stream index ``plane`` go to (rotating, recording pending gaps)."""
        seg = self._segment
        if seg is not None and (seg.n_planes >= self.planes_per_segment
                                or len(seg.gaps) + len(self._pending) > MAX_GAPS_PER_SEGMENT):
            self._close_in_background(seg)
            self._segment = seg = None
        if seg is None:
            seg = _SegmentFile(self.folder, self.segments, self.geometry, self.rate_hz, plane,
                               capture_unix_ns if capture_unix_ns is not None else time.time_ns(),
                               self._pending, self.meta, self._stage, self._hasher)
            self._segment = seg
            self.segments += 1
        elif self._pending:
            seg.add_gaps(self._pending)
        self._pending = []
        return seg

    def _close_in_background(self, segment: _SegmentFile) -> None:
        """Close ``segment`` on the closer thread; raise here the error of any earlier close that failed."""
        if self._closer is None:
            self._closer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="segment-closer")
        done = [f for f in self._closing if f.done()]
        self._closing = [f for f in self._closing if not f.done()] + [self._closer.submit(segment.close)]
        for future in done:
            future.result()

    def close(self) -> None:
        """Complete the last segment (fsync, sidecar ``closed`` with its sha256) and wait for the
        segments still closing. Idempotent."""
        self.closed = True
        try:
            if self._segment is not None:
                segment, self._segment = self._segment, None
                segment.close()
        finally:
            self._hasher.shutdown(wait=True)
            closing, self._closing = self._closing, []
            if self._closer is not None:
                self._closer.shutdown(wait=True)
                self._closer = None
            for future in closing:
                future.result()

    def __enter__(self) -> "SegmentedWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentInfo:
    """One segment as the reader found it."""

    index: int
    data_path: Path | None
    sidecar: dict[str, Any] | None  # None: missing
    status: SegmentStatus | None  # None: no sidecar
    n_planes: int  # planes usable from its .dat
    first_plane: int  # stream index of its first stored plane
    runs: tuple[tuple[int, int, int], ...]  # (stream start, stream stop, plane offset in the .dat)


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"cannot read the segment sidecar {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise FormatError(f"{path} is not a {SIDECAR_FORMAT} sidecar")
    if data.get("version") != SIDECAR_VERSION:
        raise FormatError(f"{path}: sidecar version {data.get('version')!r} is not supported (expected {SIDECAR_VERSION})")
    if data.get("layout") != PACKED_LAYOUT:
        raise FormatError(f"{path}: layout {data.get('layout')!r} is not supported (expected {PACKED_LAYOUT!r})")
    for key in ("height", "width", "first_plane"):
        if not isinstance(data.get(key), int) or data[key] < (0 if key == "first_plane" else 1):
            raise FormatError(f"{path}: {key} must be a non-negative integer, got {data.get(key)!r}")
    try:
        data["status"] = SegmentStatus(data.get("status"))
        data["gaps"] = [MissingRange(int(g["start"]), int(g["stop"]), MissingCause(g["cause"]))
                        for g in data.get("gaps") or []]
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{path}: bad status or gaps: {exc}") from None
    if data["status"] is SegmentStatus.CLOSED and not isinstance(data.get("n_planes"), int):
        raise FormatError(f"{path}: a closed segment needs n_planes, got {data.get('n_planes')!r}")
    return data


def folder_metadata(folder: str | os.PathLike) -> tuple[Geometry | None, float | None]:
    """The geometry and plane rate a recording folder's first readable sidecar states (None, None if none)."""
    files = _segment_files(Path(folder))
    for index in sorted(files):
        if "json" in files[index]:
            try:
                data = _read_sidecar(files[index]["json"])
            except FormatError:
                continue
            rate = data.get("rate_hz")
            return Geometry(data["height"], data["width"]), float(rate) if isinstance(rate, (int, float)) else None
    return None, None


def _runs(first: int, n: int, gaps: list[MissingRange], where: Path) -> list[tuple[int, int, int]]:
    """The stored runs of a segment holding ``n`` planes from stream index ``first``, around its gaps."""
    runs, pos, offset = [], first, 0
    for gap in sorted(gaps, key=lambda g: g.start):
        if gap.stop <= first:
            continue  # a gap before the segment's first plane (since the previous segment)
        if offset == n:
            break  # gaps recorded after the last plane written (the writer was stopped there)
        if gap.start < pos:
            raise FormatError(f"{where}: gap [{gap.start}, {gap.stop}) overlaps stored planes")
        k = min(gap.start - pos, n - offset)
        if k:
            runs.append((pos, pos + k, offset))
        offset += k
        pos = gap.stop
    if offset < n:
        runs.append((pos, pos + n - offset, offset))
    return runs


class SegmentedReader(PlaneRangeReader):
    """The planes of a recording folder (see the module docstring); plane 0 is the first stored plane.

    ``first_plane``: its stream index; ``gaps``: the stream's missing ranges (reader indices);
    ``segments``: ``SegmentInfo`` per segment; ``open_segments``: segments not closed (the writer did
    not finish them: a crash, or still recording); ``rate_hz``: the recorded plane rate (None if no
    sidecar says). ``with_head`` does not apply (segments hold contract planes).
    """

    def __init__(self, path: str | os.PathLike, geometry: Geometry | None = None, *, allow_partial: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no such recording folder: {self.path}")
        files = _segment_files(self.path)
        if not files:
            raise FormatError(f"{self.path} holds no segments (segment-NNNNNN.dat); not a recording folder")
        sidecars = {i: _read_sidecar(f["json"]) for i, f in files.items() if "json" in f}
        shapes = {(d["height"], d["width"]) for d in sidecars.values()}
        if len(shapes) > 1:
            raise FormatError(f"the segments of {self.path} disagree on the geometry: {sorted(shapes)}")
        if shapes:
            found = Geometry(*shapes.pop())
            if geometry is not None and geometry != found:
                raise ValueError(f"{self.path} holds {found} planes, but {geometry} was requested")
            geometry = found
        elif geometry is None:
            raise FormatError(f"no segment of {self.path} has its sidecar: give the geometry (--height/--width)")
        self.geometry = geometry
        rates = {float(d["rate_hz"]) for d in sidecars.values() if isinstance(d.get("rate_hz"), (int, float))}
        if len(rates) > 1:
            raise FormatError(f"the segments of {self.path} disagree on the plane rate: {sorted(rates)}")
        self.rate_hz = rates.pop() if rates else None
        self.segments: list[SegmentInfo] = []
        recorded_gaps: list[MissingRange] = []
        prev_stop = None
        pb = geometry.plane_bytes
        for index in sorted(files):
            data_path = files[index].get("dat")
            size = data_path.stat().st_size if data_path is not None else 0
            sidecar = sidecars.get(index)
            if sidecar is not None:
                first = sidecar["first_plane"]
                gaps = sidecar["gaps"]
                recorded_gaps.extend(gaps)
                n = size // pb  # an open segment: every whole plane written so far
                if sidecar["status"] is SegmentStatus.CLOSED:
                    n = min(n, sidecar["n_planes"])
                    if size != sidecar["n_planes"] * pb:
                        message = (f"{data_path or files[index]['json']} is {size} bytes, but its sidecar says "
                                   f"{sidecar['n_planes']} planes of {pb} bytes")
                        if not allow_partial:
                            raise FormatError(message + "; allow_partial (--allow-partial) reads the planes there are")
                        warnings.warn(message + f"; reading {n} planes", stacklevel=2)
            else:
                first, gaps, n = (prev_stop or 0), [], size // pb
            if n and prev_stop is not None and first < prev_stop:
                raise FormatError(f"segment {index} of {self.path} starts at plane {first}, before the previous "
                                  f"segment ends ({prev_stop})")
            runs = _runs(first, n, gaps, files[index].get("json", data_path)) if n else []
            self.segments.append(SegmentInfo(index, data_path, sidecar, sidecar["status"] if sidecar else None,
                                             n, first, tuple(runs)))
            if runs:
                prev_stop = runs[-1][1]
        all_runs = [(a, b, i, off) for i, seg in enumerate(self.segments) for a, b, off in seg.runs]
        if not all_runs:
            raise FormatError(f"{self.path} holds no whole plane")
        self.first_plane = all_runs[0][0]
        self.n_planes = all_runs[-1][1] - self.first_plane
        self._runs = [(a - self.first_plane, b - self.first_plane, i, off) for a, b, i, off in all_runs]
        self._run_starts = [r[0] for r in self._runs]
        holes, pos = [], 0
        for a, b, _, _ in self._runs:
            if a > pos:
                holes.append((pos, a))
            pos = b
        self.gaps = tuple(_label(holes, recorded_gaps, self.first_plane))
        self.open_segments = sum(1 for s in self.segments if s.status is not SegmentStatus.CLOSED)
        self._maps: collections.OrderedDict[int, DatReader] = collections.OrderedDict()

    # -- plane access -----------------------------------------------------------------------------
    def _map(self, seg: int) -> DatReader:
        reader = self._maps.pop(seg, None)
        if reader is None:
            info = self.segments[seg]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a trailing partial plane of an open segment is expected
                reader = DatReader(info.data_path, self.geometry, allow_partial=True)
            if len(self._maps) >= MAX_OPEN_SEGMENTS:
                _, oldest = self._maps.popitem(last=False)
                oldest.close()  # views handed out keep their map alive (DatReader.close tolerates them)
        self._maps[seg] = reader
        return reader

    def _run_at(self, plane: int) -> int | None:
        """Index of the run holding ``plane``, or None when it is missing."""
        i = bisect.bisect_right(self._run_starts, plane) - 1
        return i if i >= 0 and plane < self._runs[i][1] else None

    def run_stop(self, plane: int) -> int:
        i = self._run_at(plane)
        return plane if i is None else self._runs[i][1]

    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Packed planes ``[start, stop)`` (a view of one segment's map when they lie in one run).
        ``MissingPlanesError`` when the range touches a gap."""
        start, stop = self._range(start, stop)
        if start == stop:
            return np.empty((0, self.geometry.plane_bytes), dtype=np.uint8)
        gap = self.gap_in(start, stop)
        if gap is not None:
            raise MissingPlanesError(f"planes [{start}, {stop}) of {self.path} include planes [{gap.start}, {gap.stop}) "
                                     f"that were not recorded ({gap.cause.value})")
        pieces, pos = [], start
        while pos < stop:
            a, b, seg, offset = self._runs[self._run_at(pos)]
            end = min(b, stop)
            pieces.append(self._map(seg).packed(offset + pos - a, offset + end - a))
            pos = end
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def unpacked(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return unpack_planes(self.packed(start, stop), self.geometry)

    def verify(self) -> list[str]:
        """Check every closed segment's sha256 against its sidecar; the problems found (empty: all good)."""
        problems = []
        for seg in self.segments:
            if seg.status is not SegmentStatus.CLOSED or seg.data_path is None:
                continue
            digest = hashlib.sha256()
            with open(seg.data_path, "rb") as f:
                while chunk := f.read(8 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != seg.sidecar.get("sha256"):
                problems.append(f"{seg.data_path}: sha256 {digest.hexdigest()} differs from its sidecar's "
                                f"{seg.sidecar.get('sha256')}")
        return problems

    def close(self) -> None:
        for reader in self._maps.values():
            reader.close()
        self._maps.clear()


def _label(holes: list[tuple[int, int]], recorded: list[MissingRange], offset: int) -> list[MissingRange]:
    """The holes between stored runs (reader indices) with the causes the sidecars give (``unknown`` elsewhere)."""
    recorded = sorted((MissingRange(g.start - offset, g.stop - offset, g.cause) for g in recorded), key=lambda g: g.start)
    out: list[MissingRange] = []
    for a, b in holes:
        pos = a
        for g in recorded:
            if g.stop <= pos or g.start >= b:
                continue
            if g.start > pos:
                out.append(MissingRange(pos, g.start, MissingCause.UNKNOWN))
            out.append(MissingRange(max(g.start, pos), min(g.stop, b), g.cause))
            pos = min(g.stop, b)
        if pos < b:
            out.append(MissingRange(pos, b, MissingCause.UNKNOWN))
    return out
