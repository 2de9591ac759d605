"""The simulator as a virtual camera: a ``SourceBase`` that produces packed spike blocks on demand.

``SimulatorSource`` pulls grey frames (a built-in scene, images, video or any iterable), runs the
integrate-and-fire simulator (``firmware_io.simulator``) and returns blocks of ``block_planes``
packed camera-order planes through ``read(timeout_s)``, like the vendor camera and the replay
source. ``source_from_scene`` builds one for a built-in scene.

Pacing: by default blocks are produced as fast as they are asked for (deterministic, offline).
With ``realtime=True`` block ``k`` (planes ``[k*B, (k+1)*B)``) is handed over no earlier than
``t0 + (k+1)*B / rate_hz`` on the monotonic clock, ``t0`` being the first ``read``: an absolute
schedule, so sleeping jitter never accumulates. A consumer that falls behind gets the next blocks
at once (no planes are skipped); ``late_blocks`` counts blocks produced after their due time.

Statuses: ``OK`` with a block; ``TIMEOUT`` when the next block is not due within ``timeout_s``;
``END_OF_STREAM`` when ``n_planes`` planes were produced, the frames ran out, or the source is
closed; ``ERROR`` once when reading an input frame fails (the message names it), then
``END_OF_STREAM``.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np

from firmware_io.contract import (
    DEFAULT_GEOMETRY,
    DEFAULT_RATE_HZ,
    Geometry,
    Read,
    ReadStatus,
    SourceBase,
    SpikeBlock,
    now_ns,
)
from firmware_io.scenes import SceneName, scene_frames
from firmware_io.simulator import FrameStream, NoiseParams, NoisePreset, SimParams, SpikeSimulator

DEFAULT_BLOCK_PLANES = 100
DEFAULT_SCENE_PLANES_PER_FRAME = 20


class SimulatorSource(SourceBase):
    """A simulated spike camera over grey ``frames``.

    Arguments: ``frames`` (iterable of upright ``(H, W)`` greys in [0, 1]), ``geometry``;
    keyword-only ``planes_per_frame=1`` (ticks per input frame, linearly interpolated),
    ``block_planes=100`` (planes per block; the last block may be shorter), ``n_planes=None``
    (stop after this many planes; ``None`` = until the frames end), ``realtime=False`` (pace
    blocks at ``rate_hz`` against an absolute schedule), ``rate_hz=40000.0``, ``params=SimParams()``
    (threshold and gain; default rate = 0.6 x grey), ``noise=None`` (``NoiseParams``, a
    ``NoisePreset`` or its name), ``seed=0``.

    Counters: ``planes_produced``, ``blocks_produced``, ``late_blocks``; ``simulator.mean_rate``.
    """

    def __init__(
        self,
        frames: Iterable[np.ndarray],
        geometry: Geometry = DEFAULT_GEOMETRY,
        *,
        planes_per_frame: int = 1,
        block_planes: int = DEFAULT_BLOCK_PLANES,
        n_planes: int | None = None,
        realtime: bool = False,
        rate_hz: float = DEFAULT_RATE_HZ,
        params: SimParams = SimParams(),
        noise: NoiseParams | NoisePreset | str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(geometry=geometry, rate_hz=float(rate_hz))
        if isinstance(block_planes, bool) or int(block_planes) != block_planes or block_planes <= 0:
            raise ValueError(f"block_planes must be a positive integer, got {block_planes!r}")
        if n_planes is not None and (int(n_planes) != n_planes or n_planes < 0):
            raise ValueError(f"n_planes must be a non-negative integer or None, got {n_planes!r}")
        if not (rate_hz > 0):
            raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
        self.block_planes = int(block_planes)
        self.n_planes = None if n_planes is None else int(n_planes)
        self.realtime = bool(realtime)
        self.simulator = SpikeSimulator(geometry, params, noise, seed)
        self._frames = frames
        self._stream: FrameStream | None = None
        self._planes_per_frame = planes_per_frame
        self._t0_ns: int | None = None
        self._pending: np.ndarray | None = None  # a block made but not yet due (realtime)
        self._failed = False
        self.planes_produced = 0
        self.blocks_produced = 0
        self.late_blocks = 0
        # Validate planes_per_frame now rather than on the first read.
        if isinstance(planes_per_frame, bool) or int(planes_per_frame) != planes_per_frame or planes_per_frame <= 0:
            raise ValueError(f"planes_per_frame must be a positive integer, got {planes_per_frame!r}")

    def _due_ns(self, stop_plane: int) -> int:
        assert self._t0_ns is not None
        return self._t0_ns + int(round(stop_plane * 1e9 / self.rate_hz))

    def _make_block(self) -> np.ndarray:
        if self._stream is None:
            self._stream = FrameStream(self.simulator, self._frames, self._planes_per_frame)
        want = self.block_planes
        if self.n_planes is not None:
            want = min(want, self.n_planes - self.planes_produced)
        return self._stream.read(max(want, 0), packed=True)

    def read(self, timeout_s: float | None = None) -> Read:
        if self.closed or self._failed:
            return Read(ReadStatus.END_OF_STREAM)
        if self._t0_ns is None:
            self._t0_ns = now_ns()
        if self._pending is None:
            try:
                planes = self._make_block()
            except (ValueError, OSError) as exc:
                self._failed = True
                return Read(ReadStatus.ERROR, message=f"simulator input failed: {exc}")
            if planes.shape[0] == 0:
                return Read(ReadStatus.END_OF_STREAM)
            self._pending = planes
        first = self.planes_produced
        if self.realtime:
            due = self._due_ns(first + self._pending.shape[0])
            wait_ns = due - now_ns()
            if wait_ns > 0:
                if timeout_s is not None and wait_ns > timeout_s * 1e9:
                    if timeout_s > 0:
                        time.sleep(timeout_s)
                    return Read(ReadStatus.TIMEOUT)
                while (remaining := due - now_ns()) > 0:  # sleep to the absolute due time
                    time.sleep(remaining / 1e9)
            elif wait_ns < -1_000_000:
                self.late_blocks += 1
        planes, self._pending = self._pending, None
        self.planes_produced += planes.shape[0]
        self.blocks_produced += 1
        return Read(ReadStatus.OK, SpikeBlock(first_plane=first, planes=planes, capture_t_ns=now_ns()))

    def close(self) -> None:
        self._pending = None
        super().close()


def source_from_scene(
    scene: SceneName | str,
    geometry: Geometry = DEFAULT_GEOMETRY,
    *,
    seed: int = 0,
    speed: float = 1.0,
    planes_per_frame: int = DEFAULT_SCENE_PLANES_PER_FRAME,
    **source_options: Any,
) -> SimulatorSource:
    """A ``SimulatorSource`` over a built-in scene (endless unless ``n_planes``).

    ``scene`` is a ``SceneName`` or its value (``shapes``, ``pan``, ``rotate``, ``text``); ``seed``
    seeds both the scene and the sensor; ``speed`` scales scene motion (about one pixel per input
    frame at 1.0, i.e. ``planes_per_frame=20`` ticks). Defaults give REDS_BASE's rate of
    0.6 x intensity with no noise. ``source_options`` are ``SimulatorSource``'s (``block_planes``,
    ``n_planes``, ``realtime``, ``rate_hz``, ``params``, ``noise``).
    """
    frames = scene_frames(scene, geometry, seed=seed, speed=speed)
    return SimulatorSource(frames, geometry, planes_per_frame=planes_per_frame, seed=seed, **source_options)
