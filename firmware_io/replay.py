"""Replaying a recording (a spike file or a recording folder) as a source: ``ReplaySource`` over ``open_recording``.

The replay source speaks the same protocol as the simulator and the camera (``SourceBase``): it
hands out ``SpikeBlock`` s of ``block_planes`` consecutive packed planes with a status on every read.

- Deterministic (the default): blocks come as fast as the consumer takes them, nothing is ever
  dropped or reordered, and ``capture_t_ns`` is the hand-over time. Two runs give the same blocks.
- ``realtime=True``: block ``[a, b)`` is handed over no earlier than ``t0 + b / (rate_hz * speed)``
  (the sensor has read out plane ``b - 1`` then), computed from the absolute start time ``t0``; a
  late consumer is not "caught up" by sleeping less later, it simply gets the due blocks at once.
  ``capture_t_ns`` is the scheduled time, so latencies measured against it include any lateness.
- ``loop=True`` restarts the file at its end; plane indices keep increasing across loops (plane
  ``i`` of the stream is plane ``i % n_planes`` of the file), so windows never see a reset.

Gaps: a recording folder may lack planes of the stream it recorded (``gaps``). The replay keeps the
stream's indices: the block after a gap starts where the stream resumed, so the jump reaches the
consumer as a source gap (the live daemon flags the next frame as a discontinuity), and a real-time
replay lets the gap's time pass.

Design: pacing by one sleep per block against the absolute schedule rather than chained
``sleep(1 / rate)`` calls, which drift by the sleep overshoot of every call. Blocks never straddle
the end of the file, a gap or a segment (the block before one may be shorter); each is an array of
its own.

A recording that cannot be read any more (a ``.dat`` truncated or rewritten under the replay) gives
an ``ERROR`` read whose message names the file and the planes: a source failure, never a crash
(``firmware_io.dat`` reads with positioned reads, not a memory map, for this reason).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from firmware_io.contract import DEFAULT_RATE_HZ, Geometry, Read, ReadStatus, SourceBase, SpikeBlock, now_ns
from firmware_io.layouts import Layout
from firmware_io.recording import open_recording

DEFAULT_BLOCK_PLANES = 40


class ReplaySource(SourceBase):
    """Blocks of a recording (``.dat`` / ``.npz`` / folder), deterministic or paced in real time."""

    def __init__(
        self,
        path: str | os.PathLike,
        geometry: Geometry | None = None,
        *,
        block_planes: int = DEFAULT_BLOCK_PLANES,
        realtime: bool = False,
        rate_hz: float = DEFAULT_RATE_HZ,
        speed: float = 1.0,
        loop: bool = False,
        with_head: bool = False,
        layout: Layout | None = None,
    ) -> None:
        if not isinstance(block_planes, int) or block_planes <= 0:
            raise ValueError(f"block_planes must be a positive integer, got {block_planes!r}")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz!r}")
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self.path = Path(path)
        self.recording = open_recording(self.path, geometry, with_head=with_head, layout=layout)
        super().__init__(self.recording.geometry, float(rate_hz))
        self.n_file_planes = int(self.recording.n_planes)
        if self.n_file_planes <= 0:
            self.recording.close()
            raise ValueError(f"{self.path} holds no planes")
        self.block_planes = block_planes
        self.realtime = bool(realtime)
        self.speed = float(speed)
        self.loop = bool(loop)
        self.next_plane = 0  # stream index of the next plane to hand out
        self._t0_ns: int | None = None  # absolute schedule origin, set on the first read

    # -- schedule -------------------------------------------------------------------------------
    def due_ns(self, stop_plane: int) -> int:
        """When the block ending at ``stop_plane`` (exclusive) is due under the real-time schedule."""
        assert self._t0_ns is not None
        return self._t0_ns + int(round(stop_plane * 1e9 / (self.rate_hz * self.speed)))

    def _next_range(self) -> tuple[int, int] | None:
        """The recording's planes of the next block; steps ``next_plane`` over a gap first."""
        if not self.loop and self.next_plane >= self.n_file_planes:
            return None
        offset = self.next_plane % self.n_file_planes
        present = self.recording.next_present(offset)
        self.next_plane += present - offset  # a gap (never at the end: a recording ends on a stored plane)
        n = min(self.block_planes, self.recording.run_stop(present) - present)
        return present, present + n

    # -- protocol -------------------------------------------------------------------------------
    def read(self, timeout_s: float | None = None) -> Read:
        if self.closed:
            return Read(ReadStatus.ERROR, message=f"replay of {self.path} is closed")
        rng = self._next_range()
        if rng is None:
            return Read(ReadStatus.END_OF_STREAM, message=f"end of {self.path} after {self.next_plane} planes")
        first, stop = rng
        n = stop - first
        if self.realtime:
            if self._t0_ns is None:
                self._t0_ns = now_ns()
            due = self.due_ns(self.next_plane + n)
            wait_ns = due - now_ns()
            if wait_ns > 0:
                if timeout_s is not None and wait_ns > timeout_s * 1e9:
                    time.sleep(max(timeout_s, 0.0))
                    return Read(ReadStatus.TIMEOUT, message="next replay block not due yet")
                time.sleep(wait_ns / 1e9)
            capture_t_ns = due
        else:
            capture_t_ns = now_ns()
        try:
            planes = self.recording.packed(first, stop)
        except (OSError, ValueError, IndexError) as exc:
            return Read(ReadStatus.ERROR, message=f"reading planes [{first}, {stop}) of {self.path}: {exc}")
        block = SpikeBlock(self.next_plane, planes, capture_t_ns)
        self.next_plane += n
        return Read(ReadStatus.OK, block)

    def close(self) -> None:
        if not self.closed:
            self.recording.close()
        super().close()
