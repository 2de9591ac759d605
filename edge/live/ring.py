"""The plane ring: a bounded, preallocated buffer of packed spike planes in shared memory.

One writer (the capture process) appends planes; one reader (the worker in the daemon, through
``RingReader``) copies ranges of them out. Memory is fixed at creation (``capacity`` planes), so a
slow reader can never make memory or lag grow: in ``overwrite`` policy the writer never waits and
the oldest planes are overwritten (and counted); in ``block`` policy (deterministic replay) the
writer waits until the reader has released enough planes, so nothing is lost.

Layout of the shared-memory segment (all integers little-endian int64; layout version 2)::

    [0, 4096)                       header: HEADER_FIELDS below (magic, geometry, counters, ...)
    [4096, 4096 + 8C)               stamps[C]: plane index held by each slot, -1 while being written,
                                    -2 before the first write
    [.., + 8C)                      t_ns[C]: capture time of the plane in each slot
    [page-aligned data_offset, +C*P) data[C, P]: packed planes (P = plane bytes), page-aligned so
                                    the region can be registered with CUDA as pinned memory

Plane ``i`` lives in slot ``i % C``. ``committed`` in the header is the high-water mark: every
plane below it has been written or was never delivered by the source (a source gap).

Consistency (a seqlock per slot): the writer stores ``stamps[s] = -1``, then the data and time,
then ``stamps[s] = i``, and finally raises ``committed``. The reader copies ``[a, b)`` (``b <=
committed``) by reading the stamps, copying data and times, and reading the stamps again; a plane
is valid only when both stamp reads equal its index. Stamps only ever grow (``i``, then ``-1``,
then ``i + C``), so a slot that was overwritten during the copy, or never written, is always
detected. Readers never see torn planes: an invalid plane is reported as a gap, never returned.

Memory ordering: the seqlock is only right if each side's stores and loads become visible in the
order written above. x86-64 gives that for plain stores and loads; aarch64 (the Jetson) does not.
So every shared access goes through an accessor of ``edge.live.ringsync`` chosen when the ring is
created and recorded in its header (``sync``): C11 acquire/release atomics and fences from a small
C helper (the default), or, where no C compiler exists, a lock shared by writer and reader (every
header word, stamp and copy under it: correct on any CPU, but a reader's copy holds up the writer).
Header words are acquire loads and release stores, so a reader that sees ``state`` ENDED also sees
the ``committed`` written before it.

Reading is ``RingReader.read(a, b)``: the planes and their times, or a ``Gap`` naming the missing
planes and why (``GapCause``). A reader more than a ring behind the writer (``a < committed -
capacity``: lapped) gets an ``OVERRUN`` gap without copying; otherwise the post-copy stamps tell:
a slot open or holding a later plane was overwritten (``OVERRUN``), one holding an earlier plane
or never written was skipped by the source (``SOURCE_GAP``). The reader keeps no cursor; the
caller releases what it no longer needs (``release``), which is what a ``block`` writer waits on.

Creation and leftovers: ``SpikeRing.create`` refuses a ring larger than its ``max_bytes`` cap or
than the free space of ``/dev/shm`` (``RingTooLarge``, naming the numbers) before the segment
exists: shared memory is only backed as it is written, so an oversized ring would otherwise start
fine and fill ``/dev/shm`` while running. Segments are named ``spkring-<owner PID>-<random>`` and
record their owner's PID and start time in the header; a daemon killed with SIGKILL (with its
whole process group, so no one is left to remove it) leaves its segment behind, and
``sweep_stale_rings`` (run by the daemon at start) removes every ring segment whose owner is no
longer running, logging each. The start time tells a reused PID from the owner.

Design: alternatives considered were a lock shared by both processes (a slow reader holding it
would stall the camera; it is only the fallback where the atomic helper cannot be built), a
``multiprocessing.Queue`` of blocks (pickling 500 MB/s, unbounded lag), and one global seqlock (a
reader would throw away a whole window when only its oldest plane was overwritten). Per-slot
stamps cost 8 bytes per plane and tell exactly which planes were lost and why (``overrun``:
overwritten before being read; ``source-gap``: never delivered).
The reader reads spans, not a stream from a cursor: its one user, the worker, copies overlapping
windows (up to ``max_batch`` windows one hop apart in one span) and releases only below its next
window. A cursor reader used only by tests, beside a worker carrying its own copy of the gap
logic, was two implementations of the subtlest code here; now the worker reads through
``RingReader`` and the tests exercise that same path.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import secrets
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Callable

import numpy as np

from edge.live.ringsync import MODE_CODES, OPEN, AtomicAccess, LockedAccess, RingAccess, SyncMode, choose_mode
from firmware_io.contract import Geometry

log = logging.getLogger(__name__)

MAGIC = 0x53504B52494E4731  # "SPKRING1"
LAYOUT_VERSION = 2  # 2: the sync field (accessor mode)
HEADER_BYTES = 4096
PAGE = 4096
POLL_S = 0.0002
NEVER_WRITTEN = -2  # stamp of a slot not written yet
RING_PREFIX = "spkring-"  # segment names: spkring-<owner PID>-<random hex>
SHM_DIR = Path("/dev/shm")  # where POSIX shared memory segments live (Linux)


class WriterPolicy(str, enum.Enum):
    OVERWRITE = "overwrite"  # live: never wait; overwrite the oldest planes and count them
    BLOCK = "block"  # deterministic replay: wait for the reader to release space


class WriterState(enum.IntEnum):
    STARTING = 0
    RUNNING = 1
    ENDED = 2  # the source reached end-of-stream
    FAILED = 3  # the source failed for good
    STOPPED = 4  # stopped on request


# Header field indices (int64 slots).
_F = dict(
    magic=0, version=1, capacity=2, plane_bytes=3, height=4, width=5, policy=6,
    committed=7,            # planes [0, committed) are written (or were never delivered)
    first_plane=8,          # index of the first plane written, -1 before
    release=9,              # the reader no longer needs planes below this (block policy waits on it)
    state=10,               # WriterState
    stop=11,                # 1: the daemon asks the writer to stop
    overwritten_unread=12,  # planes the writer overwrote before the reader released them
    writer_waits=13,        # times the block policy waited for space
    timeouts=14, errors=15, reconnects=16,  # source statuses seen by the capture side
    source_gap_planes=17,   # planes skipped by the source (indices jumped forward)
    blocks=18,              # blocks written
    writer_t_ns=19,         # last time the writer was alive (monotonic ns)
    rate_mhz=20,            # source rate in milli-hertz (integer)
    discontinuities=21,     # source discontinuities (reconnects, index resets)
    last_capture_t_ns=22,   # capture time of the newest plane
    writer_pid=23,
    late_blocks=24,         # blocks the source handed over after their due time (live simulator)
    dropped_blocks=25,      # blocks the source itself dropped (camera queue full: drop-oldest)
    behind_us=26,           # gauge: how far a live simulator is behind its schedule (microseconds)
    owner_pid=27,           # the process that created (and removes) the segment
    owner_start_ticks=28,   # its start time in clock ticks since boot (/proc), 0 where unknown
    sync=29,                # how writer and reader order their accesses (ringsync.MODE_CODES)
)
HEADER_FIELDS = tuple(_F)
COUNTER_FIELDS = ("overwritten_unread", "writer_waits", "timeouts", "errors", "reconnects",
                  "source_gap_planes", "blocks", "discontinuities", "late_blocks", "dropped_blocks", "behind_us")


def _page_round(n: int) -> int:
    return -(-n // PAGE) * PAGE


class RingTooLarge(ValueError):
    """A ring that would not fit: over its cap or over the free shared memory. The numbers are attributes."""

    def __init__(self, message: str, needed_bytes: int, max_bytes: int | None, free_bytes: int | None) -> None:
        super().__init__(message)
        self.needed_bytes, self.max_bytes, self.free_bytes = needed_bytes, max_bytes, free_bytes


def shm_free_bytes(shm_dir: Path = SHM_DIR) -> int | None:
    """Free bytes in the shared-memory file system, or None where there is none to ask (not Linux)."""
    try:
        st = os.statvfs(shm_dir)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def check_ring_fits(needed_bytes: int, max_bytes: int | None, shm_dir: Path = SHM_DIR) -> None:
    """``RingTooLarge`` unless a segment of ``needed_bytes`` is within ``max_bytes`` and the free shared memory."""
    free = shm_free_bytes(shm_dir)
    limits = [] if max_bytes is None else [f"the cap is {max_bytes / 1e6:,.1f} MB"]
    if free is not None:
        limits.append(f"{shm_dir} has {free / 1e6:,.1f} MB free")
    if (max_bytes is not None and needed_bytes > max_bytes) or (free is not None and needed_bytes > free):
        raise RingTooLarge(f"the ring needs {needed_bytes / 1e6:,.1f} MB of shared memory, but {' and '.join(limits)}",
                           needed_bytes, max_bytes, free)


def _proc_stat(pid: int) -> tuple[bytes, int] | None:
    """``(state, start time in clock ticks since boot)`` of a process from ``/proc``; None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
        fields = text[text.rindex(b")") + 2:].split()  # after "pid (comm) ": field 3 (state) onwards
        return fields[0], int(fields[19])  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


