"""``spike-edge bench simulate``: simulator throughput (packed planes/s, one core), scene rendering included."""

from __future__ import annotations

import json
import time

import click

from edge.cli.common import geometry_option
from edge.cli.simulate import CHUNK_PLANES
from firmware_io.contract import DEFAULT_HEIGHT, DEFAULT_WIDTH
from firmware_io.scenes import SceneName
from firmware_io.simulator import NoisePreset


@click.command("simulate")
@click.option("--planes", type=int, default=2000, show_default=True)
@click.option("--height", type=int, default=DEFAULT_HEIGHT, show_default=True)
@click.option("--width", type=int, default=DEFAULT_WIDTH, show_default=True)
@click.option("--noise", type=click.Choice([p.value for p in NoisePreset]), default=NoisePreset.NONE.value, show_default=True)
@click.option("--scene", type=click.Choice([s.value for s in SceneName]), default=SceneName.SHAPES.value, show_default=True)
def bench_simulate(planes, height, width, noise, scene):
    """Simulator throughput (packed planes/s, one core), scene rendering included."""
    from firmware_io.scenes import scene_frames
    from firmware_io.sim_source import DEFAULT_SCENE_PLANES_PER_FRAME
    from firmware_io.simulator import FrameStream, SpikeSimulator

    geometry = geometry_option(height, width)
    stream = FrameStream(SpikeSimulator(geometry, noise=noise), scene_frames(scene, geometry),
                         DEFAULT_SCENE_PLANES_PER_FRAME)
    stream.read(CHUNK_PLANES)  # warm-up
    started = time.perf_counter()
    done = 0
    while done < planes:
        done += stream.read(min(CHUNK_PLANES, planes - done)).shape[0]
    seconds = time.perf_counter() - started
    click.echo(json.dumps({"planes": done, "height": height, "width": width, "noise": noise, "scene": scene,
                           "seconds": round(seconds, 3), "planes_per_s": round(done / seconds, 1)}))
