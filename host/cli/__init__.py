"""``spike-host``: watch, record and measure a spike-edge frame stream; talk to the daemon's control socket.

Commands: ``stats`` (fps, per-stage latency percentiles, drops), ``record`` (.npz, folder, video),
``watch`` (a live line once a second), ``ctl`` (describe/health/stats/set), ``serve`` (a live web
viewer). Every command has a deadline; errors go to stderr with a non-zero exit.
"""

from __future__ import annotations

import logging
import sys

import click

from firmware_io.exits import ExitCodeGroup
from host.cli import ctl, record, serve, stats, watch


@click.group(cls=ExitCodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """spike-host: watch, record and measure a spike-edge stream."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)


for _command in (stats.stats, record.record, watch.watch, ctl.ctl, serve.serve):
    main.add_command(_command)
