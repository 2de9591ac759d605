"""``spike-train``: training, evaluation and export of the networks.

Commands live next to what they drive; each module in ``COMMAND_MODULES`` adds its own with ``register``.
"""

from __future__ import annotations

import importlib
import logging

import click

COMMAND_MODULES = ("training.cli_fit", "training.export")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """spike-train: train, evaluate and export LRN and STIR."""
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), format="%(asctime)s %(name)s %(levelname)s: %(message)s")


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main)
