"""``--precision auto``: which precision a network backend runs in, from measurements here or a written rule.

- ``pick_precision(trials)``: the pick itself, a pure function. Each ``PrecisionTrial`` is one
  precision's milliseconds per frame and its quality loss against fp32 in dB (``loss_db``: fp32's
  PSNR against ground truth minus this precision's, measured by ``spike-edge bench reconstruct``).
  The pick is the fastest trial that loses at most ``PICK_TOLERANCE_DB`` (0.1 dB); fp32 itself is
  the reference and always qualifies.
- ``PickCache``: the picks ``spike-edge bench reconstruct`` measured, one per ``PickKey`` (CPU model
  or GPU name, torch version, method, device), in ``precision-picks.json`` under the user's cache
  folder (``$XDG_CACHE_HOME/spike-edge``, else ``~/.cache/spike-edge``). At most
  ``MAX_CACHE_ENTRIES``, the oldest dropped first; every write is atomic (``firmware_io.atomic``). An
  unreadable file counts as empty (and is replaced at the next write).
- ``fallback_precision``: the rule without a measurement for this machine. CUDA: fp16 (the
  torch backend's default, with CUDA graphs). CPU: bf16 where the CPU has AVX512-BF16 or AMX
  (``edge.reconstruction.cpu_features``) and the project measured the method in bf16 both within the
  tolerance and faster than fp32 (``BF16_CPU_MEASURED``: LRN and STIR, figures in docs/precision.md);
  else fp32.
- ``resolve_precision``: what ``auto`` means for a method on a device, and why (a sentence for the log):
  the cached pick, else the rule; never bf16 on a CPU without AVX512-BF16 or AMX, whatever the cache says.

Only the torch backend builds networks in other precisions than fp32 from weights; ``CANDIDATES``
lists what ``auto`` chooses among on each device.

Design: the measurement is a benchmark the user runs (minutes on a CPU), not something a daemon does
at start-up, so ``auto`` reads a cache instead of measuring. The loss is taken against ground truth
(the REDS_BASE clips' PNGs, or the simulator's scene) because the criterion is what a viewer loses,
not how far the bits moved; ``spike-edge bench reconstruct`` reports the PSNR against the fp32
output too.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from edge.reconstruction.backends.base import Device
from edge.reconstruction.cpu_features import CpuBf16Support, detect_bf16_support
from edge.reconstruction.methods import Method
from edge.reconstruction.models import Precision
from firmware_io.atomic import write_text_atomic

log = logging.getLogger(__name__)

PICK_TOLERANCE_DB = 0.1  # the most PSNR (against ground truth) a faster precision may lose to fp32
MAX_CACHE_ENTRIES = 64
CACHE_FILE = "precision-picks.json"
CACHE_VERSION = 1
#: What ``auto`` chooses among, per device (fp32 first: the reference every loss is measured against).
CANDIDATES: dict[Device, tuple[Precision, ...]] = {
    Device.CPU: (Precision.FP32, Precision.BF16),
    Device.CUDA: (Precision.FP32, Precision.FP16, Precision.BF16),
}
#: Methods measured faster in bf16 than in fp32 on an AMX CPU, within ``PICK_TOLERANCE_DB`` (docs/precision.md).
BF16_CPU_MEASURED: frozenset[Method] = frozenset({Method.LRN, Method.STIR})


@dataclass(frozen=True)
class PrecisionTrial:
    precision: Precision
    ms_per_frame: float
    loss_db: float | None  # fp32's PSNR against ground truth minus this one's; None: not measured


def pick_precision(trials: Iterable[PrecisionTrial], tolerance_db: float = PICK_TOLERANCE_DB) -> Precision:
    """The fastest trial losing at most ``tolerance_db`` to fp32 (fp32 always qualifies); needs an fp32 trial."""
    trials = list(trials)
    if not any(t.precision is Precision.FP32 for t in trials):
        raise ValueError(f"the trials {[t.precision.value for t in trials]} have no fp32 reference")
    fit = [t for t in trials
           if t.precision is Precision.FP32 or (t.loss_db is not None and t.loss_db <= tolerance_db)]
    return min(fit, key=lambda t: t.ms_per_frame).precision


@dataclass(frozen=True)
class PickKey:
    hardware: str  # the CPU model (CPU) or the GPU's name (CUDA)
    torch_version: str
    method: Method
    device: Device

    def as_dict(self) -> dict[str, str]:
        return {"hardware": self.hardware, "torch": self.torch_version, "method": self.method.value,
                "device": self.device.value}


def pick_key(method: Method, device: Device) -> PickKey:
    """The key of this machine's pick for ``method`` on ``device`` (imports torch)."""
    import torch

    if device is Device.CUDA:
        hardware = torch.cuda.get_device_name()
    else:
        hardware = detect_bf16_support().model or "unknown CPU"
    return PickKey(hardware, torch.__version__, method, device)


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/spike-edge/precision-picks.json``, else under ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spike-edge" / CACHE_FILE


