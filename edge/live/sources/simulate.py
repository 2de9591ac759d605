"""The simulated camera (``--simulate [SCENE]``): a built-in scene through ``firmware_io.sim_source``, live.

It is paced against an absolute schedule at ``--rate-hz`` and never skips planes, so the simulated
stream is the same on every machine. It makes roughly 5-10k planes/s at 250x400 on one core, so a
simulated 40 kHz camera could not keep up: ``--rate-hz`` defaults to ``SIMULATE_DEFAULT_RATE_HZ``
(2 kHz, about 2.5x headroom at 250x400 on an idle core). At a rate it cannot sustain it runs behind
its schedule (``schedule``), and ``stats`` shows it (``source_late_blocks``, ``source_behind_ms``,
plus a ``behind`` warning in the log). The pipeline after it is live as usual: ring ``overwrite``
and worker ``latest``, with their own drop counters. ``--planes`` ends the stream (default endless).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edge.live.options import Option, spellings, to_int, to_member
from edge.live.sources.base import BLOCK_PLANES, DEFAULT_BLOCK_PLANES, HEIGHT, RATE_HZ, WIDTH, Schedule, SourceConfig, SourceUnavailable
from firmware_io.contract import DEFAULT_GEOMETRY, Geometry, SpikeSource
from firmware_io.scenes import SceneName

SIMULATE_DEFAULT_RATE_HZ = 2_000.0  # the simulator makes ~5k planes/s at 250x400 on an idle core
DEFAULT_SCENE = SceneName.SHAPES


def parse_scene(value: Any) -> SceneName:
    """A built-in scene (``SceneName``)."""
    return to_member(value, "scene", SceneName)


def parse_planes(value: Any) -> int:
    """The simulated stream's length in planes: an integer >= 0."""
    return to_int(value, "planes", minimum=0)


PLANES = Option("planes", int, parse_planes, help="Simulated stream length in planes (default endless).")


@dataclass(frozen=True)
class SimulateConfig(SourceConfig):
    """A simulated camera on a built-in scene (see the module docstring)."""

    SELECTOR: ClassVar[Option] = Option(
        "simulate", str, parse_scene, choices=spellings(SceneName), flag_value=DEFAULT_SCENE.value, value_name="SCENE",
        help=f"Simulated camera on a built-in scene (default {DEFAULT_SCENE.value}); its --rate-hz defaults to "
             f"{SIMULATE_DEFAULT_RATE_HZ:.0f} Hz, which it sustains at 250x400 on one core. At a rate it cannot "
             "sustain it skips nothing and runs behind (source_late_blocks, source_behind_ms in stats).")
    OPTIONS: ClassVar[tuple[Option, ...]] = (RATE_HZ, PLANES, HEIGHT, WIDTH, BLOCK_PLANES)
    NOTES: ClassVar[dict[str, str]] = {
        "rate_hz": f"simulate {SIMULATE_DEFAULT_RATE_HZ:.0f} (default)",
        "height": f"simulate default {DEFAULT_GEOMETRY.height}",
        "width": f"simulate default {DEFAULT_GEOMETRY.width}",
    }

    scene: SceneName = DEFAULT_SCENE
    block_planes: int = DEFAULT_BLOCK_PLANES
    rate_hz: float = SIMULATE_DEFAULT_RATE_HZ
    planes: int | None = None  # None: endless
    height: int = DEFAULT_GEOMETRY.height
    width: int = DEFAULT_GEOMETRY.width
    seed: int = 0

    @classmethod
    def from_options(cls, selected: SceneName, *, rate_hz: float | None, planes: int | None, height: int | None,
                     width: int | None, block_planes: int) -> SimulateConfig:
        return cls(scene=selected, block_planes=block_planes,
                   rate_hz=SIMULATE_DEFAULT_RATE_HZ if rate_hz is None else rate_hz, planes=planes,
                   height=DEFAULT_GEOMETRY.height if height is None else height,
                   width=DEFAULT_GEOMETRY.width if width is None else width)

    @property
    def live(self) -> bool:
        return True

    def label(self) -> str:
        return self.scene.value

    def geometry(self) -> Geometry:
        return Geometry(self.height, self.width)

    def finite_planes(self) -> int | None:
        return self.planes

    def open(self) -> SpikeSource:
        try:
            from firmware_io.sim_source import source_from_scene
        except ImportError as exc:
            raise SourceUnavailable(f"the simulated camera is not available: {exc}") from exc
        # the simulator's own ``speed`` is scene motion, not playback speed: the camera clock is rate_hz
        return source_from_scene(self.scene, self.geometry(), seed=self.seed, block_planes=self.block_planes,
                                 n_planes=self.planes, realtime=True, rate_hz=self.rate_hz)

    def schedule(self) -> Schedule:
        return Schedule(self.rate_hz, "the simulated camera")
