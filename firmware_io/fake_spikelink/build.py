"""Compile the fake SpikeLink SDK into a cached shared library, and drive its fault controls.

``build_fake_spikelink(cache_dir=None, cc=None) -> Path`` compiles ``fake_spikelink.c`` (with
``spikelink.h``) into ``<cache>/fake_spikelink-<hash>.so``, the hash covering both sources, the
compiler and the flags, so an edited source rebuilds and an unchanged one is reused. The cache is
``cache_dir``, else ``$SPIKE_EDGE_CACHE/fake_spikelink``, else ``$XDG_CACHE_HOME/spike-edge/
fake_spikelink`` (``~/.cache/...``). The library is written under a temporary name and renamed
into place, so concurrent builds (parallel tests) never load a half-written file.

The compiler is ``cc`` if given, else ``$CC``, else the first of ``cc``, ``gcc``, ``clang`` on
``PATH``; none -> ``CompilerNotFoundError`` (tests skip on it).

``FakeControl(library_path)`` wraps ``fake_control(cmd, arg)``: fault injection (``vanish_after``,
``comeback_after_ms``, ``refuse_open``, ``drop_every``, ``stall_after``, ``reset``) and counters
(``outstanding`` frames not yet released, ``delivered``, ``released``, ...). The fake keeps one
global device per process, shared with the ``CameraSource`` that loaded the same path.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent
CFLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-shared", "-fPIC", "-pthread")


class CompilerNotFoundError(RuntimeError):
    """No C compiler to build the fake SDK with."""


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


def find_c_compiler(cc: str | None = None) -> list[str]:
    """The compiler command (``cc`` argument, ``$CC``, or ``cc``/``gcc``/``clang`` on PATH)."""
    candidates = [cc] if cc else ([os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"])
    for candidate in candidates:
        argv = shlex.split(candidate)
        if argv and shutil.which(argv[0]):
            return argv
    raise CompilerNotFoundError(
        f"no C compiler found (tried {', '.join(candidates)}); install gcc or clang, or set CC, "
        f"to build the fake SpikeLink SDK"
    )


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("SPIKE_EDGE_CACHE"):
        return Path(os.environ["SPIKE_EDGE_CACHE"]) / "fake_spikelink"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spike-edge" / "fake_spikelink"


def build_fake_spikelink(cache_dir: str | os.PathLike | None = None, cc: str | None = None) -> Path:
    """Compile (or reuse) the fake SDK; returns the path of the shared library."""
    compiler = find_c_compiler(cc)
    digest = hashlib.sha256()
    for part in (source_path().read_bytes(), header_path().read_bytes(), " ".join(compiler).encode(), " ".join(CFLAGS).encode()):
        digest.update(part)
        digest.update(b"\0")
    folder = _cache_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"fake_spikelink-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(prefix=".fake_spikelink.", suffix=".so", dir=folder)
    os.close(fd)
    argv = [*compiler, *CFLAGS, "-I", str(_HERE), "-o", tmp, str(source_path())]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"building the fake SpikeLink SDK failed ({shlex.join(argv)}):\n{result.stderr}")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


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
