"""How the ring's writer and reader processes see each other's writes, on any CPU.

``SpikeRing`` (``edge.live.ring``) reaches its shared memory only through one of two accessors:

- ``AtomicAccess`` (``SyncMode.ATOMIC``, the default): a small C helper (``ringsync.c``, compiled on
  first use by ``firmware_io.cbuild`` and cached, like the spike counter) does every shared access
  with C11 acquire/release ordering: header words are acquire loads and release stores, and the
  per-slot seqlock of ring.py's docstring runs in C with the fences a weakly ordered CPU (aarch64,
  the Jetson) needs. Nobody waits on anybody.
- ``LockedAccess`` (``SyncMode.LOCK``, the fallback where no C compiler exists, or with
  ``SPIKE_EDGE_NATIVE=0``): every shared access, header words included, happens under one lock
  shared by all processes and threads using the ring: an exclusive ``flock`` on the ring's own
  ``/dev/shm`` file (one open file description per ``SpikeRing``, so two attachments exclude each
  other even in one process) plus a thread lock per ``SpikeRing`` (threads sharing one attachment).
  Taking and releasing the lock orders memory on every CPU, so this is correct everywhere; the
  cost is that a reader copying a span holds up the writer for that long.

Both also offer ``read_slots_via``: the same seqlock read with the data bytes copied by the caller's
function (the worker's CUDA path copies ring slots straight to the GPU and waits for the copy
before the second stamp read).

The creator of a ring picks the mode (``choose_mode``) and records it in the header; every process
that attaches uses the recorded mode, since an atomic writer never takes the lock and a locked one
never runs the fences. A process that cannot load the helper cannot attach to an atomic ring and
says so (``RingSyncError``) instead of reading it unordered.

Design: the alternative fallback, plain numpy copies with no ordering, is what ran before and is
only right on x86-64 (TSO); a process-shared pthread mutex in the segment would need the C compiler
the fallback exists to do without, or a guess of ``pthread_mutex_t``'s size per platform.
"""

from __future__ import annotations

import ctypes
import enum
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from firmware_io.cbuild import build_shared

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).resolve().parent / "ringsync.c"
_CFLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra")
SHM_DIR = Path("/dev/shm")
OPEN = -1  # stamp of a slot being written (the same constant as ringsync.c's OPEN)


class SyncMode(str, enum.Enum):
    ATOMIC = "atomic"  # C11 acquire/release through the C helper
    LOCK = "lock"  # a lock shared by the writer and reader processes


MODE_CODES = {SyncMode.ATOMIC: 0, SyncMode.LOCK: 1}  # as stored in the ring header


class RingSyncError(RuntimeError):
    """The ring's accessor cannot be set up here (the helper is missing for an atomic ring, or the lock file)."""


_lock = threading.Lock()
_state: dict[str, object] = {}


def _build() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build_shared("ringsync", [_SOURCE], _CFLAGS)))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.ring_load.argtypes, lib.ring_load.restype = [ptr], i64
    lib.ring_store.argtypes, lib.ring_store.restype = [ptr, i64], None
    lib.ring_add.argtypes, lib.ring_add.restype = [ptr, i64], None
    lib.ring_write_slots.argtypes = [ptr, ptr, ptr, i64, i64, i64, ptr, i64, i64]
    lib.ring_write_slots.restype = None
    lib.ring_read_slots.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, ptr, ptr, ptr, ptr]
    lib.ring_read_slots.restype = None
    return lib


def helper() -> ctypes.CDLL | None:
    """The compiled helper, or ``None`` when it cannot be built or loaded here (``helper_status`` says why)."""
    if "lib" not in _state:
        with _lock:
            if "lib" not in _state:
                try:
                    _state["lib"] = _build()
                    _state["status"] = "C11 atomics (ringsync.c)"
                except (OSError, RuntimeError) as exc:  # no compiler, failed build or load
                    _state["lib"] = None
                    _state["status"] = f"unavailable: {exc}"
    return _state["lib"]  # type: ignore[return-value]


def helper_status() -> str:
    helper()
    return str(_state["status"])


def choose_mode() -> SyncMode:
    """The mode for a new ring: atomic when the helper loads (and ``SPIKE_EDGE_NATIVE`` is not ``0``), else the lock."""
    if os.environ.get("SPIKE_EDGE_NATIVE", "1") == "0":
        return SyncMode.LOCK
    if helper() is None:
        log.warning("the ring's atomic helper is %s; rings use a shared lock instead", helper_status())
        return SyncMode.LOCK
    return SyncMode.ATOMIC


def segments(start: int, stop: int, capacity: int) -> list[tuple[int, int, int]]:
    """Split plane range [start, stop) (length <= capacity) into (slot_start, slot_stop, offset)."""
    s0 = start % capacity
    n = stop - start
    if s0 + n <= capacity:
        return [(s0, s0 + n, 0)]
    first = capacity - s0
    return [(s0, capacity, 0), (0, n - first, first)]


def _address(array: np.ndarray) -> int:
    return int(array.ctypes.data)


