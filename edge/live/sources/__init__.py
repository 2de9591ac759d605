"""The sources of the live daemon, as plug-ins: the ``SourceKind`` enum and the registry kind -> source class.

Each kind is one module holding one frozen dataclass (``base.SourceConfig``): its options, checks,
geometry, preflight, opening and whatever the capture loop needs to know. Adding a source is one
new module and one entry in ``SourceKind`` and ``SOURCES``; nothing else switches on the kind.

What is generic over the registry lives here: choosing the source from the options (exactly one
selector), rejecting options of another source (``--camera-file applies to --camera, not
--simulate``), the help text of options several sources share, and naming a source's kind.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any

from edge.live.options import Option
from edge.live.sources.base import SourceConfig, SourceUnavailable
from edge.live.sources.camera import CameraConfig
from edge.live.sources.replay import ReplayConfig
from edge.live.sources.simulate import SimulateConfig

__all__ = ["SOURCES", "SourceConfig", "SourceKind", "SourceUnavailable", "kind_of", "option_help", "selectors",
           "source_from_options", "source_options"]


class SourceKind(str, enum.Enum):
    REPLAY = "replay"
    CAMERA = "camera"
    SIMULATE = "simulate"


SOURCES: dict[SourceKind, type[SourceConfig]] = {
    SourceKind.REPLAY: ReplayConfig,
    SourceKind.CAMERA: CameraConfig,
    SourceKind.SIMULATE: SimulateConfig,
}

_KINDS = {cls: kind for kind, cls in SOURCES.items()}


def kind_of(source: SourceConfig) -> SourceKind:
    """The kind of a source (for messages and ``describe``)."""
    return _KINDS[type(source)]


def selectors() -> tuple[Option, ...]:
    """The option choosing each source (``--replay FILE``, ``--camera``, ``--simulate [SCENE]``), in registry order."""
    return tuple(cls.SELECTOR for cls in SOURCES.values())


def source_options() -> tuple[Option, ...]:
    """Every other option of every source, each once (options several sources take are one object)."""
    options: dict[str, Option] = {}
    for cls in SOURCES.values():
        for option in cls.OPTIONS:
            if options.setdefault(option.name, option) is not option:
                raise TypeError(f"two different options are named {option.name}; share one Option object")
    return tuple(options.values())


def option_help(option: Option) -> str | None:
    """The help text of a source option: its own, then each source's note on it (``NOTES``), in registry order."""
    notes = [cls.NOTES[option.name] for cls in SOURCES.values() if option.name in cls.NOTES]
    if not notes:
        return option.help
    return f"{option.help}: {'; '.join(notes)}."


def source_from_options(options: Mapping[str, Any], given: Collection[str] = ()) -> SourceConfig:
    """The source the options choose, built from its options' parsed values.

    ``options``: parsed values by option name (missing ones: their defaults); ``given``: the names
    the user set (not left at their defaults). Exactly one selector must be set, and no option of
    another source may be given: both are ``ValueError`` naming the options (usage errors).
    """
    chosen = [cls for cls in SOURCES.values() if options.get(cls.SELECTOR.name) not in (None, False)]
    if len(chosen) != 1:
        usages = [selector.usage for selector in selectors()]
        raise ValueError(f"choose exactly one source: {', '.join(usages[:-1])} or {usages[-1]} "
                         f"(got {', '.join(cls.SELECTOR.flag for cls in chosen) or 'none'})")
    cls = chosen[0]
    for option in source_options():
        if option.name in given and option not in cls.OPTIONS:
            takers = " or ".join(other.SELECTOR.flag for other in SOURCES.values() if option in other.OPTIONS)
            raise ValueError(f"{option.flag} applies to {takers}, not {cls.SELECTOR.flag}")
    values = {option.name: options[option.name] if option.name in options else option.default_value()
              for option in cls.OPTIONS}
    return cls.from_options(options[cls.SELECTOR.name], **values)
