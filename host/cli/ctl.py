"""``spike-host ctl URL CMD [KEY=VALUE ...]``: describe, health, stats or set on a daemon."""

from __future__ import annotations


import click
import zmq

from firmware_io.exits import ExitCode, fail
from edge.protocol.client import COMMANDS, ControlError, ControlTimeout, build_request, parse_assignment, request
from edge.protocol.security import CurveClient
from host.cli.common import curve_options, dumps


@click.command()
@click.argument("url")
@click.argument("cmd", type=click.Choice(COMMANDS))
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="Give up when no reply arrives within this.")
@curve_options
def ctl(url: str, cmd: str, assignments: tuple[str, ...], timeout_s: float, curve: CurveClient | None) -> None:
    """Send describe/health/stats/set to the daemon's control socket at URL (e.g. tcp://127.0.0.1:5556)."""
    try:
        params = dict(parse_assignment(a) for a in assignments)
        message = build_request(cmd, params)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        reply = request(url, message, timeout_s=timeout_s, curve=curve)
    except ControlTimeout as exc:
        fail(str(exc), ExitCode.NO_STREAM)
    except (ControlError, zmq.ZMQError) as exc:
        fail(f"{url}: {exc}", ExitCode.NO_STREAM)
    click.echo(dumps(reply))
    if reply.get("ok") is not True:
        fail(f"{cmd} failed: {reply.get('error', reply)}", ExitCode.BAD_INPUT)
