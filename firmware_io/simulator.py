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
``(n, plane_bytes)``, byte for byte what ``firmware_io.bitpack.pack_planes`` makes of the upright
planes (see Design).

Design
------
- One tick at a time over the whole plane (4 vectorised passes: add, compare, scale, subtract)
  rather than a cumulative-sum closed form over many ticks: the loop keeps the accumulator in cache,
  supports per-tick noise. Measured at 250x400 on one core of a shared 2-core machine (load ~4):
  about 10,000 planes/s without noise and 6,000 with ``realistic`` noise (packed, interpolating);
  4,400-7,400 planes/s including scene rendering at 20 planes per frame
  (``spike-edge bench simulate``). Live 40 kHz at 250x400 is therefore out of reach of one core;
  ``SimulatorSource`` counts the blocks it produces late.
  ``np.subtract(..., where=mask)`` was 8x slower than subtracting ``mask * V_th``.
- Per-tick gain jitter reads a window at a random offset of a fixed bank of 2**18 + pixels gain
  factors ``1 + sigma * N(0,1)`` instead of drawing 100,000 fresh normals per tick (about 1 ms per
  tick, which would cap the simulator near 1,000 planes/s). A pixel's jitter at different ticks
  comes from unrelated bank positions; the bank's finite size is the approximation.
- The state is kept in camera order (rows bottom-up), so packed output is ``np.packbits`` of the
  spike planes with no flip; it equals ``bitpack.pack_planes`` of the upright planes (tested).
  Packing through the flip cost about a third of the simulator's time.
- Spurious-spike gaps are hashed from (seed, pixel, event number) with splitmix64, so they do not
  depend on how ticks are grouped into calls.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from firmware_io.contract import Geometry

