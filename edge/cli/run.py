"""``spike-edge run``: the live daemon's command line, generated from the declared options.

The options are data: the daemon's (``edge.live.config.OPTIONS``) and every source's
(``edge.live.sources``: each source's selector, ``--replay FILE``, ``--camera``, ``--simulate
[SCENE]``, and its options; see each source module for what they mean). Each becomes a click option
whose type calls the option's own parse function, so a value is checked once, where it enters,
with the same function the control socket's ``set`` uses. ``run`` hands the parsed values to
``DaemonConfig.from_options`` in one call; a combination that does not fit (two sources, an option
of another source such as ``--camera-file`` with ``--simulate``, a camera geometry that disagrees
with its mode) is a usage error, not ignored.

Options can come from a TOML file (``--config FILE.toml``) whose keys are the option names
(``ring-planes = 8000`` or ``ring_planes = 8000``); options given on the command line win. File
values go through the same parse functions; a bad one is a usage error naming the key and the file.
Exit codes are ``firmware_io.exits.ExitCode``: 0 clean, 2 bad arguments or input, 3 source failure,
4 backend unavailable, 5 cannot bind, 1 unexpected.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from edge.live.config import OPTIONS as DAEMON_OPTIONS
from edge.live.options import Option
from edge.live.sources import option_help, selectors, source_options

_CONFIG_KEYS = "edge.cli.run.config_keys"  # ctx.meta: option name -> (TOML key, file) for the values it set
_TYPE_NAMES = {int: "integer", float: "float", str: "text", Path: "file"}


def _config_note(ctx: click.Context | None, param: click.Parameter | None) -> str:
    """`` (key 'hop' in run.toml)`` when the value being converted came from the ``--config`` file."""
    if ctx is None or param is None or ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT_MAP:
        return ""
    key, path = ctx.meta.get(_CONFIG_KEYS, {}).get(param.name, (None, None))
    return f" (key {key!r} in {path})" if key is not None else ""


class ParsedType(click.ParamType):
    """A click type whose conversion is an option's parse function (``ValueError`` -> a usage error)."""

    def __init__(self, option: Option) -> None:
        self.option = option
        self.name = _TYPE_NAMES[option.type]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.option.parse(value)
        except ValueError as exc:
            self.fail(f"{exc}{_config_note(ctx, param)}", param, ctx)


class ParsedChoice(click.Choice):
    """One of ``option.choices`` (listed in the help), converted by the option's parse function."""

    def __init__(self, option: Option) -> None:
        super().__init__(option.choices)
        self.option = option

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            spelled = super().convert(value, param, ctx)
        except click.BadParameter as exc:
            self.fail(f"{exc.message}{_config_note(ctx, param)}", param, ctx)
        return self.option.parse(spelled)


def click_option(option: Option, help: str | None = None):
    """The click option for ``option``: flags for ``bool``, the parse function as the type otherwise."""
    help = option.help if help is None else help
    if option.type is bool:
        return click.option(option.flag, is_flag=True, help=help)
    kwargs: dict[str, Any] = {"type": ParsedChoice(option) if option.choices else ParsedType(option),
                              "default": option.default, "show_default": option.show_default, "help": help}
    if option.value_name is not None and not option.choices:
        kwargs["metavar"] = option.value_name  # --curve-clients DIR
    if option.flag_value is not None:
        kwargs.update(is_flag=False, flag_value=option.flag_value)
    return click.option(option.flag, **kwargs)


def _load_config(ctx: click.Context, param: click.Parameter, value):
    if value is None:
        return None
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(value, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc}", ctx, param) from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{value} is not valid TOML: {exc}", ctx, param) from None
    names = {p.name for p in ctx.command.params if p.name != "config"}
    config, keys = {}, {}
    for key, item in data.items():
        name = key.replace("-", "_")
        if name not in names:
            valid = ", ".join(sorted(n.replace("_", "-") for n in names))
            raise click.BadParameter(f"unknown key {key!r} in {value}; valid keys: {valid}", ctx, param)
        config[name] = item
        keys[name] = (key, value)
    ctx.default_map = {**(ctx.default_map or {}), **config}
    ctx.meta[_CONFIG_KEYS] = keys
    return value


def _run_options(f):
    """Every option of ``run``: ``--config``, the source selectors, the daemon's, then the sources' own."""
    options = [
        click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                     callback=_load_config, help="TOML file of options (keys = option names); the command line wins."),
        *(click_option(option) for option in selectors()),
        *(click_option(option) for option in DAEMON_OPTIONS),
        *(click_option(option, option_help(option)) for option in source_options()),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _given(ctx: click.Context, name: str) -> bool:
    """The option was set by the user (command line, environment or --config), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source is not click.core.ParameterSource.DEFAULT


@click.command("run")
@_run_options
@click.pass_context
def run(ctx: click.Context, **options: Any) -> None:
    """Run the live pipeline: capture -> ring -> reconstruction -> ZeroMQ frames.

    Exit codes: 0 clean end or signal, 2 bad arguments/input, 3 source failure
    (including a missing camera library), 4 backend unavailable, 5 cannot bind an address.
    """
    from edge.live.config import DaemonConfig
    from edge.live.daemon import Daemon

    try:
        config = DaemonConfig.from_options(options, given={name for name in options if _given(ctx, name)})
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from None
    edge_log = logging.getLogger("edge")
    if edge_log.getEffectiveLevel() > logging.INFO:
        edge_log.setLevel(logging.INFO)  # the run summary is always shown
    daemon = Daemon(config)
    daemon.install_signal_handlers()
    code = daemon.run()
    sys.exit(int(code))
