"""The reconstruction worker: windows out of the plane ring, through a ``Reconstructor``, into frames.

Windows follow ``edge.reconstruction.windows`` exactly: the frame for key ``K`` uses planes
``[K - N // 2, K - N // 2 + N)`` (``N`` = the method's window), and keys lie on the grid
``first_plane + N // 2 + m * hop``. A deterministic replay of a file from plane 0 with hop ``E``
therefore yields the keys of ``keys_every(n_planes, N, E)`` and the same frames as the offline
``spike-edge reconstruct FILE --every E``.

Policies (``WorkerPolicy``), explicit and counted:

- ``all``: every window on the grid is reconstructed, in order; when several are ready they are
  batched (up to ``max_batch``). The default for deterministic replay (with the ring's ``block``
  writer policy nothing can be lost).
- ``latest``: windows in order, batched like ``all``, as long as the worker keeps up; when it is
  really behind, skip to the newest complete window. "Behind" is a latency budget
  (``latency_budget_ns``, ``--latency-budget-ms``): more than one window is ready and the oldest
  of them has waited longer than the budget since its newest plane was captured. Scheduling
  jitter (two windows ready at once because the capture handed over two blocks together, or the
  loop woke a little late) is not falling behind and loses nothing; a worker slower than the
  camera skips, so its latency stays about one inference plus the budget. The skipped windows are
  counted (``skipped_windows``) and the next frame carries ``discontinuity``.

Losses the worker cannot prevent (a live writer lapping it: ring overrun; a source that skipped
planes) move the next key to the first grid key whose window is still intact; the planes lost
are counted (``overrun_planes`` / ``source_gap_planes``), the windows with them (``lost_windows``)
and the next frame has ``discontinuity``. A source discontinuity that leaves no gap in the plane
index (a camera whose counter restarted: the capture rebases it, and counts it in the ring's
``discontinuities``) flags the first frame whose window reaches past the newest plane the worker
had seen committed before it noticed the count change (the discontinuity lies after that plane).
So every loss counted flags a frame, and every flagged frame follows a counted loss (skipped
windows, lost windows or a source discontinuity).

``step()`` never blocks: it returns the frames of one batch, an empty list when no window is
ready yet, or ``None`` when the source has ended and no further window can complete. Settings
(method, window, hop, policy) change between batches through ``configure``.

Planes come out of the ring through ``RingReader`` (``edge.live.ring``): one span read per batch
gives the planes or a ``Gap`` with its cause; the worker only decides where on its grid to resume.
When the reconstructor takes windows on a GPU (``GpuReconstructor.window_device``: the torch backend
on CUDA), the span is copied straight from the ring onto the device (``edge.live.upload``) and the
overlapping windows are cut there (``edge.reconstruction.windows.cut_windows``); otherwise the
windows are cut from the host copy, as views.
A worker lapped by the writer resumes a hop clear of the oldest plane, and counts every plane it
gives up that way as overrun.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import numpy as np

from edge.reconstruction.backends.base import GpuReconstructor, Reconstructor
from edge.reconstruction.windows import cut_windows
from edge.live.ring import Gap, GapCause, RingRead, RingReader, SpikeRing

DEFAULT_HOP_PLANES = 40  # 1,000 frames/s at 40,000 planes/s
DEFAULT_MAX_BATCH = 8
DEFAULT_LATENCY_BUDGET_MS = 5.0  # 'latest' skips only when the oldest ready window waited longer than this


class WorkerPolicy(str, enum.Enum):
    LATEST = "latest"
    ALL = "all"




@dataclass(frozen=True)
class WindowFrame:
    """One reconstructed window with its per-stage times (monotonic ns)."""

    key_plane: int
    plane_start: int
    plane_stop: int
    image: np.ndarray
    capture_t_ns: int  # newest plane of the window
    dequeue_t_ns: int
    infer_start_t_ns: int
    infer_end_t_ns: int
    discontinuity: bool


class Worker:
    """Turns ring planes into frames under an explicit policy (see the module docstring)."""

    def __init__(self, ring: SpikeRing, reconstructor: Reconstructor, *, hop_planes: int = DEFAULT_HOP_PLANES,
                 policy: WorkerPolicy = WorkerPolicy.ALL, max_batch: int = DEFAULT_MAX_BATCH,
                 latency_budget_ns: int = int(DEFAULT_LATENCY_BUDGET_MS * 1e6)) -> None:
        # hop and policy arrive validated and typed (edge.live.config); only what depends on the ring is checked here
        self.ring = ring
        self.reconstructor = reconstructor
        self.hop_planes = hop_planes
        self.policy = policy
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        if latency_budget_ns < 0:
            raise ValueError(f"latency_budget_ns must be >= 0, got {latency_budget_ns}")
        self.latency_budget_ns = latency_budget_ns
        self._check_window(reconstructor.window_planes)
        self.next_key: int | None = None
        self.skipped_windows = 0
        self.overrun_planes = 0
        self.source_gap_planes = 0
        self.lost_windows = 0  # windows not produced because their planes were lost
        self.windows = 0
        self._discontinuity = False
        self._source_discontinuities = ring.get("discontinuities")  # seen so far
        self._seen_committed = 0  # committed when they were last read
        self._flag_past_plane: int | None = None  # flag the first window ending after this plane
        self._spans_cache = None
        self.reader = RingReader(ring)
        self._spans = self._device_spans(reconstructor)

    def _device_spans(self, reconstructor: Reconstructor):
        """A ``DeviceSpans`` when ``reconstructor`` takes windows on a device (CUDA), else ``None`` (host path)."""
        device = reconstructor.window_device if isinstance(reconstructor, GpuReconstructor) else None
        if device is None:
            return None
        from edge.live.upload import DeviceSpans  # imports torch: only for a reconstructor that runs on it

        if self._spans_cache is not None and self._spans_cache.device == device:
            return self._spans_cache
        self._spans_cache = DeviceSpans(self.reader, device)
        return self._spans_cache

    def _read(self, start: int, stop: int) -> RingRead:
        return self._spans.read(start, stop) if self._spans is not None else self.reader.read(start, stop)

    @property
    def window_planes(self) -> int:
        return self.reconstructor.window_planes

    def _check_window(self, window_planes: int) -> None:
        if window_planes + self.hop_planes > self.ring.capacity:
            raise ValueError(
                f"the ring holds {self.ring.capacity} planes; a {window_planes}-plane window with hop "
                f"{self.hop_planes} needs at least {window_planes + self.hop_planes} (raise --ring-planes)"
            )

    def check_fits(self, window_planes: int, hop_planes: int) -> None:
        """``ValueError`` unless a ``window_planes`` window with hop ``hop_planes`` fits the ring."""
        if window_planes + hop_planes > self.ring.capacity:
            raise ValueError(f"window {window_planes} + hop {hop_planes} planes do not fit the "
                             f"{self.ring.capacity}-plane ring")

    def configure(self, *, reconstructor: Reconstructor | None = None, hop_planes: int | None = None,
                  policy: WorkerPolicy | None = None) -> None:
        """Apply new settings from the next window on; keys continue from the current grid position."""
        hop = self.hop_planes if hop_planes is None else hop_planes
        self.check_fits((reconstructor or self.reconstructor).window_planes, hop)
        new_policy = self.policy if policy is None else policy
        self.hop_planes, self.policy = hop, new_policy
        if reconstructor is not None:
            self.reconstructor = reconstructor
            self._spans = self._device_spans(reconstructor)

    # -- one step ---------------------------------------------------------------------------------
    def step(self) -> list[WindowFrame] | None:
        ring = self.ring
        finished = ring.finished  # read first: once it says "done", no plane can arrive after the reads below
        first_plane = ring.get("first_plane")
        committed = ring.committed
        if first_plane < 0:
            return None if finished else []
        n, hop = self.window_planes, self.hop_planes
        half = n // 2
        if self.next_key is None:
            self.next_key = first_plane + half
            if self.policy is WorkerPolicy.LATEST and committed - first_plane >= n:
                # a live start: begin with the newest complete window on the grid
                m = (committed - first_plane - n) // hop
                self.next_key = first_plane + half + m * hop
        start = self.next_key - half
        lapped = self.reader.lapped(start)
        if lapped is not None:  # resume at the first window on the grid a hop clear of the writer
            resume = self._first_key_from(lapped.stop_plane + hop) - half
            self._lose(lapped.cause, resume, n_planes=resume - start)
            start = self.next_key - half
        if committed < start + n:
            return None if finished else []
        self._notice_source_discontinuity(committed)
        ready = (committed - start - n) // hop + 1
        if self.policy is WorkerPolicy.LATEST and ready > 1 and self._behind(start + n - 1):
            self.skipped_windows += ready - 1
            self.next_key += (ready - 1) * hop
            self._discontinuity = True
            self.reader.release(self.next_key - half)
            batch = 1
        else:
            batch = min(ready, self.max_batch, max(1, (ring.capacity - n) // hop + 1))
        start = self.next_key - half
        got = self._read(start, start + (batch - 1) * hop + n)
        if isinstance(got, Gap) and got.first_plane >= start + n:
            # the windows that end before the first missing plane are intact: reconstruct those now,
            # the gap is handled on the next step
            batch = (got.first_plane - start - n) // hop + 1
            got = self._read(start, start + (batch - 1) * hop + n)
        dequeue_t_ns = time.monotonic_ns()
        if isinstance(got, Gap):  # resume at the first window after the last missing plane
            self._lose(got.cause, self._first_key_from(got.stop_plane) - half, n_planes=got.n_lost)
            return []
        buf, tbuf = got.planes, got.t_ns
        if self._spans is not None:  # the span is on the device: cut the windows there
            infer_start = time.monotonic_ns()
            images = self.reconstructor.reconstruct_device(cut_windows(buf, batch, n, hop))
            infer_end = time.monotonic_ns()
        else:
            if batch == 1:
                windows = buf[None, :n]
            else:
                windows = cut_windows(buf, batch, n, hop)
                if getattr(self.reconstructor, "backend", "numpy") != "numpy":
                    windows = np.ascontiguousarray(windows)
            infer_start = time.monotonic_ns()
            images = self.reconstructor.reconstruct(windows)
            infer_end = time.monotonic_ns()
        frames = []
        for i in range(batch):
            s = start + i * hop
            flag = self._discontinuity
            if self._flag_past_plane is not None and s + n > self._flag_past_plane:
                flag, self._flag_past_plane = True, None
            frames.append(WindowFrame(
                key_plane=s + half, plane_start=s, plane_stop=s + n, image=images[i],
                capture_t_ns=int(tbuf[i * hop + n - 1]), dequeue_t_ns=dequeue_t_ns,
                infer_start_t_ns=infer_start, infer_end_t_ns=infer_end, discontinuity=flag))
            self._discontinuity = False
        self.windows += batch
        self.next_key += batch * hop
        self.reader.release(self.next_key - half)
        return frames

    def _behind(self, plane: int) -> bool:
        """Whether ``plane`` (the newest plane of the oldest ready window) was captured longer than the
        latency budget ago; a plane no longer in its slot (overwritten, or never delivered) counts as behind."""
        ring = self.ring
        slot = plane % ring.capacity
        t_ns = int(ring.t_ns[slot])
        if int(ring.stamps[slot]) != plane:
            return True
        return time.monotonic_ns() - t_ns > self.latency_budget_ns

    def _notice_source_discontinuity(self, committed: int) -> None:
        """A discontinuity the capture counted without a gap in the plane index (a rebased camera counter)
        flags the first window that reaches past the planes committed when the count was last read
        unchanged (``committed`` is read before the count, and the capture counts before it writes)."""
        seen = self.ring.get("discontinuities")
        if seen != self._source_discontinuities:
            self._source_discontinuities = seen
            if self._flag_past_plane is None:
                self._flag_past_plane = self._seen_committed
        self._seen_committed = committed

    def _first_key_from(self, plane: int) -> int:
        """The first key on the current grid whose window starts at or after ``plane``."""
        half, hop = self.window_planes // 2, self.hop_planes
        start = self.next_key - half
        if plane <= start:
            return self.next_key
        return self.next_key + -(-(plane - start) // hop) * hop

    def _lose(self, cause: GapCause, new_start: int, *, n_planes: int) -> None:
        """Move the next window to start at ``new_start`` after losing ``n_planes`` planes to ``cause``."""
        half = self.window_planes // 2
        if cause is GapCause.OVERRUN:
            self.overrun_planes += n_planes
        else:
            self.source_gap_planes += n_planes
        self.lost_windows += (new_start - (self.next_key - half)) // self.hop_planes
        self.next_key = new_start + half
        self._discontinuity = True
        self.reader.release(new_start)

