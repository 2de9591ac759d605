"""The learned reconstruction networks (LRN, STIR) as torch modules, their input transforms and checkpoints.

Torch is imported by the submodules only; ``import edge.models`` stays cheap.
"""

from __future__ import annotations

import enum


class ModelName(str, enum.Enum):
    """The closed set of learned models (one place; CLI choices come from here)."""

    LRN = "lrn"
    STIR = "stir"


MODEL_NAMES: list[str] = [m.value for m in ModelName]

__all__ = ["ModelName", "MODEL_NAMES"]
