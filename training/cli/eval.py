"""``spike-train eval``: PSNR and SSIM of the methods against ground truth (the work is ``training.evaluate``)."""

from __future__ import annotations

import json

import click

from edge.reconstruction.backends import BackendName
from edge.reconstruction.methods import METHOD_NAMES
from firmware_io.exits import fail


@click.command("eval")
@click.option("--method", "methods", type=click.Choice(METHOD_NAMES), multiple=True, required=True,
              help="Method(s) to evaluate; TFP and TFI baselines are always included.")
@click.option("--checkpoint", default=None, help="Weights for a network (default: the packaged default weights).")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="REDS_BASE-layout folder.")
@click.option("--backend", type=click.Choice([b.value for b in BackendName]), default=BackendName.AUTO.value,
              show_default=True, help="Backend for the networks.")
@click.option("--tfp-window", type=int, default=41, help="TFP window reported as the baseline (default 41).")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def eval_command(methods, checkpoint, data, backend, tfp_window, as_json) -> None:
    """PSNR / SSIM against ground truth at each clip's centre plane (REDS_BASE layout).

    A network whose output is not on the firing-rate scale (e.g. weights trained to another output
    range) is named, with its scale, and also scored after dividing by that scale.
    """
    from training.evaluate import evaluate, format_table

    try:
        report = evaluate(list(methods), data, checkpoint=checkpoint, backend=backend, tfp_window=tfp_window,
                          progress=True)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc))
    click.echo(json.dumps(report, indent=2) if as_json else format_table(report))
