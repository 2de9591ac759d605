"""The learned reconstruction networks (LRN, STIR) as torch modules, and the closed sets of their artifacts.

``lrn`` and ``stir`` hold one network each (architecture, input transform, ``build``); which method
runs which network, with what window and input preparation, is ``edge.reconstruction.methods``'
table. ``checkpoints`` reads and strictly loads state dicts. This package's ``__init__`` holds the
closed sets shared by the backends, the export code and the CLIs (numeric precisions, artifact
formats, the ONNX opset), so CLI choices and defaults come from one place. It imports no torch; the
submodules do.
"""

from __future__ import annotations

import enum


class Precision(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"


class ExportFormat(str, enum.Enum):
    """Artifact formats written by ``spike-train export`` and loaded by ``--engine DIR`` (one backend each)."""

    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    TENSORRT = "tensorrt"
    AOTI = "aoti"  # AOTInductor: the whole forward compiled ahead of time into a .pt2 package


ONNX_OPSET = 18  # exports, in memory and to engine directories, and the ``spike-train export --opset`` default
ONNX_MIN_OPSET = 16  # GridSample (STIR's warps) needs opset 16

PRECISIONS: list[str] = [p.value for p in Precision]
EXPORT_FORMATS: list[str] = [f.value for f in ExportFormat]

__all__ = ["Precision", "ExportFormat", "ONNX_OPSET", "ONNX_MIN_OPSET", "PRECISIONS", "EXPORT_FORMATS"]
