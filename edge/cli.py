"""``spike-edge``: the edge command line (offline tools, the daemon, benchmarks).

Commands live next to what they drive; each ``edge.cli_*`` module adds its own with ``register``.
"""

from __future__ import annotations

import importlib
import logging

import click

COMMAND_MODULES = ("edge.cli_offline", "edge.cli_simulate", "edge.cli_models", "edge.cli_run", "edge.demo",
                   "edge.bench_device")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """spike-edge: spike camera I/O, real-time reconstruction and streaming."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


@main.group()
def bench() -> None:
    """Benchmarks that print their figures."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main, bench)