def _owner_alive(pid: int, start_ticks: int) -> bool:
    """The process that created a segment still runs: the PID exists, is not a zombie, and (when the segment
    recorded it) started when the owner did, so it is not a later process that reused the PID."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists (another user's)
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc to ask: the PID exists, assume it is the owner
    state, ticks = stat
    return state != b"Z" and not (start_ticks and ticks != start_ticks)


def _segment_owner(path: Path) -> tuple[int, int] | None:
    """``(owner PID, owner start ticks)`` of a ring segment: from its header, else from its name; None if neither."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError:
        return None
    if len(raw) == HEADER_BYTES:
        header = np.frombuffer(raw, dtype="<i8")
        if int(header[_F["magic"]]) == MAGIC and int(header[_F["owner_pid"]]) > 0:
            return int(header[_F["owner_pid"]]), int(header[_F["owner_start_ticks"]])
    pid_text = path.name[len(RING_PREFIX):].split("-", 1)[0]
    return (int(pid_text), 0) if pid_text.isdigit() else None


@dataclass(frozen=True)
class StaleRing:
    """A ring segment removed by ``sweep_stale_rings``."""

    name: str
    owner_pid: int
    nbytes: int


def sweep_stale_rings(shm_dir: Path = SHM_DIR) -> list[StaleRing]:
    """Remove the ring segments (``spkring-*``) whose owner process is no longer running; log and return them.

    A segment whose owner cannot be told (no readable header, no PID in its name), or that belongs to
    a process still running, is left alone; one this user may not remove is logged and left.
    """
    try:
        paths = sorted(p for p in shm_dir.iterdir() if p.name.startswith(RING_PREFIX))
    except OSError:
        return []
    removed = []
    for path in paths:
        owner = _segment_owner(path)
        if owner is None or _owner_alive(*owner):
            continue
        try:
            nbytes = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue  # removed meanwhile
        except OSError as exc:
            log.warning("stale spike ring %s (owner PID %d is gone) cannot be removed: %s", path.name, owner[0], exc)
            continue
        log.warning("removed stale spike ring %s (%.1f MB) left by PID %d, which is no longer running",
                    path.name, nbytes / 1e6, owner[0])
        removed.append(StaleRing(path.name, owner[0], nbytes))
    return removed


