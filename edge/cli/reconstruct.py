"""``spike-edge reconstruct FILE --method M [--window N] [--key K | --every E] --out OUT``.

The frame for key K uses planes ``[K - N//2, K - N//2 + N)`` (``edge.reconstruction.windows``); the
default key is the centre plane; ``OUT.npy`` holds float32 ``(frames, H, W)`` raw values; ``OUT.png``
(one frame), a folder of PNGs or a video are 8-bit pictures on ``--scale``: ``auto`` normalises each
frame on its own (min black, max white), a number S shows value v as v/S*255 for every frame
(``firmware_io.frame_files``). A progress bar runs on stderr when it is a terminal.

FILE may be a recording folder (``spike-edge run --record``). Its plane indices follow the recorded
stream, gaps included; a window that would include planes the stream lacked is never reconstructed:
``--every`` skips those windows (counted in ``skipped_windows``, like the live daemon, which resumes
after a gap with the same keys), and a ``--key`` whose window includes a gap is an error.
"""

from __future__ import annotations

import json
import logging

import click
import numpy as np

from edge.cli.common import NPZ_MEMORY_NOTE, layout_option, open_recording_or_fail, recording_options
from edge.reconstruction.backends import BackendName, BackendUnavailable, Device, make_reconstructor
from edge.reconstruction.methods import METHOD_NAMES
from edge.reconstruction.models import PRECISION_SETTINGS, PrecisionSetting
from edge.reconstruction.windows import check_window_fits, default_key, keys_every, window_range
from firmware_io.atomic import Terminated, sigterm_as_exception
from firmware_io.exits import ExitCode, fail
from firmware_io.frame_files import AUTO_SCALE, SCALE_HELP, FrameSink, parse_display_scale
from firmware_io.progress import progress_bar


def _scale(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    try:
        return parse_display_scale(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command("reconstruct", epilog=NPZ_MEMORY_NOTE)
@click.argument("file", type=click.Path())
@click.option("--method", type=click.Choice(METHOD_NAMES), required=True, help="Reconstruction method.")
@click.option("--window", type=click.IntRange(min=1), help="Window length in planes (classical methods; networks are fixed).")
@click.option("--key", type=click.IntRange(min=0), help="Key plane of the single output frame (default: centre plane).")
@click.option("--every", type=click.IntRange(min=1), help="One frame every N planes, from the first key whose window fits.")
@click.option("--out", required=True, type=click.Path(), help="OUT.npy (raw float32), OUT.png, a folder, or OUT.mp4.")
@recording_options
@layout_option
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="Network weights (state_dict).")
@click.option("--engine", type=click.Path(exists=True, file_okay=False), help="Exported engine folder (spike-train export).")
@click.option("--backend", type=click.Choice([b.value for b in BackendName]), default=BackendName.AUTO.value, show_default=True)
@click.option("--device", type=click.Choice([d.value for d in Device]), default=Device.CPU.value, show_default=True)
@click.option("--precision", type=click.Choice(PRECISION_SETTINGS), default=None,
              help="Network precision (torch: fp32/bf16 on the CPU, fp16/bf16/fp32 on CUDA); default fp32 on the CPU, "
                   "fp16 on CUDA; auto: the pick `spike-edge bench reconstruct` measured here, else the rule in "
                   "docs/precision.md.")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True, help="Windows per backend call.")
@click.option("--fps", type=float, default=25.0, show_default=True, help="Frame rate of a video output.")
@click.option("--scale", default=AUTO_SCALE, show_default=True, callback=_scale, metavar="auto|S", help=SCALE_HELP)
def reconstruct(file, method, window, key, every, out, height, width, with_head, allow_partial, layout, checkpoint,
                engine, backend, device, precision, batch, fps, scale):
    """Reconstruct frames from a recording (file or recording folder) with TFP, TFI, LRN or STIR.

    A recording folder (run --record) keeps its stream's plane indices; windows that would include
    planes the stream lacked are skipped with --every (counted as skipped_windows, the same keys a
    live replay of the folder publishes) and refused with --key.
    """
    if key is not None and every is not None:
        fail("give --key or --every, not both")
    if precision == PrecisionSetting.AUTO.value:
        auto_log = logging.getLogger("edge.reconstruction.backends")
        auto_log.setLevel(min(auto_log.getEffectiveLevel(), logging.INFO))  # say which precision auto chose and why
    with open_recording_or_fail(file, height, width, with_head, allow_partial, layout) as rec:
        try:
            recon = make_reconstructor(method, rec.geometry, backend=backend, device=device,
                                       window_planes=window, checkpoint=checkpoint, engine=engine, precision=precision)
        except BackendUnavailable as exc:
            fail(str(exc), ExitCode.BACKEND_UNAVAILABLE)
        except (FileNotFoundError, ValueError) as exc:  # CheckpointError and EngineMismatch are ValueErrors
            fail(str(exc))
        window_planes = recon.window_planes
        skipped = 0
        try:
            if every is not None:
                keys = keys_every(rec.n_planes, window_planes, every)
                if not keys:
                    fail(f"{rec.path} has {rec.n_planes} planes, fewer than one {window_planes}-plane window")
                kept = [k for k in keys if rec.gap_in(*window_range(k, window_planes)) is None]
                skipped, keys = len(keys) - len(kept), kept
                if not keys:
                    fail(f"every {window_planes}-plane window of {rec.path} includes planes that were not recorded")
            else:
                keys = [default_key(rec.n_planes) if key is None else key]
                check_window_fits(keys[0], window_planes, rec.n_planes)
                gap = rec.gap_in(*window_range(keys[0], window_planes))
                if gap is not None:
                    fail(f"the window {list(window_range(keys[0], window_planes))} of key {keys[0]} includes planes "
                         f"[{gap.start}, {gap.stop}) that {rec.path} does not hold ({gap.cause.value}); choose another --key")
        except ValueError as exc:
            fail(str(exc))
        click.echo(f"{method}: {len(keys)} frame(s), window {window_planes} planes, backend {recon.backend}"
                   + (f"; {skipped} window(s) skipped: they include planes not recorded" if skipped else ""), err=True)
        try:
            with sigterm_as_exception(), FrameSink(out, len(keys), rec.geometry.shape, fps=fps, scale=scale) as sink, \
                    progress_bar(total=len(keys), desc=method, unit="frame") as progress:
                for i in range(0, len(keys), batch):
                    batch_keys = keys[i : i + batch]
                    windows = np.stack([rec.packed(*window_range(k, window_planes)) for k in batch_keys])
                    for frame in recon.reconstruct(windows):
                        sink.append(frame)
                    progress.update(len(batch_keys))
        except (ValueError, RuntimeError) as exc:
            fail(str(exc))
        except Terminated as exc:
            fail(f"{exc} before {out} was complete", ExitCode.INCOMPLETE)
    click.echo(json.dumps({"out": str(out), "frames": len(keys), "first_key": keys[0], "last_key": keys[-1],
                           "window": window_planes, "method": method, "backend": recon.backend,
                           "skipped_windows": skipped}))
