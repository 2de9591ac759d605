"""``spike-train spikeclip``: train LRN with the SpikeCLIP recipe (the work is ``training.spikeclip``)."""

from __future__ import annotations

import click

from firmware_io.exits import fail
from training.spikeclip import PROMPT_LAMBDA, SpikeClipConfig, run_spikeclip


@click.command("spikeclip")
@click.option("--data", required=True, help="UHSR folder of .npz samples (files 0-4999 are the train split).")
@click.option("--clip-weights", required=True, help="Local CLIP checkpoint file for --clip-model.")
@click.option("--clip-model", default="ViT-B-32", show_default=True, help="open_clip model name.")
@click.option("--out", default="runs/spikeclip", show_default=True, help="Run folder.")
@click.option("--coarse-epochs", type=int, default=5, show_default=True)
@click.option("--prompt-epochs", type=int, default=1, show_default=True)
@click.option("--fine-epochs", type=int, default=19, show_default=True)
@click.option("--max-steps-per-stage", type=int, default=None, help="Cap each stage (smoke runs).")
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=4e-5, show_default=True, help="LRN learning rate (paper: 4e-5 CALTECH, 1e-4 CIFAR).")
@click.option("--prompt-lr", type=float, default=1e-3, show_default=True)
@click.option("--n-ctx", type=int, default=4, show_default=True, help="Learnable context tokens per prompt.")
@click.option("--prompt-lambda", type=float, default=PROMPT_LAMBDA, show_default=True)
@click.option("--init", default=None, help="Start LRN from this checkpoint.")
@click.option("--hq-dir", default=None, help="Folder of high-quality images for prompt learning (default: procedural).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("--progress/--no-progress", default=True)
def spikeclip_command(**options) -> None:
    """Train LRN with the SpikeCLIP recipe (coarse TFI, prompt learning, CLIP-guided fine stage)."""
    try:
        summary = run_spikeclip(SpikeClipConfig(**options))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc))
    click.echo(f"SpikeCLIP done in {summary['wall_s']} s; LRN weights: {summary['weights']}")
