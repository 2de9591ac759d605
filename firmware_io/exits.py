"""How every command of the project ends: one exit-code enum and one way to fail with it.

``spike-edge``, ``spike-host`` and ``spike-train`` all exit with an ``ExitCode``: a command that
cannot do its job raises ``CommandFailed(code, message)``; the group (``ExitCodeGroup``) prints
``error: message`` to stderr and exits with that code. click's own usage errors exit with
``BAD_INPUT`` (2), which click already uses for them. Scripts and service managers can rely on
these numbers.

Design: the enum lives here, in the bottom layer, because all three command lines (and the
training code, which may import nothing of the live daemon) share it.
"""

from __future__ import annotations

import enum
import sys
from typing import Any, NoReturn

import click


class ExitCode(enum.IntEnum):
    OK = 0
    INTERNAL = 1  # an unexpected error (a bug): the traceback is printed
    BAD_INPUT = 2  # bad arguments, options or input files
    SOURCE_FAILED = 3  # the spike source cannot be opened or failed (camera library missing, ...)
    BACKEND_UNAVAILABLE = 4  # the requested backend or device cannot run here
    BIND_FAILED = 5  # an address cannot be bound
    NO_STREAM = 6  # nothing came back from a daemon: no frames, no heartbeats, no control reply
    INCOMPLETE = 7  # the work stopped early: a stream that went silent or failed mid-recording
    CHECK_FAILED = 8  # a check ran to the end and failed (``bench soak``: growth beyond its tolerance)


class CommandFailed(Exception):
    """A command that cannot do its job; the message says why, the code says what kind of failure."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = ExitCode(code)


def fail(message: str, code: ExitCode = ExitCode.BAD_INPUT) -> NoReturn:
    raise CommandFailed(code, message)


class ExitCodeGroup(click.Group):
    """A click group whose commands end through ``ExitCode``: ``CommandFailed`` becomes ``error: ...``
    on stderr and its code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommandFailed as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(int(exc.code))
