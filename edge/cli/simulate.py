"""``spike-edge simulate``: grey frames (a built-in scene, images or a video) -> .dat through the
integrate-and-fire simulator.

``--layout`` chooses how the ``.dat`` lays out its planes (``firmware_io.layouts.Layout``): the
``.dat`` convention (default) or the 1000x1000 camera's PCIe rows (``pcie1k``: 1000x1000 only, the
default geometry then), so that tests and users can make raw files of that camera.

``--planes`` beyond what an image folder makes (frames x ``--planes-per-frame``) is refused before
anything is written; a video, whose length is known only at its end, writes what it gives and warns.
A progress bar runs on stderr when it is a terminal.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import click

from firmware_io.contract import DEFAULT_HEIGHT, DEFAULT_WIDTH, Geometry
from firmware_io.atomic import Terminated, sigterm_as_exception
from firmware_io.exits import ExitCode, fail
from firmware_io.layouts import PCIE_GEOMETRY, Layout
from firmware_io.progress import progress_bar
from firmware_io.scenes import SceneName
from firmware_io.simulator import DEFAULT_GAIN, DEFAULT_THRESHOLD, NoisePreset

DEFAULT_SCENE_PLANES = 1000
CHUNK_PLANES = 256


def _build_noise(noise: str, knobs: dict):
    from firmware_io.simulator import NoisePreset

    params = NoisePreset(noise).params
    return replace(params, **{k: v for k, v in knobs.items() if v is not None})


@click.command("simulate")
@click.option("--scene", type=click.Choice([s.value for s in SceneName]), help="Built-in procedural scene.")
@click.option("--images", "images_dir", type=click.Path(file_okay=False), help="Folder of grey/colour images (sorted by name).")
@click.option("--video", "video_file", type=click.Path(dir_okay=False), help="Video file (needs the video extra).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output .dat file (written atomically).")
@click.option("--layout", type=click.Choice([layout.value for layout in Layout]), default=Layout.DAT.value,
              show_default=True, help=f"Plane layout of the .dat (pcie1k: the {PCIE_GEOMETRY} camera's PCIe rows).")
@click.option("--planes", type=int, default=None, help=f"Planes to write (scenes: default {DEFAULT_SCENE_PLANES}; files: all frames).")
@click.option("--height", type=int, default=None, help=f"Plane height (scenes: default {DEFAULT_HEIGHT}; files: resize to it).")
@click.option("--width", type=int, default=None, help=f"Plane width (scenes: default {DEFAULT_WIDTH}; files: resize to it).")
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True, help="Firing threshold V_th.")
@click.option("--gain", type=float, default=None, help=f"Grey gain per tick (default {DEFAULT_GAIN}: rate = 0.6 x grey at V_th 2).")
@click.option("--rate-scale", type=float, default=None, help="Set the gain so that rate = RATE_SCALE x grey (REDS_BASE: 0.6).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--speed", type=float, default=1.0, show_default=True, help="Scene motion scale (about px per input frame).")
@click.option("--planes-per-frame", type=int, default=None, help="Ticks per input frame (scenes: default 20; files: 1).")
@click.option("--noise", type=click.Choice([p.value for p in NoisePreset]), default=NoisePreset.NONE.value, show_default=True)
@click.option("--spurious-rate", type=float, default=None, help="Spurious spikes per pixel per tick (overrides the preset).")
@click.option("--gain-fpn", type=float, default=None, help="Fixed-pattern gain noise sigma (overrides the preset).")
@click.option("--gain-jitter", type=float, default=None, help="Per-tick gain noise sigma (overrides the preset).")
@click.option("--hot-pixels", type=float, default=None, help="Fraction of pixels firing every tick (overrides the preset).")
@click.option("--dead-pixels", type=float, default=None, help="Fraction of pixels never firing (overrides the preset).")
def simulate(scene, images_dir, video_file, out_path, layout, planes, height, width, threshold, gain, rate_scale, seed, speed,
             planes_per_frame, noise, spurious_rate, gain_fpn, gain_jitter, hot_pixels, dead_pixels):
    """Simulate spikes from a scene, images or a video and write a .dat file.

    Prints one JSON line: planes, height, width, firing_rate (spikes per pixel per plane).
    """
    from firmware_io.dat import DatWriter
    from firmware_io.pcie import PcieWriter
    from firmware_io.scenes import frames_from_images, frames_from_video, scene_frames
    from firmware_io.sim_source import DEFAULT_SCENE_PLANES_PER_FRAME
    from firmware_io.simulator import FrameStream, SimParams, SpikeSimulator

    chosen = [name for name, value in (("--scene", scene), ("--images", images_dir), ("--video", video_file)) if value]
    if len(chosen) != 1:
        raise click.UsageError(f"give exactly one of --scene, --images, --video (got {chosen or 'none'})")
    if gain is not None and rate_scale is not None:
        raise click.UsageError("give --gain or --rate-scale, not both")
    if (height is None) != (width is None):
        raise click.UsageError("give --height and --width together")
    if planes is not None and planes < 0:
        raise click.BadParameter(f"must be >= 0, got {planes}", param_hint="--planes")
    layout = Layout(layout)
    if layout is Layout.PCIE1K and height is not None and (height, width) != PCIE_GEOMETRY.shape:
        raise click.UsageError(f"--layout {layout.value} holds {PCIE_GEOMETRY} planes, not --height {height} "
                               f"--width {width}")
    try:
        params = (
            SimParams.from_rate_scale(rate_scale, threshold)
            if rate_scale is not None
            else SimParams(threshold=threshold, gain=DEFAULT_GAIN * threshold / DEFAULT_THRESHOLD if gain is None else gain)
        )
        noise_params = _build_noise(noise, dict(spurious_rate=spurious_rate, gain_fpn=gain_fpn, gain_jitter=gain_jitter,
                                                hot_pixels=hot_pixels, dead_pixels=dead_pixels))
        geometry = Geometry(height, width) if height is not None else None
        if layout is Layout.PCIE1K:
            geometry = PCIE_GEOMETRY
        if scene:
            geometry = geometry or Geometry(DEFAULT_HEIGHT, DEFAULT_WIDTH)
            frames = scene_frames(scene, geometry, seed=seed, speed=speed)
            npf = planes_per_frame or DEFAULT_SCENE_PLANES_PER_FRAME
            planes = DEFAULT_SCENE_PLANES if planes is None else planes
        else:
            frames = frames_from_images(images_dir, geometry) if images_dir else frames_from_video(video_file, geometry)
            geometry = frames.geometry
            npf = planes_per_frame or 1
            if planes is not None and frames.n_frames is not None and planes > frames.n_frames * npf:
                source = f"the {frames.n_frames} images in {images_dir}"
                raise ValueError(_too_few_frames(frames.n_frames, npf, planes, source))
        simulator = SpikeSimulator(geometry, params, noise_params, seed)
        stream = FrameStream(simulator, frames, npf)
        started = time.perf_counter()
        writer_type = PcieWriter if layout is Layout.PCIE1K else DatWriter
        total = planes if planes is not None else (None if frames.n_frames is None else frames.n_frames * npf)
        with sigterm_as_exception(), writer_type(out_path, geometry) as writer, \
                progress_bar(total=total, desc="simulate", unit="plane") as progress:
            while planes is None or writer.n_planes < planes:
                want = CHUNK_PLANES if planes is None else min(CHUNK_PLANES, planes - writer.n_planes)
                chunk = stream.read(want, packed=True)
                if chunk.shape[0] == 0:
                    break
                writer.write_packed(chunk)
                progress.update(chunk.shape[0])
            written = writer.n_planes
        seconds = time.perf_counter() - started
    except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
        fail(str(exc))
    except Terminated as exc:
        fail(f"{exc} before {out_path} was complete", ExitCode.INCOMPLETE)
    summary = {
        "out": str(out_path),
        "planes": written,
        "height": geometry.height,
        "width": geometry.width,
        "layout": layout.value,
        "firing_rate": round(simulator.mean_rate, 6),
        "threshold": params.threshold,
        "gain": params.gain,
        "noise": noise,
        "seconds": round(seconds, 3),
    }
    if planes is not None and written < planes:  # a video (its length is known only at its end) ran out
        summary["planes_requested"] = planes
        source = f"the {stream.frames_read} frames of {video_file}"
        click.echo(f"warning: {_too_few_frames(stream.frames_read, npf, planes, source)}; wrote the {written} planes "
                   "they make", err=True)
    click.echo(json.dumps(summary))


def _too_few_frames(n_frames: int, planes_per_frame: int, planes: int, source: str) -> str:
    """``--planes N`` asks for more planes than the input frames make at ``planes_per_frame`` each."""
    needed = -(-planes // max(n_frames, 1))
    return (f"--planes {planes} asks for more than {source} make: {n_frames} frames x {planes_per_frame} "
            f"plane(s) per frame = {n_frames * planes_per_frame} planes; give --planes {n_frames * planes_per_frame} "
            f"or fewer, or --planes-per-frame {needed} ({n_frames * needed} planes)")