class AtomicAccess:
    """Header words and slots through the C helper (acquire/release), no lock."""

    mode = SyncMode.ATOMIC

    def __init__(self, header: np.ndarray, stamps: np.ndarray, t_ns: np.ndarray, data: np.ndarray) -> None:
        lib = helper()
        if lib is None:
            raise RingSyncError(f"this ring uses C11 atomics, but the helper is {helper_status()}")
        self._lib = lib
        self._header = _address(header)
        self._stamps, self._t_ns, self._data = _address(stamps), _address(t_ns), _address(data)
        self._capacity, self._plane_bytes = int(data.shape[0]), int(data.shape[1])

    def load(self, index: int) -> int:
        return int(self._lib.ring_load(self._header + 8 * index))

    def store(self, index: int, value: int) -> None:
        self._lib.ring_store(self._header + 8 * index, int(value))

    def add(self, index: int, n: int) -> None:
        self._lib.ring_add(self._header + 8 * index, int(n))

    def write_slots(self, first_plane: int, planes: np.ndarray, capture_t_ns: int) -> None:
        planes = np.ascontiguousarray(planes)
        self._lib.ring_write_slots(self._stamps, self._t_ns, self._data, self._capacity, self._plane_bytes,
                                   first_plane, _address(planes), len(planes), int(capture_t_ns))

    def read_slots(self, start: int, out: np.ndarray, out_t: np.ndarray, pre: np.ndarray, post: np.ndarray) -> None:
        self._lib.ring_read_slots(self._stamps, self._t_ns, self._data, self._capacity, self._plane_bytes, start,
                                  len(out), _address(out), _address(out_t), _address(pre), _address(post))

    def read_slots_via(self, start: int, copy: Callable[[list[tuple[int, int, int]]], None], out_t: np.ndarray,
                       pre: np.ndarray, post: np.ndarray) -> None:
        """``read_slots`` with the data copied by ``copy(segments)`` (e.g. to a GPU, finished when it returns):
        the helper's read with no data bytes gives the acquire loads of ``pre`` and the times, then
        ``copy`` runs, then a second such read gives ``post`` after its acquire fence."""
        n = len(out_t)
        scratch_t, scratch_pre = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        self._lib.ring_read_slots(self._stamps, self._t_ns, self._data, self._capacity, 0, start, n,
                                  _address(out_t), _address(out_t), _address(pre), _address(scratch_pre))
        copy(segments(start, start + n, self._capacity))
        self._lib.ring_read_slots(self._stamps, self._t_ns, self._data, self._capacity, 0, start, n,
                                  _address(scratch_t), _address(scratch_t), _address(scratch_pre), _address(post))

    def close(self) -> None:
        self._lib = None


class LockedAccess:
    """Header words and slots with numpy, each access under the ring's shared lock."""

    mode = SyncMode.LOCK

    def __init__(self, shm_name: str, header: np.ndarray, stamps: np.ndarray, t_ns: np.ndarray,
                 data: np.ndarray) -> None:
        path = SHM_DIR / shm_name.lstrip("/")
        try:
            self._fd: int | None = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise RingSyncError(f"cannot open {path} to lock the ring: {exc}") from None
        self._thread_lock = threading.Lock()
        self._header, self._stamps, self._t_ns, self._data = header, stamps, t_ns, data
        self._capacity = int(data.shape[0])

    def _locked(self):
        return _FileLock(self._thread_lock, self._fd)

    def load(self, index: int) -> int:
        with self._locked():
            return int(self._header[index])

    def store(self, index: int, value: int) -> None:
        with self._locked():
            self._header[index] = int(value)

    def add(self, index: int, n: int) -> None:
        with self._locked():
            self._header[index] += int(n)

    def write_slots(self, first_plane: int, planes: np.ndarray, capture_t_ns: int) -> None:
        parts = segments(first_plane, first_plane + len(planes), self._capacity)
        with self._locked():
            for s0, s1, off in parts:
                self._stamps[s0:s1] = OPEN
            for s0, s1, off in parts:
                self._data[s0:s1] = planes[off: off + (s1 - s0)]
                self._t_ns[s0:s1] = capture_t_ns
            for s0, s1, off in parts:
                self._stamps[s0:s1] = np.arange(first_plane + off, first_plane + off + (s1 - s0), dtype=np.int64)

    def read_slots(self, start: int, out: np.ndarray, out_t: np.ndarray, pre: np.ndarray, post: np.ndarray) -> None:
        parts = segments(start, start + len(out), self._capacity)
        with self._locked():
            for s0, s1, off in parts:
                pre[off: off + s1 - s0] = self._stamps[s0:s1]
            for s0, s1, off in parts:
                out[off: off + s1 - s0] = self._data[s0:s1]
                out_t[off: off + s1 - s0] = self._t_ns[s0:s1]
            for s0, s1, off in parts:
                post[off: off + s1 - s0] = self._stamps[s0:s1]

    def read_slots_via(self, start: int, copy: Callable[[list[tuple[int, int, int]]], None], out_t: np.ndarray,
                       pre: np.ndarray, post: np.ndarray) -> None:
        """``read_slots`` with the data copied by ``copy(segments)``, all under the lock."""
        parts = segments(start, start + len(out_t), self._capacity)
        with self._locked():
            for s0, s1, off in parts:
                pre[off: off + s1 - s0] = self._stamps[s0:s1]
            copy(parts)
            for s0, s1, off in parts:
                out_t[off: off + s1 - s0] = self._t_ns[s0:s1]
            for s0, s1, off in parts:
                post[off: off + s1 - s0] = self._stamps[s0:s1]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._header = self._stamps = self._t_ns = self._data = None


class _FileLock:
    """The thread lock, then an exclusive ``flock`` on the ring's file; released in reverse order."""

    __slots__ = ("_thread_lock", "_fd")

    def __init__(self, thread_lock: threading.Lock, fd: int | None) -> None:
        if fd is None:
            raise RingSyncError("the ring's lock is closed")
        self._thread_lock, self._fd = thread_lock, fd

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


RingAccess = AtomicAccess | LockedAccess
