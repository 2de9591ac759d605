"""The replay source (``--replay FILE``): a recording (``.dat`` / ``.npz`` / folder) read by ``firmware_io.replay.ReplaySource``.

A ``.dat`` has no header: ``--height``/``--width`` (default 250x400) give its geometry and
``--with-head`` drops 16 extra head columns; an ``.npz`` knows its own. ``--layout`` says how a
``.dat`` lays out its planes (``firmware_io.layouts``); left out, the 1000x1000 PCIe rows are
detected from their tags unless a geometry other than 1000x1000 is given. ``--rate-hz`` (default
40 kHz) is the recorded rate. A recording folder (``spike-edge run --record``) states its geometry
and rate in its sidecars, which are the defaults then; its gaps reach the daemon as source gaps.
Without ``--realtime`` the replay is deterministic: it is read as fast
as the pipeline consumes it and every window is processed (not live). With ``--realtime`` it is
paced at ``--rate-hz`` x ``--speed`` like a camera (live). ``--loop`` starts over at the end, plane
indices increasing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edge.live.options import Option, spellings, to_float, to_member, to_text
from edge.live.sources.base import BLOCK_PLANES, DEFAULT_BLOCK_PLANES, HEIGHT, LOOP, RATE_HZ, WIDTH, SourceConfig
from firmware_io.contract import DEFAULT_GEOMETRY, DEFAULT_RATE_HZ, Geometry, SpikeSource
from firmware_io.layouts import Layout

DEFAULT_SPEED = 1.0


def parse_path(value: Any) -> str:
    """The recording's file name."""
    return to_text(value, "replay")


def parse_speed(value: Any) -> float:
    """Real-time replay speed factor: a positive number."""
    return to_float(value, "speed", positive=True)


def parse_layout(value: Any) -> Layout:
    return to_member(value, "layout", Layout)


REALTIME = Option("realtime", bool, None, help="Pace the replay at --rate-hz x --speed (live mode).")
SPEED = Option("speed", float, parse_speed, default=DEFAULT_SPEED, show_default=True,
               help="Real-time replay speed factor.")
WITH_HEAD = Option("with_head", bool, None, help="The .dat has 16 extra head columns.")
LAYOUT = Option("layout", str, parse_layout, choices=spellings(Layout),
                help="Plane layout of the .dat (default: detected; pcie1k = the 1000x1000 PCIe rows).")


@dataclass(frozen=True)
class ReplayConfig(SourceConfig):
    """A recording to replay (see the module docstring)."""

    SELECTOR: ClassVar[Option] = Option("replay", Path, parse_path, value_name="FILE",
                                        help="Replay a recording (.dat / .npz / recording folder).")
    OPTIONS: ClassVar[tuple[Option, ...]] = (REALTIME, RATE_HZ, SPEED, LOOP, HEIGHT, WIDTH, WITH_HEAD, LAYOUT,
                                             BLOCK_PLANES)
    NOTES: ClassVar[dict[str, str]] = {
        "rate_hz": f"replay {DEFAULT_RATE_HZ:.0f} (default; a recording folder: its recorded rate)",
        "height": f".dat default {DEFAULT_GEOMETRY.height} (a recording folder: its own)",
        "width": f".dat default {DEFAULT_GEOMETRY.width} (a recording folder: its own)",
        "loop": "the replay",
    }

    path: str
    block_planes: int = DEFAULT_BLOCK_PLANES
    realtime: bool = False
    rate_hz: float = DEFAULT_RATE_HZ
    speed: float = DEFAULT_SPEED
    loop: bool = False
    with_head: bool = False
    height: int = DEFAULT_GEOMETRY.height
    width: int = DEFAULT_GEOMETRY.width
    layout: Layout | None = None  # None: detected

    @classmethod
    def from_options(cls, selected: str, *, realtime: bool, rate_hz: float | None, speed: float, loop: bool,
                     height: int | None, width: int | None, with_head: bool, layout: Layout | None,
                     block_planes: int) -> ReplayConfig:
        from firmware_io.recording import recording_defaults

        geometry, recorded_rate_hz = recording_defaults(selected)  # a recording folder's own; else the .dat defaults
        geometry = geometry or DEFAULT_GEOMETRY
        return cls(path=selected, block_planes=block_planes, realtime=realtime,
                   rate_hz=(recorded_rate_hz or DEFAULT_RATE_HZ) if rate_hz is None else rate_hz, speed=speed,
                   loop=loop, with_head=with_head, height=geometry.height if height is None else height,
                   width=geometry.width if width is None else width, layout=layout)

    @property
    def live(self) -> bool:
        return self.realtime

    def label(self) -> str:
        return str(self.path)

    def _requested_geometry(self) -> Geometry | None:
        """The geometry to read a ``.dat`` with; None for an ``.npz`` (it carries its own), and for the default
        geometry unless ``--layout dat`` (the file's layout decides: PCIe rows are 1000x1000)."""
        if str(self.path).lower().endswith(".npz"):
            return None
        geometry = Geometry(self.height, self.width)
        return None if geometry == DEFAULT_GEOMETRY and self.layout is not Layout.DAT else geometry

    def geometry(self) -> Geometry:
        """The recording's geometry (reads only the file's size or header)."""
        from firmware_io.recording import open_recording

        with open_recording(str(self.path), self._requested_geometry(), with_head=self.with_head,
                            layout=self.layout) as rec:
            if rec.n_planes <= 0:
                raise ValueError(f"{self.path} holds no planes")
            return rec.geometry

    def finite_planes(self) -> int | None:
        if self.loop:
            return None
        from firmware_io.recording import open_recording

        with open_recording(str(self.path), self._requested_geometry(), with_head=self.with_head) as rec:
            return rec.n_planes

    def open(self) -> SpikeSource:
        from firmware_io.replay import ReplaySource

        return ReplaySource(self.path, self._requested_geometry(), block_planes=self.block_planes,
                            realtime=self.realtime, rate_hz=self.rate_hz, speed=self.speed, loop=self.loop,
                            with_head=self.with_head, layout=self.layout)
