"""``spike-train data``: the photo set for ``--data reds-like`` and a held-out REDS-like evaluation set.

The work is ``training.photos`` (collect the installed photographs) and ``training.reds_like``
(render clips); this command only parses options and reports progress.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from firmware_io.exits import fail


@click.command("data")
@click.option("--out", default="runs/photos", show_default=True, help="Folder for the grey photo set and its manifest.json (keep it out of git).")
@click.option("--source", "sources", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of pictures to collect (repeatable; default: the wallpaper packages' folders and scikit-image's images found here).")
@click.option("--short-side", "short_side_px", type=int, default=720, show_default=True, help="Pixels on each photo's short side after scaling (REDS frames are 720 high).")
@click.option("--val-fraction", type=float, default=0.15, show_default=True, help="Share of photos held out for validation (chosen by digest).")
@click.option("--val-clips", type=int, default=0, show_default=True, help="Also render this many REDS-like clips from the held-out photos, for `spike-train eval`.")
@click.option("--val-out", default="runs/reds_like_val", show_default=True, help="REDS_BASE-layout folder for --val-clips.")
@click.option("--seed", type=int, default=20261202, show_default=True, help="Seed of the rendered clips.")
def data_command(out, sources, short_side_px, val_fraction, val_clips, val_out, seed) -> None:
    """Collect real photographs (grey, scaled, split, digested) and optionally render held-out clips."""
    import numpy as np

    from training.photos import collect, load_photo_set
    from training.reds_like import RedsLikeSettings, write_clip

    try:
        records = collect(out, sources=[Path(s) for s in sources] or None, short_side_px=short_side_px,
                          val_fraction=val_fraction, progress=lambda line: click.echo(line, err=True))
        n_val = sum(r.split == "val" for r in records)
        click.echo(f"photo set: {len(records)} photos ({len(records) - n_val} train, {n_val} validation) in {out}")
        if val_clips > 0:
            photos = load_photo_set(out, "val")
            settings = RedsLikeSettings(window_planes=301, crop=250)
            for i in range(val_clips):
                dat, png = write_clip(settings, photos, np.random.default_rng([seed, i]), Path(val_out), f"val_{i:03d}")
                click.echo(f"[{i + 1}/{val_clips}] {dat} + {png}", err=True)
            (Path(val_out) / "generator.json").write_text(json.dumps(
                {"generator": settings.as_dict(), "seed": seed, "photo_set": str(out),
                 "photos": sorted(r.sha256 for r in records if r.split == "val")}, indent=1) + "\n")
            click.echo(f"{val_clips} REDS-like clips (250x400, 301 planes, held-out photos) in {val_out}")
    except (ValueError, FileNotFoundError, OSError) as exc:
        fail(str(exc))
