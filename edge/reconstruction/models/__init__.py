"""The learned reconstruction networks (LRN, STIR) as torch modules, and the closed sets of their artifacts.

``lrn`` and ``stir`` hold one network each (architecture, input transform, ``build``); which method
runs which network, with what window and input preparation, is ``edge.reconstruction.methods``'
table. ``checkpoints`` reads and strictly loads state dicts. This package's ``__init__`` holds the
closed sets shared by the backends, the export code and the CLIs (numeric precisions, artifact
formats, the ONNX opset), so CLI choices and defaults come from one place. It imports no torch at
import time (``Precision.torch_dtype`` imports it when asked); the submodules do.
"""

from __future__ import annotations

import enum


class Precision(str, enum.Enum):
    """A network's numeric precision; ``dtype_name`` / ``torch_dtype`` are the one mapping to dtypes."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"

    @property
    def dtype_name(self) -> str:
        """The dtype's name as torch and manifests spell it: ``float32``, ``float16``, ``bfloat16``."""
        return _DTYPE_NAMES[self]

    @property
    def torch_dtype(self):
        """The ``torch.dtype`` this precision computes in (imports torch)."""
        import torch

        return getattr(torch, self.dtype_name)


_DTYPE_NAMES = {Precision.FP32: "float32", Precision.FP16: "float16", Precision.BF16: "bfloat16"}

#: ``--precision``: one of ``Precision``, or ``auto`` (``edge.reconstruction.precision`` picks; derived from it).
PrecisionSetting = enum.Enum("PrecisionSetting", [("AUTO", "auto"), *((p.name, p.value) for p in Precision)],
                             type=str, module=__name__)


class ExportFormat(str, enum.Enum):
    """Artifact formats written by ``spike-train export`` and loaded by ``--engine DIR`` (one backend each)."""

    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    TENSORRT = "tensorrt"
    AOTI = "aoti"  # AOTInductor: the whole forward compiled ahead of time into a .pt2 package


ONNX_OPSET = 18  # exports, in memory and to engine directories, and the ``spike-train export --opset`` default
ONNX_MIN_OPSET = 16  # GridSample (STIR's warps) needs opset 16

PRECISIONS: list[str] = [p.value for p in Precision]
PRECISION_SETTINGS: list[str] = [p.value for p in PrecisionSetting]
EXPORT_FORMATS: list[str] = [f.value for f in ExportFormat]

__all__ = ["Precision", "PrecisionSetting", "ExportFormat", "ONNX_OPSET", "ONNX_MIN_OPSET", "PRECISIONS",
           "PRECISION_SETTINGS", "EXPORT_FORMATS"]
