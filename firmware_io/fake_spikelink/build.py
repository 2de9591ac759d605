"""Compile the fake SpikeLink library into a cached shared library, and drive its fault controls.

``build_fake_spikelink(cache_dir=None, cc=None) -> Path`` compiles ``fake_spikelink.c`` (with
``spikelinkapi.h``) through ``firmware_io.cbuild`` (cached by source hash; ``CompilerNotFoundError``
when there is no C compiler, on which tests skip). The library exports the vendor's symbols
(``firmware_io.spikelink.SYMBOLS``) and ``fake_control``.

``FakeControl(library_path)`` wraps ``fake_control(cmd, arg)``: fault injection (``vanish_after``,
``comeback_after_ms``, ``refuse_open``, ``drop_every``, ``stall_after``), emulation settings
(``header_cusum``: behave like a build of the older header, without ``cusum``; ``rate_hz``: the fake
PCIe device's plane rate), ``reset``, and counters (``outstanding`` frames not yet released,
``delivered``, ``released``, ``pool_empty``, ...). The fake keeps one device per process, shared with
the ``CameraSource`` that loaded the same path. ``FakeState`` and ``FakeError`` name the fake's own
``GetState`` values and return codes (the vendor's are not published).
"""

from __future__ import annotations

import ctypes
import enum
import os
from pathlib import Path

from firmware_io.cbuild import build_shared

_HERE = Path(__file__).resolve().parent
CFLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-pthread")


class FakeCommand(enum.IntEnum):
    """``fake_control`` command numbers (must match ``fake_spikelink.c``)."""

    RESET = 0
    VANISH_AFTER_BLOCKS = 1
    COMEBACK_AFTER_MS = 2
    REFUSE_OPEN = 3
    DROP_EVERY = 4
    STALL_AFTER_BLOCKS = 5
    HEADER_CUSUM = 6
    RATE_HZ = 7
    Q_OUTSTANDING = 100
    Q_DELIVERED = 101
    Q_RELEASED = 102
    Q_POOL_EMPTY = 103
    Q_DROPPED = 104
    Q_STARTS = 105
    Q_OPEN_ATTEMPTS = 106
    Q_CREATED = 107
    Q_FINISHED = 108
    Q_BAD_RELEASES = 109


class FakeState(enum.IntEnum):
    """The fake's ``GetState`` values (its own: the vendor's are not published)."""

    CREATED = 0
    INITIALIZED = 1
    OPENED = 2
    RUNNING = 3
    STOPPED = 4
    END_OF_FILE = 5
    DISCONNECTED = -1


class FakeError(enum.IntEnum):
    """The fake's non-zero return codes (its own: the vendor's are not published)."""

    INVALID_ARG = -1
    NO_DEVICE = -2
    IO = -3
    STATE = -4
    NO_MEMORY = -5
    UNSUPPORTED_LINK = -6


def source_path() -> Path:
    return _HERE / "fake_spikelink.c"


def header_path() -> Path:
    """The C rendering of the vendor ABI (``spikelinkapi.h``)."""
    return _HERE / "spikelinkapi.h"


def build_fake_spikelink(cache_dir: str | os.PathLike | None = None, cc: str | None = None) -> Path:
    """Compile (or reuse) the fake library; returns the path of the shared library."""
    return build_shared("fake_spikelink", [source_path()], CFLAGS, include=[header_path()], cache=cache_dir, cc=cc)


class FakeControl:
    """Fault injection, settings and counters of a loaded fake library (``FakeControl(library_path)``)."""

    def __init__(self, library_path: str | os.PathLike) -> None:
        self.library_path = Path(library_path)
        self._lib = ctypes.CDLL(str(self.library_path))
        self._fn = self._lib.fake_control
        self._fn.argtypes = [ctypes.c_int32, ctypes.c_int64]
        self._fn.restype = ctypes.c_int64

    def command(self, cmd: FakeCommand, arg: int = 0) -> int:
        return int(self._fn(int(cmd), int(arg)))

    def reset(self) -> None:
        self.command(FakeCommand.RESET)

    def vanish_after(self, blocks: int) -> None:
        self.command(FakeCommand.VANISH_AFTER_BLOCKS, blocks)

    def comeback_after_ms(self, ms: int) -> None:
        self.command(FakeCommand.COMEBACK_AFTER_MS, ms)

    def refuse_open(self, times: int) -> None:
        self.command(FakeCommand.REFUSE_OPEN, times)

    def drop_every(self, n: int) -> None:
        self.command(FakeCommand.DROP_EVERY, n)

    def stall_after(self, blocks: int) -> None:
        self.command(FakeCommand.STALL_AFTER_BLOCKS, blocks)

    def header_cusum(self, planes: int) -> None:
        """Behave like a library built from the older header (no ``cusum``), delivering ``planes`` per frame;
        0: the wrapper's layout again."""
        self.command(FakeCommand.HEADER_CUSUM, planes)

    def rate_hz(self, rate: int) -> None:
        """The fake PCIe device's plane rate (0: the mode's)."""
        self.command(FakeCommand.RATE_HZ, rate)

    @property
    def outstanding(self) -> int:
        """Frames delivered to the callback and not yet released."""
        return self.command(FakeCommand.Q_OUTSTANDING)

    @property
    def delivered(self) -> int:
        return self.command(FakeCommand.Q_DELIVERED)

    @property
    def released(self) -> int:
        return self.command(FakeCommand.Q_RELEASED)

    @property
    def dropped(self) -> int:
        return self.command(FakeCommand.Q_DROPPED)

    @property
    def pool_empty(self) -> int:
        """Frames lost because every pool frame was out (not released)."""
        return self.command(FakeCommand.Q_POOL_EMPTY)

    @property
    def starts(self) -> int:
        return self.command(FakeCommand.Q_STARTS)

    @property
    def open_attempts(self) -> int:
        return self.command(FakeCommand.Q_OPEN_ATTEMPTS)

    @property
    def created(self) -> int:
        return self.command(FakeCommand.Q_CREATED)

    @property
    def finished(self) -> int:
        """Input objects released with ``Fini``."""
        return self.command(FakeCommand.Q_FINISHED)

    @property
    def bad_releases(self) -> int:
        return self.command(FakeCommand.Q_BAD_RELEASES)
