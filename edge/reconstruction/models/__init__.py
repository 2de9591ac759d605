"""The learned reconstruction networks (LRN, STIR): torch modules, input transforms, checkpoints, export.

This package's ``__init__`` holds the closed sets shared by the networks, the backends, the export
code and the CLIs (model names, numeric precisions, artifact formats), so CLI choices are generated
from one place. It imports no torch; the submodules do.
"""

from __future__ import annotations

import enum


class ModelName(str, enum.Enum):
    """The learned models (the networks among ``edge.reconstruction.methods.Method``)."""

    LRN = "lrn"
    STIR = "stir"


class Precision(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"


class ExportFormat(str, enum.Enum):
    """Artifact formats written by ``spike-train export`` and loaded by ``--engine DIR``."""

    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    TENSORRT = "tensorrt"


MODEL_NAMES: list[str] = [m.value for m in ModelName]
PRECISIONS: list[str] = [p.value for p in Precision]
EXPORT_FORMATS: list[str] = [f.value for f in ExportFormat]

__all__ = ["ModelName", "Precision", "ExportFormat", "MODEL_NAMES", "PRECISIONS", "EXPORT_FORMATS"]
