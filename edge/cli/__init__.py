"""``spike-edge``: the edge command line (offline tools, the daemon, benchmarks).

One module per command; this file lists every command explicitly, so a reader finds them all here.
Every command ends through ``firmware_io.exits.ExitCode``.
"""

from __future__ import annotations

import logging

import click

from edge.cli import demo, doctor, info, keys, models, reconstruct, run, service, simulate
from edge.cli.bench import decode as bench_decode
from edge.cli.bench import device as bench_device
from edge.cli.bench import pipeline as bench_pipeline
from edge.cli.bench import reconstruct as bench_reconstruct
from edge.cli.bench import simulate as bench_simulate
from edge.cli.bench import soak as bench_soak
from firmware_io.exits import ExitCodeGroup


@click.group(cls=ExitCodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """spike-edge: spike camera I/O, real-time reconstruction and streaming."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


@main.group(cls=ExitCodeGroup)
def bench() -> None:
    """Benchmarks that print their figures."""


for _command in (info.info, reconstruct.reconstruct, simulate.simulate, models.models, run.run, demo.demo, keys.keys,
                 service.service, doctor.doctor):
    main.add_command(_command)
for _command in (bench_decode.bench_decode, bench_reconstruct.bench_reconstruct, bench_simulate.bench_simulate,
                 bench_pipeline.bench_pipeline, bench_device.bench_device, bench_soak.bench_soak):
    bench.add_command(_command)
