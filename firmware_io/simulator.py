"""Integrate-and-fire spike simulation: grey frames in, spike planes out (the virtual sensor).

Model (see ``spike-camera-facts.md``, "Simulating spikes from video")
-----------------------------------------------------------------------
Every pixel holds an accumulator ``A`` that starts uniform in ``[0, V_th)`` (seeded). On each tick it
adds ``g * gain`` for the pixel's grey level ``g`` in ``[0, 1]``; when ``A >= V_th`` the pixel fires
and ``V_th`` is subtracted (the surplus is kept). A pixel fires at most once per tick. The long-run
firing rate (spikes per pixel per tick) of a constant grey ``g`` is therefore::

    rate = g * gain / V_th          (= g * rate_scale, rate_scale = gain / V_th)

Defaults: ``V_th = 2.0`` (Spike-Zoo's simulator) and ``gain = 1.2``, i.e. ``rate_scale = 0.6``,
which reproduces REDS_BASE's convention (firing rate = 0.6 x intensity); built-in scenes and the
``spike-edge simulate`` command use these defaults. ``SimParams.from_rate_scale(0.6)`` builds the
parameters for another scale. When ``g * gain >= V_th`` the pixel saturates: it fires every tick and
the accumulator is clamped below ``V_th`` (charge beyond one threshold is lost, not banked).

Input frames and time
---------------------
``planes_per_frame = N`` ticks are simulated per input frame. Between frame ``i`` and ``i + 1`` the
grey level is interpolated linearly per tick: tick ``k`` of frame ``i`` (``0 <= k < N``) sees
``f_i + (k / N) * (f_{i+1} - f_i)``; the last frame is held for its ``N`` ticks. ``K`` frames give
``K * N`` planes.

Noise (all off by default; ``NoiseParams``, presets in ``NoisePreset``)
-----------------------------------------------------------------------
- ``spurious_rate``: extra spikes per pixel per tick, independent of light. Each pixel fires
  spurious spikes with Gaussian gaps (mean ``1 / spurious_rate`` ticks, standard deviation
  ``spurious_gap_cv`` x mean, at least one tick) as in SpikingSIM (mean 140, sd 50 ticks). Spurious
  spikes are OR-ed with real ones, so a pixel's rate becomes about ``r + s - r * s``.
- ``gain_fpn``: fixed-pattern gain noise, a per-pixel gain factor ``1 + gain_fpn * N(0, 1)``
  (clipped at 0) drawn once; a pixel's rate scales with its factor, the mean rate is unchanged.
- ``gain_jitter``: per-tick gain noise, the increment is multiplied by ``1 + gain_jitter * N(0, 1)``
  each tick; zero mean, so rates are unchanged on average while inter-spike intervals spread.
- ``hot_pixels`` / ``dead_pixels``: fractions of pixels that fire on every tick / never fire
  (chosen once; dead wins where both are drawn).

Determinism: the output depends only on the seed, the parameters and the input, not on how the
ticks are split into calls (each noise process has its own random stream spawned from the seed).

Output is either upright 0/1 planes ``(n, H, W)`` (``bool``) or packed camera-order planes
``(n, plane_bytes)`` made by ``firmware_io.bitpack.pack_planes``.

Design
------
- One tick at a time over the whole plane (4 vectorised passes: add, compare, scale, subtract)
  rather than a cumulative-sum closed form over many ticks: the loop keeps the accumulator in cache,
  supports per-tick noise, and runs at about 15,000 planes/s at 250x400 on one core here.
  ``np.subtract(..., where=mask)`` was 8x slower than subtracting ``mask * V_th``.
- Per-tick gain jitter reads a window at a random offset of a fixed bank of 2**20 Gaussian samples
  instead of drawing 100,000 fresh normals per tick (about 1 ms per tick, which would cap the
  simulator near 1,000 planes/s). A pixel's jitter at different ticks comes from unrelated bank
  positions; the bank's finite size is the approximation.
- Spurious-spike gaps are hashed from (seed, pixel, event number) with splitmix64, so they do not
  depend on how ticks are grouped into calls.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

import numpy as np

from firmware_io.bitpack import pack_planes
from firmware_io.contract import Geometry

DEFAULT_THRESHOLD = 2.0
REDS_BASE_RATE_SCALE = 0.6
DEFAULT_GAIN = REDS_BASE_RATE_SCALE * DEFAULT_THRESHOLD  # 1.2: rate = 0.6 x grey
_JITTER_BANK_SIZE = 1 << 20
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class SimParams:
    """Integrate-and-fire settings: ``rate = grey * gain / threshold`` spikes per pixel per tick."""

    threshold: float = DEFAULT_THRESHOLD
    gain: float = DEFAULT_GAIN

    def __post_init__(self) -> None:
        if not (self.threshold > 0):
            raise ValueError(f"threshold (V_th) must be > 0, got {self.threshold!r}")
        if not (self.gain >= 0):
            raise ValueError(f"gain must be >= 0, got {self.gain!r}")

    @classmethod
    def from_rate_scale(cls, rate_scale: float, threshold: float = DEFAULT_THRESHOLD) -> "SimParams":
        """Parameters whose firing rate is ``rate_scale * grey`` (REDS_BASE: ``rate_scale = 0.6``)."""
        if not (0 <= rate_scale):
            raise ValueError(f"rate_scale must be >= 0, got {rate_scale!r}")
        return cls(threshold=threshold, gain=rate_scale * threshold)

    @property
    def rate_scale(self) -> float:
        return self.gain / self.threshold


def firing_rate(grey: np.ndarray | float, params: SimParams = SimParams()) -> np.ndarray | float:
    """Expected spikes per pixel per tick for grey level(s) in [0, 1] (noise-free, saturating at 1)."""
    return np.minimum(np.asarray(grey, dtype=np.float64) * params.rate_scale, 1.0)


@dataclass(frozen=True)
class NoiseParams:
    """Sensor noise knobs; see the module docstring for what each one does to the rates."""

    spurious_rate: float = 0.0
    spurious_gap_cv: float = 50.0 / 140.0
    gain_fpn: float = 0.0
    gain_jitter: float = 0.0
    hot_pixels: float = 0.0
    dead_pixels: float = 0.0

    def __post_init__(self) -> None:
        for name in ("spurious_rate", "spurious_gap_cv", "gain_fpn", "gain_jitter", "hot_pixels", "dead_pixels"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"noise {name} must be a number >= 0, got {value!r}")
        for name in ("spurious_rate", "hot_pixels", "dead_pixels"):
            if getattr(self, name) > 1:
                raise ValueError(f"noise {name} is a fraction in [0, 1], got {getattr(self, name)!r}")

    @property
    def is_off(self) -> bool:
        return not (self.spurious_rate or self.gain_fpn or self.gain_jitter or self.hot_pixels or self.dead_pixels)


class NoisePreset(str, enum.Enum):
    """Named noise levels (CLI ``--noise``)."""

    NONE = "none"
    LOW = "low"
    REALISTIC = "realistic"

    @property
    def params(self) -> NoiseParams:
        return _NOISE_PRESETS[self]


_NOISE_PRESETS = {
    NoisePreset.NONE: NoiseParams(),
    NoisePreset.LOW: NoiseParams(spurious_rate=1.0 / 1000.0, gain_fpn=0.02, hot_pixels=1e-5, dead_pixels=1e-5),
    # SpikingSIM-like: spurious spikes every ~140 ticks (sd 50), a few percent gain noise.
    NoisePreset.REALISTIC: NoiseParams(
        spurious_rate=1.0 / 140.0, gain_fpn=0.05, gain_jitter=0.05, hot_pixels=1e-4, dead_pixels=1e-4
    ),
}


def noise_params(noise: "NoiseParams | NoisePreset | str | None") -> NoiseParams:
    """Normalise a preset name, preset or ``NoiseParams`` (``None`` = no noise)."""
    if noise is None:
        return NoiseParams()
    if isinstance(noise, NoiseParams):
        return noise
    try:
        return NoisePreset(noise).params
    except ValueError:
        raise ValueError(f"unknown noise preset {noise!r}; expected one of {[p.value for p in NoisePreset]}") from None


# ---------------------------------------------------------------------------------------------
# Pure kernels
# ---------------------------------------------------------------------------------------------


def integrate_fire(
    acc: np.ndarray,
    inc: np.ndarray,
    threshold: float,
    out: np.ndarray,
    *,
    inc_step: np.ndarray | None = None,
    jitter: Iterable[np.ndarray] | None = None,
    saturating: bool = True,
) -> np.ndarray:
    """Run ``len(out)`` ticks of integrate-and-fire on flat float32 state arrays, in place.

    ``acc`` (accumulators) and ``inc`` (per-tick increment, ``grey * gain``) are updated in place;
    ``inc_step`` is added to ``inc`` after every tick (linear interpolation); ``jitter`` yields one
    multiplicative noise array (``sigma * N(0,1)``) per tick; ``out`` (``bool (n, pixels)``) receives
    the spikes. ``saturating=False`` skips the clamp that is only needed when an increment can
    reach the threshold. Returns ``out``.
    """
    v = np.float32(threshold)
    below = np.nextafter(v, np.float32(0))
    tmp = np.empty_like(acc)
    jit = iter(jitter) if jitter is not None else None
    for t in range(out.shape[0]):
        if jit is not None:
            np.multiply(inc, next(jit), out=tmp)
            acc += tmp
        acc += inc
        fired = out[t]
        np.greater_equal(acc, v, out=fired)
        np.multiply(fired, v, out=tmp)
        acc -= tmp
        if saturating:
            np.minimum(acc, below, out=acc)
        if inc_step is not None:
            inc += inc_step
    return out


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def hashed_normal(key: int, pixel: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Standard normal samples that depend only on ``(key, pixel, event)`` (Box-Muller on splitmix64)."""
    with np.errstate(over="ignore"):
        base = (pixel.astype(np.uint64) << np.uint64(24)) ^ event.astype(np.uint64) ^ np.uint64(key & 0xFFFFFFFFFFFF)
        h1 = _splitmix64(base * np.uint64(2))
        h2 = _splitmix64(base * np.uint64(2) + np.uint64(1))
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    u2 = (h2 >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def interpolation_ramp(f0: np.ndarray, f1: np.ndarray | None, n_ticks: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey at the first tick and per-tick step for ``n_ticks`` ticks going from ``f0`` towards ``f1``."""
    if f1 is None:
        return f0, None
    return f0, (f1 - f0) / np.float32(n_ticks)


# ---------------------------------------------------------------------------------------------
# The stateful simulator
# ---------------------------------------------------------------------------------------------


class SpikeSimulator:
    """Integrate-and-fire state for one ``geometry``: accumulators, noise state and the tick count.

    ``SpikeSimulator(geometry, params=SimParams(), noise=NoiseParams() | "low" | ..., seed=0)``.
    ``simulate(greys)`` runs one tick per grey plane; ``ramp(f0, f1, n)`` runs ``n`` ticks
    interpolating from ``f0`` towards ``f1`` (``f1=None`` holds ``f0``). Both return upright
    ``bool (n, H, W)`` planes, or packed camera-order planes with ``packed=True``.
    ``spike_count`` and ``tick`` count what has been produced.
    """

    def __init__(
        self,
        geometry: Geometry,
        params: SimParams = SimParams(),
        noise: NoiseParams | NoisePreset | str | None = None,
        seed: int = 0,
    ) -> None:
        self.geometry = geometry
        self.params = params
        self.noise = noise_params(noise)
        self.seed = int(seed)
        self.tick = 0
        self.spike_count = 0
        n = geometry.pixels
        seeds = np.random.SeedSequence(self.seed).spawn(5)
        self.acc = (np.random.default_rng(seeds[0]).random(n, dtype=np.float32) * np.float32(params.threshold)).astype(
            np.float32
        )
        self.acc = np.minimum(self.acc, np.nextafter(np.float32(params.threshold), np.float32(0)))
        gain = np.full(n, params.gain, dtype=np.float32)
        if self.noise.gain_fpn:
            fpn = np.random.default_rng(seeds[1]).standard_normal(n).astype(np.float32)
            gain *= np.maximum(np.float32(1) + np.float32(self.noise.gain_fpn) * fpn, np.float32(0))
        self.gain = gain
        defect_rng = np.random.default_rng(seeds[2])
        draw = defect_rng.random(n)
        self.dead_idx = np.flatnonzero(draw < self.noise.dead_pixels)
        self.hot_idx = np.flatnonzero((draw >= self.noise.dead_pixels) & (draw < self.noise.dead_pixels + self.noise.hot_pixels))
        self._jitter_rng = np.random.default_rng(seeds[3])
        self._jitter_bank = (
            (np.random.default_rng(seeds[4]).standard_normal(_JITTER_BANK_SIZE + n) * self.noise.gain_jitter).astype(
                np.float32
            )
            if self.noise.gain_jitter
            else None
        )
        self._spurious_key = int(np.random.SeedSequence(self.seed).generate_state(1, np.uint64)[0]) & 0xFFFFFFFFFFFF
        if self.noise.spurious_rate:
            self._pixel_ids = np.arange(n, dtype=np.int64)
            self._spurious_events = np.zeros(n, dtype=np.int64)
            first_gap = self._spurious_gaps(self._pixel_ids, self._spurious_events)
            # Start each pixel part-way through its first gap (a stationary phase), hashed as event -1.
            phase = (hashed_normal(self._spurious_key ^ 0x5A5A, self._pixel_ids, self._spurious_events) * 0.28867 + 0.5)
            self._next_spurious = (np.clip(phase, 0.0, 0.999) * first_gap).astype(np.int64)
            self._spurious_events += 1

    # -- noise helpers ----------------------------------------------------------------------
    def _spurious_gaps(self, pixels: np.ndarray, events: np.ndarray) -> np.ndarray:
        mean = 1.0 / self.noise.spurious_rate
        gaps = mean + self.noise.spurious_gap_cv * mean * hashed_normal(self._spurious_key, pixels, events)
        return np.maximum(np.rint(gaps), 1).astype(np.int64)

    def _jitter(self, n_ticks: int) -> Iterator[np.ndarray]:
        n = self.geometry.pixels
        for offset in self._jitter_rng.integers(0, _JITTER_BANK_SIZE, size=n_ticks):
            yield self._jitter_bank[offset : offset + n]

    def _add_spurious(self, flat: np.ndarray, t0: int) -> None:
        t_end = t0 + flat.shape[0]
        while True:
            idx = np.flatnonzero(self._next_spurious < t_end)
            if idx.size == 0:
                return
            flat[self._next_spurious[idx] - t0, idx] = True
            self._next_spurious[idx] += self._spurious_gaps(idx, self._spurious_events[idx])
            self._spurious_events[idx] += 1

    # -- simulation -------------------------------------------------------------------------
    def _run(self, grey0: np.ndarray, step: np.ndarray | None, n_ticks: int, packed: bool) -> np.ndarray:
        n = self.geometry.pixels
        out = np.zeros((n_ticks, n), dtype=bool)
        if n_ticks:
            g0 = self._check_grey(grey0)
            inc = g0 * self.gain
            inc_step = None if step is None else self._check_grey(step, signed=True) * self.gain
            peak = float(inc.max(initial=0.0))
            if inc_step is not None:
                peak = max(peak, float((inc + inc_step * np.float32(n_ticks)).max(initial=0.0)))
            saturating = peak >= self.params.threshold * 0.999 or bool(self.noise.gain_jitter)
            jitter = self._jitter(n_ticks) if self._jitter_bank is not None else None
            integrate_fire(self.acc, inc, self.params.threshold, out, inc_step=inc_step, jitter=jitter, saturating=saturating)
            if self.noise.spurious_rate:
                self._add_spurious(out, self.tick)
            if self.hot_idx.size:
                out[:, self.hot_idx] = True
            if self.dead_idx.size:
                out[:, self.dead_idx] = False
            self.tick += n_ticks
            self.spike_count += int(np.count_nonzero(out))
        planes = out.reshape(n_ticks, *self.geometry.shape)
        return pack_planes(planes) if packed else planes

    def _check_grey(self, grey: np.ndarray, signed: bool = False) -> np.ndarray:
        grey = np.asarray(grey, dtype=np.float32)
        if grey.shape != self.geometry.shape:
            raise ValueError(f"grey frame has shape {grey.shape}, expected {self.geometry.shape} ({self.geometry})")
        return grey.reshape(-1)

    def ramp(self, f0: np.ndarray, f1: np.ndarray | None, n_ticks: int, *, packed: bool = False) -> np.ndarray:
        """``n_ticks`` ticks interpolating linearly from ``f0`` (tick 0) towards ``f1`` (reached at tick ``n``)."""
        if n_ticks < 0:
            raise ValueError(f"n_ticks must be >= 0, got {n_ticks}")
        f0 = np.clip(np.asarray(f0, dtype=np.float32), 0, 1)
        f1 = None if f1 is None else np.clip(np.asarray(f1, dtype=np.float32), 0, 1)
        grey0, step = interpolation_ramp(f0, f1, max(n_ticks, 1))
        return self._run(grey0, step, n_ticks, packed)

    def simulate(self, greys: np.ndarray, *, packed: bool = False) -> np.ndarray:
        """One tick per grey plane of ``greys (n, H, W)`` (values clipped to [0, 1])."""
        greys = np.asarray(greys, dtype=np.float32)
        if greys.ndim != 3:
            raise ValueError(f"greys must have shape (n, H, W), got {greys.shape}")
        parts = [self.ramp(g, None, 1, packed=packed) for g in greys]
        if not parts:
            return self._run(np.zeros(self.geometry.shape, np.float32), None, 0, packed)
        return np.concatenate(parts)

    @property
    def mean_rate(self) -> float:
        """Spikes per pixel per tick so far."""
        return self.spike_count / (self.tick * self.geometry.pixels) if self.tick else 0.0


class FrameStream:
    """Pulls grey frames from an iterable and produces planes on demand, ``planes_per_frame`` per frame.

    ``FrameStream(simulator, frames, planes_per_frame=1)``; ``read(n, packed=True)`` returns up to
    ``n`` planes (fewer only when the frames run out; an empty array at the end). Holds at most two
    frames and one partly consumed frame interval, so memory stays bounded for any input length.
    """

    def __init__(self, simulator: SpikeSimulator, frames: Iterable[np.ndarray], planes_per_frame: int = 1) -> None:
        if int(planes_per_frame) != planes_per_frame or planes_per_frame <= 0:
            raise ValueError(f"planes_per_frame must be a positive integer, got {planes_per_frame!r}")
        self.simulator = simulator
        self.planes_per_frame = int(planes_per_frame)
        self._frames = iter(frames)
        self._current: np.ndarray | None = self._next_frame()
        self._following: np.ndarray | None = self._next_frame() if self._current is not None else None
        self._k = 0  # ticks already produced in the current frame interval
        self.planes_read = 0

    def _next_frame(self) -> np.ndarray | None:
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        frame = np.clip(np.asarray(frame, dtype=np.float32), 0, 1)
        if frame.shape != self.simulator.geometry.shape:
            raise ValueError(f"input frame has shape {frame.shape}, expected {self.simulator.geometry.shape}")
        return frame

    @property
    def exhausted(self) -> bool:
        return self._current is None

    def read(self, n_planes: int, *, packed: bool = True) -> np.ndarray:
        parts = []
        remaining = n_planes
        npf = self.planes_per_frame
        while remaining > 0 and self._current is not None:
            take = min(remaining, npf - self._k)
            f0 = self._current
            if self._following is not None:
                step = (self._following - f0) / np.float32(npf)
                grey0 = f0 + step * np.float32(self._k)
                parts.append(self.simulator._run(grey0, step, take, packed))
            else:
                parts.append(self.simulator._run(f0, None, take, packed))
            self._k += take
            remaining -= take
            if self._k == npf:
                self._k = 0
                self._current = self._following
                self._following = self._next_frame() if self._current is not None else None
        if not parts:
            parts.append(self.simulator._run(np.zeros(self.simulator.geometry.shape, np.float32), None, 0, packed))
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.planes_read += out.shape[0]
        return out


def simulate_frames(
    frames: Iterable[np.ndarray],
    geometry: Geometry,
    *,
    planes_per_frame: int = 1,
    params: SimParams = SimParams(),
    noise: NoiseParams | NoisePreset | str | None = None,
    seed: int = 0,
    chunk_planes: int = 256,
    packed: bool = True,
) -> Iterator[np.ndarray]:
    """Yield chunks of at most ``chunk_planes`` planes simulated from ``frames`` (bounded memory)."""
    stream = FrameStream(SpikeSimulator(geometry, params, noise, seed), frames, planes_per_frame)
    while True:
        chunk = stream.read(chunk_planes, packed=packed)
        if chunk.shape[0] == 0:
            return
        yield chunk


def with_overrides(noise: NoiseParams, **overrides: float | None) -> NoiseParams:
    """``noise`` with the given fields replaced (``None`` values are ignored)."""
    return replace(noise, **{k: v for k, v in overrides.items() if v is not None})
