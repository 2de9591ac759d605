"""``spike-train fit``: train LRN or STIR (the work is ``training.fit``; torch is imported when it runs)."""

from __future__ import annotations

import click

from edge.reconstruction.methods import LEARNED_METHOD_NAMES
from training.fit import TRAIN_PRECISIONS
from firmware_io.exits import fail


@click.command("fit")
@click.option("--model", type=click.Choice(LEARNED_METHOD_NAMES), default=None, help="Network to train (default lrn).")
@click.option("--data", default=None, help="'synthetic' (procedural scenes), 'reds-like' (photographs of --photos moved like REDS_BASE) or a REDS_BASE/SREDS folder.")
@click.option("--photos", default=None, help="Photo set of `spike-train data` for --data reds-like (default runs/photos).")
@click.option("--precision", type=click.Choice(TRAIN_PRECISIONS), default=None, help="bf16: autocast forward and loss (CPUs with AMX/AVX512-BF16, GPUs); weights stay fp32.")
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
        fail(str(exc))
    click.echo(f"trained {config.model} to step {result.step}: last loss {result.last_loss:.5f}, "
               f"best validation PSNR {result.best_val_psnr:.2f} dB; outputs in {result.out}")
