"""What every source of the live daemon is: the ``SourceConfig`` interface, the options several sources share,
and the schedule a paced source reports running behind against.

A source is one frozen dataclass (one module of ``edge.live.sources``) holding everything needed to
open it in the capture process (plain, picklable values). It declares its options as data
(``SELECTOR``, the option that chooses it, and ``OPTIONS``; ``edge.cli.run`` turns them into click
options), builds itself from their parsed values (``from_options``: where combinations are checked),
and answers what the daemon and the capture loop ask of it: ``live``, ``label``, ``preflight``,
``geometry``, ``describe``, ``open``, ``recoverable_errors`` and ``schedule``. Shared code never
asks which kind of source it has.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import asdict
from typing import Any, ClassVar

from edge.live.options import Option, to_float, to_int
from firmware_io.contract import Geometry, SpikeBlock, SpikeSource
from firmware_io.replay import DEFAULT_BLOCK_PLANES


class SourceUnavailable(RuntimeError):
    """The source cannot be opened here (vendor library missing, simulator not installed)."""


def parse_rate_hz(value: Any) -> float:
    """Planes per second: a positive number."""
    return to_float(value, "rate_hz", positive=True)


def parse_height(value: Any) -> int:
    """Plane height in pixels: an integer >= 1."""
    return to_int(value, "height", minimum=1)


def parse_width(value: Any) -> int:
    """Plane width in pixels: an integer >= 1."""
    return to_int(value, "width", minimum=1)


def parse_block_planes(value: Any) -> int:
    """Planes per capture block: an integer >= 1."""
    return to_int(value, "block_planes", minimum=1)


# Options several sources take; each source that takes one adds its own note to the help text (``NOTES``).
RATE_HZ = Option("rate_hz", float, parse_rate_hz, help="Plane rate of the source")
HEIGHT = Option("height", int, parse_height, help="Plane height")
WIDTH = Option("width", int, parse_width, help="Plane width")
LOOP = Option("loop", bool, None, help="Loop the source (plane indices keep increasing)")
BLOCK_PLANES = Option("block_planes", int, parse_block_planes, default=DEFAULT_BLOCK_PLANES, show_default=True,
                      help="Planes per capture block.")


class Schedule:
    """An absolute schedule at ``rate_hz`` that a source keeps without skipping planes: how far behind it runs.

    Plane ``p`` is due at ``t0 + p / rate_hz`` (the source's own plane counter); ``t0`` comes from
    the first block. A block delivered later than its last plane was due is behind by the difference.
    """

    def __init__(self, rate_hz: float, what: str) -> None:
        self.rate_hz = rate_hz
        self.what = what
        self._period_ns = 1e9 / rate_hz
        self._t0_ns: int | None = None

    def behind_ns(self, block: SpikeBlock) -> int:
        due = block.stop_plane * self._period_ns
        if self._t0_ns is None:
            self._t0_ns = block.capture_t_ns - int(due)
        return max(0, block.capture_t_ns - self._t0_ns - int(due))

    def behind_message(self, block: SpikeBlock, behind_ns: int) -> str:
        """What to log when ``block`` came ``behind_ns`` late (call ``behind_ns`` first)."""
        made_hz = block.stop_plane * 1e9 / max(1, block.capture_t_ns - (self._t0_ns or 0))
        return (f"{self.what} is {behind_ns / 1e9:.1f} s behind its {self.rate_hz:.0f} Hz schedule (it makes about "
                f"{made_hz:.0f} planes/s here; no planes are skipped): lower --rate-hz or the geometry")


class SourceConfig(abc.ABC):
    """The interface every source dataclass implements (see the module docstring)."""

    #: The option that chooses this source; its value (a file, a scene, or True) goes to ``from_options``.
    SELECTOR: ClassVar[Option]
    #: The other options this source takes (shared ones included); giving any other source's is a usage error.
    OPTIONS: ClassVar[tuple[Option, ...]]
    #: This source's note in the help text of shared options: option name -> note.
    NOTES: ClassVar[dict[str, str]] = {}
    #: Errors the opened source recovers from by itself (a camera reconnects): the capture loop counts and
    #: reports them and reads on. Otherwise a read error ends the capture as a source failure.
    recoverable_errors: ClassVar[bool] = False
    #: The source opens device nodes (a camera's): a service unit must not hide /dev from it.
    uses_devices: ClassVar[bool] = False

    rate_hz: float

    @classmethod
    @abc.abstractmethod
    def from_options(cls, selected: Any, **options: Any) -> SourceConfig:
        """The source from its selector's value and its ``OPTIONS``' parsed values (``None``: left out).

        Raises ``ValueError`` naming the options for a combination that does not fit (a usage error).
        """

    @property
    @abc.abstractmethod
    def live(self) -> bool:
        """The source runs on its own clock (the daemon's live mode); else it waits for the pipeline."""

    @abc.abstractmethod
    def label(self) -> str:
        """A short description for logs."""

    def preflight(self) -> None:
        """Check, without opening it, that the source can be opened here (``SourceUnavailable`` if not)."""

    @abc.abstractmethod
    def geometry(self) -> Geometry:
        """The plane geometry, without starting the source (``ValueError``/``OSError`` for bad inputs)."""

    def describe(self) -> dict[str, Any]:
        """The source's settings for the control socket's ``describe`` (plain values, None left out)."""
        return {k: v.value if isinstance(v, enum.Enum) else v for k, v in asdict(self).items() if v is not None}

    def finite_planes(self) -> int | None:
        """How many planes the source delivers before it ends, found without starting it; None: it does not end
        by itself (a camera, an endless simulation, a looping replay)."""
        return None

    @abc.abstractmethod
    def open(self) -> SpikeSource:
        """Open the source (in the capture process)."""

    def schedule(self) -> Schedule | None:
        """The schedule the opened source keeps without skipping planes, which the capture loop reports it
        running behind against; None: the source keeps none (or skips to keep it)."""
        return None