DEFAULT_THRESHOLD = 2.0
REDS_BASE_RATE_SCALE = 0.6
DEFAULT_GAIN = REDS_BASE_RATE_SCALE * DEFAULT_THRESHOLD  # 1.2: rate = 0.6 x grey
_JITTER_BANK_SIZE = 1 << 18
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
    """Run ``len(out)`` ticks of integrate-and-fire on flat float32 arrays, updating them in place.

    Each tick adds ``inc`` (times ``jitter_t`` when ``jitter`` yields one gain-factor array per tick)
    to the accumulators ``acc``, writes ``acc >= threshold`` to ``out[t]`` (``bool (n, pixels)``),
    subtracts the threshold where fired, then adds ``inc_step`` to ``inc`` (linear interpolation).
    ``saturating=False`` skips the clamp that is only needed when an increment can reach the
    threshold. The state is all in the arguments: splitting ticks over calls gives the same
    spikes. Returns ``out``.
    """
    v = np.float32(threshold)
    below = np.nextafter(v, np.float32(0))
    tmp = np.empty_like(acc)
    jit = iter(jitter) if jitter is not None else None
    for t in range(out.shape[0]):
        if jit is not None:
            np.multiply(inc, next(jit), out=tmp)
            acc += tmp
        else:
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
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hashed_uniform(key: int, pixel: np.ndarray, event: np.ndarray, salt: int = 0) -> np.ndarray:
    """Uniform samples in (0, 1) that depend only on ``(key, pixel, event, salt)`` (splitmix64)."""
    with np.errstate(over="ignore"):
        x = (
            np.asarray(pixel).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            ^ np.asarray(event).astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)
            ^ np.uint64((key ^ (salt * 0xA24BAED4963EE407)) & 0xFFFFFFFFFFFFFFFF)
        )
        x = _splitmix64(x)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def hashed_normal(key: int, pixel: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Standard normal samples that depend only on ``(key, pixel, event)`` (Box-Muller)."""
    u1 = hashed_uniform(key, pixel, event, 1)
    u2 = hashed_uniform(key, pixel, event, 2)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


# ---------------------------------------------------------------------------------------------
# The stateful simulator
# ---------------------------------------------------------------------------------------------


class SpikeSimulator:
    """Integrate-and-fire state for one ``geometry``: accumulators, noise state and the tick count.

    ``SpikeSimulator(geometry, params=SimParams(), noise=None | NoiseParams | "low" | ..., seed=0)``.
    ``simulate(greys)`` runs one tick per grey plane; ``ramp(f0, f1, n)`` runs ``n`` ticks
    interpolating from ``f0`` (first tick) towards ``f1`` (``f1=None`` holds ``f0``). Both return
    upright ``bool (n, H, W)`` planes, or packed camera-order planes with ``packed=True``.
    ``tick`` and ``spike_count`` count what has been produced; ``mean_rate`` is their ratio per pixel.
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
        v = np.float32(params.threshold)
        seeds = np.random.SeedSequence(self.seed).spawn(5)
        acc = np.random.default_rng(seeds[0]).random(n, dtype=np.float32) * v
        self.acc = np.minimum(acc, np.nextafter(v, np.float32(0)))
        gain = np.full(n, params.gain, dtype=np.float32)
        if self.noise.gain_fpn:
            fpn = np.random.default_rng(seeds[1]).standard_normal(n).astype(np.float32)
            gain *= np.maximum(np.float32(1) + np.float32(self.noise.gain_fpn) * fpn, np.float32(0))
        self.gain = gain
        draw = np.random.default_rng(seeds[2]).random(n)
        self.dead_idx = np.flatnonzero(draw < self.noise.dead_pixels)
        self.hot_idx = np.flatnonzero(
            (draw >= self.noise.dead_pixels) & (draw < self.noise.dead_pixels + self.noise.hot_pixels)
        )
        self._jitter_rng = np.random.default_rng(seeds[3])
        self._jitter_bank = None
        if self.noise.gain_jitter:
            bank = np.random.default_rng(seeds[4]).standard_normal(_JITTER_BANK_SIZE + n) * self.noise.gain_jitter
            self._jitter_bank = np.maximum(1.0 + bank, 0.0).astype(np.float32)  # per-tick gain factors
            self._jitter_max = float(self._jitter_bank.max())
        self._spurious_key = int(np.random.SeedSequence(self.seed).generate_state(1, np.uint64)[0])
        if self.noise.spurious_rate:
            pixels = np.arange(n, dtype=np.int64)
            self._spurious_events = np.zeros(n, dtype=np.int64)
            first_gap = self._spurious_gaps(pixels, self._spurious_events)
            # Start each pixel part-way through its first gap, so the process is stationary from tick 0.
            phase = hashed_uniform(self._spurious_key, pixels, self._spurious_events, 3)
            self._next_spurious = (phase * first_gap).astype(np.int64)
            self._spurious_events += 1

    # -- noise helpers ----------------------------------------------------------------------
    def _spurious_gaps(self, pixels: np.ndarray, events: np.ndarray) -> np.ndarray:
        mean = 1.0 / self.noise.spurious_rate
        gaps = mean + self.noise.spurious_gap_cv * mean * hashed_normal(self._spurious_key, pixels, events)
        return np.maximum(np.rint(gaps), 1).astype(np.int64)

    def _jitter(self, n_ticks: int) -> Iterator[np.ndarray]:
        n = self.geometry.pixels
        bank = self._jitter_bank
        for _ in range(n_ticks):  # one draw per tick, so chunking does not change the stream
            offset = int(self._jitter_rng.integers(0, _JITTER_BANK_SIZE))
            yield bank[offset : offset + n]

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
    def _camera_grey(self, grey: np.ndarray) -> np.ndarray:
        """An upright grey frame as a flat float32 array in camera order (rows bottom-up), clipped."""
        grey = np.asarray(grey, dtype=np.float32)
        if grey.shape != self.geometry.shape:
            raise ValueError(f"grey frame has shape {grey.shape}, expected {self.geometry.shape} ({self.geometry})")
        return np.clip(grey[::-1], 0, 1).reshape(-1)

    def increments(self, f0: np.ndarray, f1: np.ndarray | None, n_ticks: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(inc, inc_step)`` for ``n_ticks`` ticks going from upright ``f0`` towards ``f1`` (camera order)."""
        g0 = self._camera_grey(f0)
        inc = g0 * self.gain
        if f1 is None:
            return inc, None
        return inc, (self._camera_grey(f1) - g0) * (self.gain / np.float32(n_ticks))

    def run(self, inc: np.ndarray, inc_step: np.ndarray | None, n_ticks: int, *, packed: bool = False) -> np.ndarray:
        """``n_ticks`` ticks with the camera-order increments from ``increments`` (``inc`` advances in place)."""
        n = self.geometry.pixels
        out = np.zeros((n_ticks, n), dtype=bool)
        if n_ticks:
            peak = float(inc.max(initial=0.0))
            if inc_step is not None:
                peak = max(peak, float((inc + inc_step * np.float32(n_ticks)).max(initial=0.0)))
            if self._jitter_bank is not None:
                peak *= self._jitter_max
            saturating = peak >= self.params.threshold * 0.999
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
        if packed:  # already in camera order: pack without the flip (same bytes as pack_planes(upright))
            return np.packbits(out, axis=1, bitorder="little")
        return np.ascontiguousarray(out.reshape(n_ticks, *self.geometry.shape)[:, ::-1])

    def ramp(self, f0: np.ndarray, f1: np.ndarray | None, n_ticks: int, *, packed: bool = False) -> np.ndarray:
        """``n_ticks`` ticks interpolating linearly from ``f0`` (first tick) towards ``f1`` (reached at tick n)."""
        if n_ticks < 0:
            raise ValueError(f"n_ticks must be >= 0, got {n_ticks}")
        inc, inc_step = self.increments(f0, f1, max(n_ticks, 1))
        return self.run(inc, inc_step, n_ticks, packed=packed)

    def simulate(self, greys: np.ndarray, *, packed: bool = False) -> np.ndarray:
        """One tick per upright grey plane of ``greys (n, H, W)`` (values clipped to [0, 1])."""
        greys = np.asarray(greys, dtype=np.float32)
        if greys.ndim != 3:
            raise ValueError(f"greys must have shape (n, H, W), got {greys.shape}")
        parts = [self.ramp(g, None, 1, packed=packed) for g in greys]
        return np.concatenate(parts) if parts else self.ramp(np.zeros(self.geometry.shape), None, 0, packed=packed)

    @property
    def mean_rate(self) -> float:
        """Spikes per pixel per tick so far."""
        return self.spike_count / (self.tick * self.geometry.pixels) if self.tick else 0.0


class FrameStream:
    """Pulls grey frames from an iterable and produces planes on demand, ``planes_per_frame`` per frame.

    ``FrameStream(simulator, frames, planes_per_frame=1)``; ``read(n, packed=True)`` returns up to
    ``n`` planes (fewer only when the frames run out; zero planes at the end). It holds two frames
    at a time, so memory stays bounded for any input length. Frames are ``(H, W)`` greys in [0, 1]
    (clipped); a frame of another shape raises ``ValueError``.
    """

    def __init__(self, simulator: SpikeSimulator, frames: Iterable[np.ndarray], planes_per_frame: int = 1) -> None:
        if isinstance(planes_per_frame, bool) or int(planes_per_frame) != planes_per_frame or planes_per_frame <= 0:
            raise ValueError(f"planes_per_frame must be a positive integer, got {planes_per_frame!r}")
        self.simulator = simulator
        self.planes_per_frame = int(planes_per_frame)
        self._frames = iter(frames)
        self._current = self._next_frame()
        self._following = self._next_frame() if self._current is not None else None
        self._incs = self._interval_increments()
        self._k = 0  # ticks already produced in the current frame interval
        self.planes_read = 0
        self.frames_read = 0

    def _next_frame(self) -> np.ndarray | None:
        try:
            return next(self._frames)
        except StopIteration:
            return None

    def _interval_increments(self):
        if self._current is None:
            return None
        return self.simulator.increments(self._current, self._following, self.planes_per_frame)

    @property
    def exhausted(self) -> bool:
        return self._current is None

    def read(self, n_planes: int, *, packed: bool = True) -> np.ndarray:
        parts = []
        remaining = n_planes
        npf = self.planes_per_frame
        while remaining > 0 and self._current is not None:
            take = min(remaining, npf - self._k)
            inc, inc_step = self._incs
            parts.append(self.simulator.run(inc, inc_step, take, packed=packed))
            self._k += take
            remaining -= take
            if self._k == npf:
                self._k = 0
                self.frames_read += 1
                self._current = self._following
                self._following = self._next_frame() if self._current is not None else None
                self._incs = self._interval_increments()
        if not parts:
            return self.simulator.run(np.zeros(self.simulator.geometry.pixels, np.float32), None, 0, packed=packed)
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
