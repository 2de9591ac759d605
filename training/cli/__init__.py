"""``spike-train``: training, evaluation and export of the networks.

One module per command; this file lists every command. torch and open_clip are imported only when a
command runs, so ``spike-train --help`` stays fast. Every command ends through ``firmware_io.exits.ExitCode``.
"""

from __future__ import annotations

import logging

import click

from firmware_io.exits import ExitCodeGroup
from training.cli import eval as eval_cli
from training.cli import data, export, fit, spikeclip


@click.group(cls=ExitCodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """spike-train: train, evaluate and export LRN and STIR."""
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), format="%(asctime)s %(name)s %(levelname)s: %(message)s")


for _command in (data.data_command, fit.fit_command, eval_cli.eval_command, spikeclip.spikeclip_command, export.export):
    main.add_command(_command)