@dataclass(frozen=True)
class RingLayout:
    capacity: int
    plane_bytes: int

    @property
    def stamps_offset(self) -> int:
        return HEADER_BYTES

    @property
    def t_offset(self) -> int:
        return HEADER_BYTES + 8 * self.capacity

    @property
    def data_offset(self) -> int:
        return _page_round(HEADER_BYTES + 16 * self.capacity)

    @property
    def total_bytes(self) -> int:
        return self.data_offset + _page_round(self.capacity * self.plane_bytes)


class SpikeRing:
    """A view of one ring segment (create it in one process, ``attach`` by name in others)."""

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool) -> None:
        self._shm = shm
        self.owner = owner
        self.header = np.ndarray((HEADER_BYTES // 8,), dtype=np.int64, buffer=shm.buf)
        if int(self.header[_F["magic"]]) != MAGIC or int(self.header[_F["version"]]) != LAYOUT_VERSION:
            raise ValueError(f"shared memory {shm.name!r} is not a spike ring (layout v{LAYOUT_VERSION})")
        self.capacity = int(self.header[_F["capacity"]])
        self.plane_bytes = int(self.header[_F["plane_bytes"]])
        self.geometry = Geometry(int(self.header[_F["height"]]), int(self.header[_F["width"]]))
        self.layout = RingLayout(self.capacity, self.plane_bytes)
        lay = self.layout
        self.stamps = np.ndarray((self.capacity,), dtype=np.int64, buffer=shm.buf, offset=lay.stamps_offset)
        self.t_ns = np.ndarray((self.capacity,), dtype=np.int64, buffer=shm.buf, offset=lay.t_offset)
        self.data = np.ndarray((self.capacity, self.plane_bytes), dtype=np.uint8, buffer=shm.buf,
                               offset=lay.data_offset)
        code = int(self.header[_F["sync"]])
        modes = {value: mode for mode, value in MODE_CODES.items()}
        if code not in modes:
            raise ValueError(f"shared memory {shm.name!r} holds an unknown ring sync mode {code}")
        self.sync_mode = modes[code]
        if self.sync_mode is SyncMode.ATOMIC:
            self._access: RingAccess = AtomicAccess(self.header, self.stamps, self.t_ns, self.data)
        else:
            self._access = LockedAccess(shm.name, self.header, self.stamps, self.t_ns, self.data)
        self._cuda_registration: Callable[[], None] | None = None
        self._closed = False

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, capacity_planes: int, geometry: Geometry, *, policy: WriterPolicy | str = WriterPolicy.OVERWRITE,
               rate_hz: float = 0.0, name: str | None = None, max_bytes: int | None = None,
               sync: SyncMode | str | None = None) -> "SpikeRing":
        """A new segment of ``capacity_planes`` planes; ``RingTooLarge`` (before creating anything) when it
        would exceed ``max_bytes`` (None: no cap) or the free shared memory. ``sync`` is how its processes
        order their accesses (``None``: ``choose_mode()``, atomics when the C helper builds, else the lock)."""
        if not isinstance(capacity_planes, (int, np.integer)) or capacity_planes < 2:
            raise ValueError(f"ring capacity must be an integer >= 2 planes, got {capacity_planes!r}")
        policy = WriterPolicy(policy)
        sync = choose_mode() if sync is None else SyncMode(sync)
        layout = RingLayout(int(capacity_planes), geometry.plane_bytes)
        check_ring_fits(layout.total_bytes, max_bytes)
        name = name or f"{RING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        shm = shared_memory.SharedMemory(name=name, create=True, size=layout.total_bytes)
        header = np.ndarray((HEADER_BYTES // 8,), dtype=np.int64, buffer=shm.buf)
        header[:] = 0
        values = dict(magic=MAGIC, version=LAYOUT_VERSION, capacity=layout.capacity, plane_bytes=layout.plane_bytes,
                      height=geometry.height, width=geometry.width,
                      policy=0 if policy is WriterPolicy.OVERWRITE else 1, first_plane=-1,
                      state=int(WriterState.STARTING), rate_mhz=int(round(rate_hz * 1000)),
                      owner_pid=os.getpid(), owner_start_ticks=(_proc_stat(os.getpid()) or (b"", 0))[1],
                      sync=MODE_CODES[sync])
        for key, value in values.items():
            header[_F[key]] = value
        np.ndarray((layout.capacity,), dtype=np.int64, buffer=shm.buf, offset=layout.stamps_offset)[:] = NEVER_WRITTEN
        del header
        try:
            return cls(shm, owner=True)
        except BaseException:
            shm.close()
            shm.unlink()
            raise

    @classmethod
    def attach(cls, name: str) -> "SpikeRing":
        try:
            shm = shared_memory.SharedMemory(name=name, create=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"no spike ring named {name!r} in shared memory") from None
        try:
            return cls(shm, owner=False)
        except BaseException:
            shm.close()
            raise

    @property
    def name(self) -> str:
        return self._shm.name

    @property
    def nbytes(self) -> int:
        return self.layout.total_bytes

    # -- header access --------------------------------------------------------------------------
    def get(self, field: str) -> int:
        """A header field (an acquire load: what was written before it is visible)."""
        return self._access.load(_F[field])

    def set(self, field: str, value: int) -> None:
        """Set a header field (a release store: what was written before it is visible first)."""
        self._access.store(_F[field], int(value))

    def add(self, field: str, n: int = 1) -> None:
        """Increment a counter (only one process ever writes each field)."""
        self._access.add(_F[field], int(n))

    @property
    def policy(self) -> WriterPolicy:
        return WriterPolicy.OVERWRITE if self.get("policy") == 0 else WriterPolicy.BLOCK

    @property
    def committed(self) -> int:
        return self.get("committed")

    @property
    def state(self) -> WriterState:
        return WriterState(self.get("state"))

    @property
    def finished(self) -> bool:
        """The writer will write no more (end-of-stream, failure or stop)."""
        return self.state in (WriterState.ENDED, WriterState.FAILED, WriterState.STOPPED)

    def oldest_plane(self) -> int:
        """Lowest plane index that may still be in the ring."""
        return max(self.committed - self.capacity, max(self.get("first_plane"), 0))

    def request_stop(self) -> None:
        self.set("stop", 1)

    @property
    def stop_requested(self) -> bool:
        return self.get("stop") != 0

    def counters(self) -> dict[str, int]:
        out = {name: self.get(name) for name in COUNTER_FIELDS}
        out.update(committed=self.committed, first_plane=self.get("first_plane"), release=self.get("release"))
        return out

    # -- writer ---------------------------------------------------------------------------------
    def write(self, first_plane: int, planes: np.ndarray, capture_t_ns: int, *,
              should_stop: Callable[[], bool] | None = None) -> int:
        """Append planes ``[first_plane, first_plane + n)`` (``first_plane >= committed``).

        Returns the number of planes stored. Under ``overwrite`` never waits; a block longer than
        the ring keeps only its newest ``capacity`` planes. Under ``block`` waits for the reader to
        release space (checking ``should_stop`` and the stop flag while waiting) and returns early,
        with fewer planes stored, when asked to stop.
        """
        planes = np.asarray(planes)
        if planes.ndim != 2 or planes.dtype != np.uint8 or planes.shape[1] != self.plane_bytes:
            raise ValueError(f"expected packed planes uint8 (n, {self.plane_bytes}), got {planes.dtype} {planes.shape}")
        committed = self.committed
        if first_plane < committed:
            raise ValueError(f"plane indices must increase: block starts at {first_plane}, ring already holds up to {committed}")
        n = planes.shape[0]
        if n == 0:
            return 0
        if self.get("first_plane") < 0:
            self.set("first_plane", first_plane)
            committed = first_plane
            self.set("committed", first_plane)
            self.set("release", first_plane)
        elif first_plane > committed:
            self.add("source_gap_planes", first_plane - committed)
        c = self.capacity
        if self.policy is WriterPolicy.BLOCK:
            if not self._pass_gap(first_plane, should_stop):
                return 0
            stored = 0
            for offset in range(0, n, c):
                chunk = planes[offset: offset + c]
                a = first_plane + offset
                if not self._wait_for_space(a + len(chunk), should_stop):
                    return stored
                self._store(a, chunk, capture_t_ns)
                stored += len(chunk)
            return stored
        if n > c:  # the oldest planes of this block could never be read: lost like overwritten ones
            self.add("overwritten_unread", n - c)
            first_plane, planes = first_plane + n - c, planes[n - c:]
            n = c
        # Planes about to be overwritten that the reader had not released yet: everything below
        # stop - c goes; what was below committed - c had gone already.
        lo = max(committed - c, self.get("release"))
        hi = min(first_plane + n - c, committed)
        if hi > lo:
            self.add("overwritten_unread", hi - lo)
        self._store(first_plane, planes, capture_t_ns)
        return n

    def _pass_gap(self, first_plane: int, should_stop: Callable[[], bool] | None) -> bool:
        """``block`` policy, before a block that skips planes: publish that the skipped planes will never come.

        ``committed`` moves across the gap at most a ring past what the reader has released, so the reader
        reads those planes as a source gap (never as lapped: nothing it has not released is below
        ``committed - capacity``) and releases past them; a gap longer than the ring is passed a ring at
        a time instead of leaving writer and reader both waiting. False: asked to stop meanwhile.
        """
        def passed() -> bool:
            self.set("committed", min(first_plane, self.get("release") + self.capacity))
            return self.committed >= first_plane

        return self._wait_until(passed, should_stop)

    def _wait_for_space(self, stop_plane: int, should_stop: Callable[[], bool] | None) -> bool:
        return self._wait_until(lambda: stop_plane - self.get("release") <= self.capacity, should_stop)

    def _wait_until(self, done: Callable[[], bool], should_stop: Callable[[], bool] | None) -> bool:
        """``block`` policy: poll ``done`` until it holds (True), counting one writer wait and stamping
        ``writer_t_ns`` while waiting; False when asked to stop meanwhile."""
        waited = False
        while not done():
            if self.stop_requested or (should_stop is not None and should_stop()):
                return False
            if not waited:
                self.add("writer_waits")
                waited = True
            self.set("writer_t_ns", time.monotonic_ns())
            time.sleep(POLL_S)
        return True

    def _store(self, first_plane: int, planes: np.ndarray, capture_t_ns: int) -> None:
        stop = first_plane + len(planes)
        self._access.write_slots(first_plane, planes, capture_t_ns)  # open the slots, copy, stamp them
        self.set("last_capture_t_ns", capture_t_ns)
        self.set("committed", stop)  # publish
        self.add("blocks")
        self.set("writer_t_ns", time.monotonic_ns())

    # -- CUDA (optional) ------------------------------------------------------------------------
    def register_cuda(self) -> str | None:
        """Page-lock the data region for fast device copies (``cudaHostRegister``, portable + mapped).

        Through torch's CUDA runtime (``torch.cuda.cudart()``), so torch and this ring share torch's
        primary context. Returns how it was registered, or ``None`` when torch sees no CUDA device or
        the registration fails. A failed ``cudaHostRegister`` leaves the error as the runtime's
        last error, which the next kernel launch would report as its own: it is read back and
        cleared (``cudaGetLastError``) and logged, and the ring stays pageable. Call it in the
        process that copies to the GPU (the daemon); each process registers its own mapping.

        Design: pycuda was a second way in; it has no wheel for current Pythons and CUDA 13, and
        every process that copies to a GPU here already has torch, so it was dropped.
        """
        if self._cuda_registration is not None:
            return "already registered"
        try:
            import torch
        except ImportError:
            return None
        if not torch.cuda.is_available():
            return None
        data = self.data
        unregister = cuda_host_register(int(data.ctypes.data), int(data.nbytes))
        if unregister is None:
            return None
        self._cuda_registration = unregister
        return "torch.cuda.cudart().cudaHostRegister"

    # -- teardown -------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._cuda_registration is not None:
            try:
                self._cuda_registration()
            except Exception as exc:  # pragma: no cover - GPU only
                log.warning("unregistering the ring from CUDA failed: %s", exc)
            self._cuda_registration = None
        self._access.close()
        self.header = self.stamps = self.t_ns = self.data = None  # drop views before closing
        try:
            self._shm.close()
        except BufferError:  # a caller still holds a view; freed with it
            pass
        if self.owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "SpikeRing":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cuda_runtime() -> ctypes.CDLL | None:
    """The CUDA runtime library torch has loaded (``cudaGetLastError`` is not among torch's bindings)."""
    import torch

    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            if "libcudart.so" in line:
                return ctypes.CDLL(line.split(maxsplit=5)[-1].strip())
    except OSError:
        pass
    try:
        return ctypes.CDLL(f"libcudart.so.{(torch.version.cuda or '').split('.')[0]}")
    except OSError:
        return None


def cuda_host_register(ptr: int, nbytes: int) -> Callable[[], None] | None:
    """Page-lock ``[ptr, ptr + nbytes)`` with ``cudaHostRegister`` (portable + mapped) through torch's runtime;
    the function that unregisters it, or ``None`` after a failure, whose error is cleared (see ``register_cuda``)."""
    import torch

    cudart = torch.cuda.cudart()
    flags = 0x01 | 0x02  # cudaHostRegisterPortable | cudaHostRegisterMapped
    err = cudart.cudaHostRegister(ptr, nbytes, flags)
    if int(err) == 0:
        return lambda: cudart.cudaHostUnregister(ptr)
    runtime = _cuda_runtime()
    cleared = "not cleared: the CUDA runtime library was not found"
    if runtime is not None:
        runtime.cudaGetLastError.restype = ctypes.c_int
        cleared = f"cleared (cudaGetLastError returned {runtime.cudaGetLastError()})"
    log.warning("cudaHostRegister of %d bytes at %#x failed: %s, %s; the memory stays pageable",
                nbytes, ptr, cudart.cudaGetErrorString(err), cleared)
    return None


class GapCause(str, enum.Enum):
    OVERRUN = "overrun"  # overwritten before the reader got to them
    SOURCE_GAP = "source-gap"  # the source never delivered them


@dataclass(frozen=True)
class Planes:
    """Planes ``[first_plane, first_plane + n_planes)``, each exactly as the writer stored it.

    ``planes`` and ``t_ns`` are views of the reader's buffer: valid until its next ``read``.
    """

    first_plane: int
    planes: np.ndarray | None  # uint8 (n, plane_bytes); None from ``read_into`` (the caller's copy holds them)
    t_ns: np.ndarray  # int64 (n,): capture time of each plane

    @property
    def n_planes(self) -> int:
        return int(self.planes.shape[0])


@dataclass(frozen=True)
class Gap:
    """Planes of a requested span that are not in the ring.

    ``n_lost`` planes are missing, the first at ``first_plane`` and the last at ``stop_plane - 1``;
    planes between them may be intact but are not returned. ``cause`` is ``OVERRUN`` when any of
    them was overwritten (or was being written) before the reader got to it, else ``SOURCE_GAP``.
    """

    first_plane: int
    stop_plane: int
    n_lost: int
    cause: GapCause


RingRead = Planes | Gap


class RingReader:
    """The reading side of a ring: copies spans of planes out, names what is missing, releases.

    Spans may overlap (a window reader copies ``[K - N//2, K - N//2 + N)`` for keys ``K`` one hop
    apart), so the reader keeps no cursor: the caller says what to read and what it no longer needs.
    """

    def __init__(self, ring: SpikeRing) -> None:
        self.ring = ring
        self._buf = np.empty((0, ring.plane_bytes), dtype=np.uint8)
        self._t_buf = np.empty(0, dtype=np.int64)

    def lapped(self, plane: int) -> Gap | None:
        """The overrun gap ``[plane, oldest)`` when the writer has moved more than a ring past
        ``plane`` (a lapped reader): every plane below ``committed - capacity`` counts as
        overwritten, even one whose slot a source gap happened to spare. ``None`` otherwise."""
        oldest = self.ring.committed - self.ring.capacity
        if plane >= oldest:
            return None
        return Gap(plane, oldest, oldest - plane, GapCause.OVERRUN)

    def _check_span(self, start: int, stop: int) -> Gap | None:
        """Refuse a malformed or uncommitted span; the overrun gap of a lapped ``start``, else ``None``."""
        if start < 0 or stop < start:
            raise ValueError(f"range [{start}, {stop}) must start at >= 0 and not end before it starts")
        if stop > self.ring.committed:
            raise ValueError(f"planes up to {stop} requested, only {self.ring.committed} committed")
        return self.lapped(start)

    def read(self, start: int, stop: int) -> RingRead:
        """Planes ``[start, stop)`` (``stop <= committed``), or the ``Gap`` of the planes in it that are
        missing. A lapped ``start`` gives ``lapped(start)`` without copying (that gap may reach past
        ``stop``); any other span lies within the newest ``capacity`` planes."""
        ring = self.ring
        lapped = self._check_span(start, stop)
        if lapped is not None:
            return lapped
        n = stop - start
        if self._buf.shape[0] < n:
            self._buf = np.empty((n, ring.plane_bytes), dtype=np.uint8)
            self._t_buf = np.empty(n, dtype=np.int64)
        out, out_t = self._buf[:n], self._t_buf[:n]
        # The seqlock of the module docstring: stamps, then data and times, then stamps again.
        pre = np.empty(n, dtype=np.int64)
        post = np.empty(n, dtype=np.int64)
        if n:
            ring._access.read_slots(start, out, out_t, pre, post)
        return self._checked(start, stop, out, out_t, pre, post)

    def read_into(self, start: int, stop: int, copy: Callable[[np.ndarray, int], None]) -> RingRead:
        """``read`` with the plane bytes copied by the caller: ``copy(slots, offset)`` gets each contiguous
        run of ring slots (a view of the ring's own memory, e.g. page-locked by ``register_cuda``) and
        the span offset it goes to, and must have finished copying when it returns (a GPU copy: after
        a stream synchronisation). The stamps are checked around the copies exactly as in ``read``; the
        ``Planes`` returned carries the times, and ``planes`` is ``None`` (the bytes are where ``copy``
        put them)."""
        ring = self.ring
        lapped = self._check_span(start, stop)
        if lapped is not None:
            return lapped
        n = stop - start
        out_t = np.empty(n, dtype=np.int64)
        pre = np.empty(n, dtype=np.int64)
        post = np.empty(n, dtype=np.int64)

        def copy_segments(parts: list[tuple[int, int, int]]) -> None:
            for s0, s1, off in parts:
                copy(ring.data[s0:s1], off)

        if n:
            ring._access.read_slots_via(start, copy_segments, out_t, pre, post)
        return self._checked(start, stop, None, out_t, pre, post)

    def _checked(self, start: int, stop: int, out: np.ndarray | None, out_t: np.ndarray, pre: np.ndarray,
                 post: np.ndarray) -> RingRead:
        index = np.arange(start, stop, dtype=np.int64)
        bad = np.flatnonzero((pre != index) | (post != index))
        if len(bad) == 0:
            return Planes(start, out, out_t)
        # Stamps only grow: a slot open for writing or holding a later plane was overwritten; one
        # holding an earlier plane (or never written) means the source never delivered this one.
        overrun = bool(np.any((post[bad] == OPEN) | (post[bad] > index[bad])))
        return Gap(start + int(bad[0]), start + int(bad[-1]) + 1, len(bad),
                   GapCause.OVERRUN if overrun else GapCause.SOURCE_GAP)

    def release(self, plane: int) -> None:
        """The reader no longer needs planes below ``plane`` (lets a blocked writer proceed)."""
        if plane > self.ring.get("release"):
            self.ring.set("release", plane)
