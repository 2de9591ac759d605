"""Compile the fake SpikeLink SDK into a cached shared library, and drive its fault controls.

``build_fake_spikelink(cache_dir=None, cc=None) -> Path`` compiles ``fake_spikelink.c`` (with
``spikelink.h``) through ``firmware_io.cbuild`` (cached by source hash; ``CompilerNotFoundError``
when there is no C compiler, on which tests skip).

``FakeControl(library_path)`` wraps ``fake_control(cmd, arg)``: fault injection (``vanish_after``,
``comeback_after_ms``, ``refuse_open``, ``drop_every``, ``stall_after``, ``reset``) and counters
(``outstanding`` frames not yet released, ``delivered``, ``released``, ...). The fake keeps one
global device per process, shared with the ``CameraSource`` that loaded the same path.
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
    Q_OUTSTANDING = 100
    Q_DELIVERED = 101
    Q_RELEASED = 102
    Q_POOL_EMPTY = 103
    Q_DROPPED = 104
    Q_STARTS = 105
    Q_OPEN_ATTEMPTS = 106
    Q_SIZEOF_FRAME = 110
    Q_SIZEOF_PARAMS = 111
    Q_OFFSET_FRAME_SIZE = 112
    Q_OFFSET_FRAME_PTS = 113
    Q_OFFSET_FRAME_TB = 114
    Q_OFFSET_PARAMS_RATE = 115
    Q_OFFSET_PARAMS_PATH = 116


def source_path() -> Path:
    return _HERE / "fake_spikelink.c"


def header_path() -> Path:
    """The C header defining the SDK interface as modelled here (``spikelink.h``)."""
    return _HERE / "spikelink.h"


def build_fake_spikelink(cache_dir: str | os.PathLike | None = None, cc: str | None = None) -> Path:
    """Compile (or reuse) the fake SDK; returns the path of the shared library."""
    return build_shared("fake_spikelink", [source_path()], CFLAGS, include=[header_path()], cache=cache_dir, cc=cc)


class FakeControl:
    """Fault injection and counters of a loaded fake SDK (``FakeControl(library_path)``)."""

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
        return self.command(FakeCommand.Q_POOL_EMPTY)

    @property
    def starts(self) -> int:
        return self.command(FakeCommand.Q_STARTS)

    @property
    def open_attempts(self) -> int:
        return self.command(FakeCommand.Q_OPEN_ATTEMPTS)