class PickCache:
    """The measured picks (see the module docstring), read on each access: small, and other processes write it."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = default_cache_path() if path is None else Path(path)

    def _entries(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("ignoring the precision cache %s: %s", self.path, exc)
            return []
        entries = data.get("entries") if isinstance(data, dict) and data.get("version") == CACHE_VERSION else None
        if not isinstance(entries, list):
            log.warning("ignoring the precision cache %s: not a version %d cache", self.path, CACHE_VERSION)
            return []
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("key"), dict)]

    def get(self, key: PickKey) -> Precision | None:
        """The cached pick for ``key``, or None."""
        for entry in self._entries():
            if entry["key"] == key.as_dict():
                try:
                    return Precision(entry.get("precision"))
                except ValueError:
                    return None
        return None

    def put(self, key: PickKey, precision: Precision, trials: Iterable[PrecisionTrial] = ()) -> Path:
        """Store ``precision`` for ``key`` (replacing its entry; the oldest dropped beyond ``MAX_CACHE_ENTRIES``)."""
        entries = [e for e in self._entries() if e["key"] != key.as_dict()]
        entries.append({"key": key.as_dict(), "precision": precision.value,
                        "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        "trials": [{**asdict(t), "precision": t.precision.value} for t in trials]})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": CACHE_VERSION, "entries": entries[-MAX_CACHE_ENTRIES:]}, indent=1) + "\n"
        return write_text_atomic(self.path, text)


def fallback_precision(method: Method, device: Device, cpu: CpuBf16Support) -> tuple[Precision, str]:
    """The written rule (see the module docstring) and the reason it gives."""
    if device is Device.CUDA:
        return Precision.FP16, "CUDA: fp16 with CUDA graphs (the rule without a measurement)"
    if not cpu.fast_bf16:
        return Precision.FP32, "this CPU has neither AVX512-BF16 nor AMX: bf16 would be slow"
    if method not in BF16_CPU_MEASURED:
        return Precision.FP32, (f"{method.value} bf16 is not measured both faster than fp32 and within "
                                f"{PICK_TOLERANCE_DB} dB of it (docs/precision.md)")
    return Precision.BF16, (f"the CPU has {'AMX' if cpu.amx else 'AVX512-BF16'} and {method.value} bf16 was measured "
                            f"faster than fp32 and within {PICK_TOLERANCE_DB} dB of it (docs/precision.md)")


def resolve_precision(method: Method, device: Device, *, allowed: Iterable[Precision] = tuple(Precision),
                      cache: PickCache | None = None, cpu: CpuBf16Support | None = None) -> tuple[Precision, str]:
    """What ``auto`` runs ``method`` on ``device`` in, among ``allowed`` (the backend's), and why."""
    allowed = [p for p in CANDIDATES[device] if p in set(allowed)]
    if allowed == [Precision.FP32]:
        return Precision.FP32, "the backend runs fp32 only"
    cpu = cpu or detect_bf16_support()
    if device is Device.CPU and not cpu.fast_bf16:
        allowed = [p for p in allowed if p is not Precision.BF16]  # never bf16 without its instructions
    key = pick_key(method, device)
    cached = (cache or PickCache()).get(key)
    if cached is not None and cached in allowed:
        return cached, (f"measured fastest within {PICK_TOLERANCE_DB} dB on {key.hardware} "
                        "(spike-edge bench reconstruct)")
    chosen, why = fallback_precision(method, device, cpu)
    if chosen not in allowed:
        return Precision.FP32, f"{why}, but the backend does not run {chosen.value}"
    return chosen, f"{why}; no measurement cached (run spike-edge bench reconstruct --method {method.value})"


__all__ = ["BF16_CPU_MEASURED", "CANDIDATES", "MAX_CACHE_ENTRIES", "PICK_TOLERANCE_DB", "PickCache", "PickKey",
           "PrecisionTrial", "default_cache_path", "fallback_precision", "pick_key", "pick_precision",
           "resolve_precision"]
