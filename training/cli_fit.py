"""``spike-train fit``, ``spike-train eval`` and ``spike-train spikeclip``: thin click wrappers.

The work is done in ``training.fit``, ``training.evaluate`` and ``training.spikeclip``; torch and
open_clip are imported only when a command runs, so ``spike-train --help`` stays fast.
"""

from __future__ import annotations

import json
import sys

import click

from edge.methods import METHOD_NAMES
from edge.models import MODEL_NAMES


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command("fit")
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None, help="Network to train (default lrn).")
@click.option("--data", default=None, help="'synthetic' (simulated on the fly) or a REDS_BASE/SREDS folder.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="TOML file of settings (keys of FitConfig, optionally under [fit]).")
@click.option("--steps", type=int, default=None, help="Optimiser steps in all (default 1000).")
@click.option("--batch", type=int, default=None, help="Batch size per process (default 8).")
@click.option("--crop", type=int, default=None, help="Training crop size in pixels (default 96).")
@click.option("--lr", type=float, default=None, help="Adam learning rate (default 5e-4 LRN, 1e-4 STIR).")
@click.option("--lr-decay-every", type=int, default=None, help="Steps between x lr-gamma decays (default: STIR steps/3, LRN never).")
@click.option("--out", default=None, help="Run folder for checkpoints and logs (default runs/fit).")
@click.option("--resume/--no-resume", default=None, help="Continue from RUN_DIR/train_state.pt.")
@click.option("--val-every", type=int, default=None, help="Validate (and keep the best checkpoint) every K steps (default 200).")
@click.option("--log-every", type=int, default=None, help="Log averaged losses every N steps (default 10).")
@click.option("--val-data", default=None, help="REDS_BASE/SREDS folder for validation (default: a fixed synthetic set).")
@click.option("--val-samples", type=int, default=None, help="Validation samples (default 8).")
@click.option("--val-crop", type=int, default=None, help="Size of the synthetic validation images (default 128).")
@click.option("--init", default=None, help="Start from this checkpoint (strict load).")
@click.option("--seed", type=int, default=None, help="Seed of weights and data (default 0).")
@click.option("--threads", type=int, default=None, help="torch CPU threads per process.")
@click.option("--workers", type=int, default=None, help="Data-loading worker processes (default 0).")
@click.option("--vgg-weights", default=None, help="Local torchvision VGG-19 state_dict: adds STIR's 0.2 x perceptual loss.")
@click.option("--low-light", type=float, default=None, help="Share of synthetic samples simulated in low light (0-1).")
@click.option("--scene-fraction", type=float, default=None, help="Share of synthetic samples from the simulator's built-in scenes (0-1).")
@click.option("--stir-window", type=click.Choice(["61", "41"]), default=None, help="STIR variant (default 61).")
@click.option("--progress/--no-progress", default=None, help="tqdm progress bar (default on).")
def fit_command(config_file, stir_window, **options) -> None:
    """Train LRN or STIR (supervised, rate-image targets). Runs under torchrun for DDP."""
    from training.fit import fit, load_config

    if stir_window is not None:
        options["stir_window"] = int(stir_window)
    try:
        config = load_config(config_file, options)
        result = fit(config)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    click.echo(f"trained {config.model} to step {result.step}: last loss {result.last_loss:.5f}, "
               f"best validation PSNR {result.best_val_psnr:.2f} dB; outputs in {result.out}")


@click.command("eval")
@click.option("--method", "methods", type=click.Choice(METHOD_NAMES), multiple=True, required=True,
              help="Method(s) to evaluate; TFP and TFI baselines are always included.")
@click.option("--checkpoint", default=None, help="Weights for a network (default: the packaged default weights).")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="REDS_BASE-layout folder.")
@click.option("--backend", default="auto", help="Backend for the networks (auto, torch, onnx, tensorrt).")
@click.option("--tfp-window", type=int, default=41, help="TFP window reported as the baseline (default 41).")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def eval_command(methods, checkpoint, data, backend, tfp_window, as_json) -> None:
    """PSNR / SSIM against ground truth at each clip's centre plane (REDS_BASE layout)."""
    from training.evaluate import evaluate, format_table

    try:
        report = evaluate(list(methods), data, checkpoint=checkpoint, backend=backend, tfp_window=tfp_window)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(report, indent=2) if as_json else format_table(report))


def register(main) -> None:
    main.add_command(fit_command)
    main.add_command(eval_command)
    from training.spikeclip import spikeclip_command

    main.add_command(spikeclip_command)
