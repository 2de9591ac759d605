"""``spike-train export``: write an engine directory (artifact + manifest.json) for LRN or STIR.

The artifact logic lives in ``edge.reconstruction.backends`` (``export_engine``: the format's backend writes the
artifact, ``edge.reconstruction.engines`` the manifest); this module is only the command line. Engines are
built here, explicitly, for one input geometry; ``spike-edge reconstruct --engine DIR`` loads them.
"""

from __future__ import annotations

import click

from edge.reconstruction.backends.base import Device
from edge.reconstruction.methods import LEARNED_METHOD_NAMES
from edge.reconstruction.models import EXPORT_FORMATS, ONNX_MIN_OPSET, ONNX_OPSET, PRECISIONS, Precision
from firmware_io.exits import fail


@click.command("export")
@click.option("--model", "model", type=click.Choice(LEARNED_METHOD_NAMES), required=True, help="Network to export.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Weights (.pt/.pth); defaults to the packaged weights when present.")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True, help="Artifact format.")
@click.option("--height", type=click.IntRange(min=1), required=True, help="Input height in pixels.")
@click.option("--width", type=click.IntRange(min=1), required=True, help="Input width in pixels.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=Precision.FP32.value, show_default=True)
@click.option("--device", type=click.Choice([d.value for d in Device]), default=None,
              help="Device the artifact is built for (aoti packages run only there; fp16 TorchScript and "
                   "TensorRT need cuda). Default: cpu where the format runs there at --precision, else cuda.")
@click.option("--opset", type=click.IntRange(min=ONNX_MIN_OPSET), default=ONNX_OPSET, show_default=True,
              help=f"ONNX opset (>= {ONNX_MIN_OPSET} for GridSample).")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Engine directory to create.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out directory.")
def export(model, checkpoint, fmt, height, width, precision, device, opset, out, overwrite) -> None:
    """Export a network for one input size to an engine directory."""
    from edge.reconstruction.backends import BackendUnavailable, export_engine
    from firmware_io.contract import Geometry

    try:
        path = export_engine(model, checkpoint, fmt, Geometry(height, width), out, precision=precision,
                             opset=opset, device=device, overwrite=overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, BackendUnavailable) as exc:
        fail(str(exc))
    click.echo(f"wrote {path} ({fmt}, {model}, {height}x{width}, {precision})")

