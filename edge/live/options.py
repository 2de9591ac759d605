"""Settings as data: the ``Option`` declaration, and the checked conversions every setting goes through.

An ``Option`` declares one setting of the daemon (``edge.live.config``) or of a source
(``edge.live.sources``): its ``name`` (the dataclass field it fills; the command line spells it
``--name-with-dashes``, a TOML ``--config`` file ``name-with-dashes`` or ``name_with_dashes``), how
the command line presents its value (``type``, ``choices``), its default, its help text, and
``parse``, the one function that checks and converts a value of it. Every way a value enters (the
command line and a TOML file through ``edge.cli.run``'s click types, the control socket's ``set``
through ``Daemon.apply_settings``) calls that same ``parse``, once; code after it trusts the type.

Every ``parse`` raises ``ValueError`` quoting the bad value. The helpers below (``to_int``,
``to_float``, ``to_text``, ``to_member``) are what the parse functions are made of; they accept a
value of the target type or its text (the command line's form, also accepted from TOML and the
control socket).
"""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

E = TypeVar("E", bound=enum.Enum)

#: The types an ``Option`` can present on the command line. ``Path`` is a file name (the value stays
#: a ``str``); ``str`` with ``choices`` is one of a closed set; ``bool`` is a flag (``parse`` None).
OPTION_TYPES = (int, float, str, Path, bool)


@dataclass(frozen=True)
class Option:
    """One setting: name, command-line presentation, default, help, and its one parse function."""

    name: str
    type: type
    parse: Callable[[Any], Any] | None
    help: str | None = None
    default: Any = None  # in the command line's form (a choice's spelling); ``parse`` converts it; flags: False
    show_default: bool = False
    choices: tuple[str, ...] = ()  # the spellings a closed set is given in
    flag_value: Any = None  # the value when given bare: ``--simulate`` means ``--simulate shapes``
    value_name: str | None = None  # how messages name the value: ``--replay FILE``

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise TypeError(f"option {self.name}: type must be one of {OPTION_TYPES}, got {self.type!r}")
        if (self.parse is None) != (self.type is bool):
            raise TypeError(f"option {self.name}: flags (bool) have no parse function, every other option has one")
        if self.type is bool and self.default is None:
            object.__setattr__(self, "default", False)  # a flag left out is off

    @property
    def flag(self) -> str:
        """The command-line spelling: ``ring_planes`` -> ``--ring-planes``."""
        return "--" + self.name.replace("_", "-")

    @property
    def usage(self) -> str:
        """How a message shows the option with its value: ``--replay FILE``, ``--simulate [SCENE]``."""
        if self.value_name is None:
            return self.flag
        return f"{self.flag} [{self.value_name}]" if self.flag_value is not None else f"{self.flag} {self.value_name}"

    def default_value(self) -> Any:
        """The default as ``parse`` returns it (what a setting left out is)."""
        if self.default is None or self.parse is None:
            return self.default
        return self.parse(self.default)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def to_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """An integer (or its decimal text) of at least ``minimum``."""
    if isinstance(value, str):
        try:
            number = int(value.strip(), 10)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
    elif _is_integer(value):
        number = int(value)
    else:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return number


def to_float(value: Any, name: str, *, positive: bool = False) -> float:
    """A finite number (or its text); ``positive``: greater than 0."""
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and not number > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def to_text(value: Any, name: str) -> str:
    """A non-empty string (a file name, an address)."""
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def spellings(members: Iterable[E], spell: Callable[[E], str] = lambda member: member.value) -> tuple[str, ...]:
    """The command-line spellings of ``members`` (click choices)."""
    return tuple(spell(member) for member in members)


def to_member(value: Any, name: str, members: Iterable[E], spell: Callable[[E], str] = lambda member: member.value) -> E:
    """One of ``members``: the member itself or its spelling (``spell``; by default the enum value)."""
    members = tuple(members)
    for member in members:
        if value is member or (isinstance(value, str) and value == spell(member)):
            return member
    raise ValueError(f"{name} must be one of {', '.join(spellings(members, spell))}, got {value!r}")
