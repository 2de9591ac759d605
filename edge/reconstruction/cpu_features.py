"""What this CPU offers bf16 networks: AVX512-BF16 and AMX, read from ``/proc/cpuinfo`` and torch.

``bf16_support(cpuinfo_text, torch_capability)`` is a pure function of the ``/proc/cpuinfo`` text
and of ``torch.backends.cpu.get_cpu_capability()`` (``"AVX512"``, ``"AMX"``, ...; None without
torch); ``detect_bf16_support()`` reads both on this machine. ``spike-edge doctor``, the benchmarks'
environment and ``--precision auto`` (``edge.reconstruction.precision``) all ask here.

``fast_bf16`` is what ``auto`` needs: AVX512-BF16 (``avx512_bf16``: bf16 dot products in AVX-512) or
AMX (``amx_bf16`` with ``amx_tile``: tile matrix multiplies), which oneDNN uses for bf16
convolutions. Without them bf16 still runs, on slower fallback paths: usually slower than fp32.

Design: flags come from ``/proc/cpuinfo`` (Linux; elsewhere the text is empty and nothing is
reported) rather than from torch alone: torch's capability string names the vector ISA its kernels
were dispatched to, not whether the CPU has the bf16 instructions oneDNN picks at run time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuBf16Support:
    model: str | None  # "model name" of the first processor
    avx512_bf16: bool
    amx_bf16: bool
    amx_tile: bool
    torch_capability: str | None  # torch.backends.cpu.get_cpu_capability(); None without torch

    @property
    def amx(self) -> bool:
        return self.amx_bf16 and self.amx_tile

    @property
    def fast_bf16(self) -> bool:
        """bf16 convolutions run on bf16 instructions here (AVX512-BF16 or AMX), not emulated."""
        return self.avx512_bf16 or self.amx

    def summary(self) -> str:
        found = [name for name, present in (("avx512_bf16", self.avx512_bf16), ("amx_bf16", self.amx_bf16),
                                            ("amx_tile", self.amx_tile)) if present]
        torch_part = f"; torch kernels {self.torch_capability}" if self.torch_capability else ""
        if not found:
            return f"no AVX512-BF16 or AMX: bf16 runs emulated (slow){torch_part}"
        return f"{', '.join(found)}: fast bf16{torch_part}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fast_bf16": self.fast_bf16}


def parse_cpuinfo(text: str) -> tuple[str | None, frozenset[str]]:
    """The first processor's model name and its flags, from ``/proc/cpuinfo`` text (empty text: ``None``, no flags)."""
    model: str | None = None
    flags: frozenset[str] = frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip() or None
        elif key in ("flags", "Features") and not flags:  # x86 / arm64 spellings
            flags = frozenset(value.split())
    return model, flags


def bf16_support(cpuinfo_text: str, torch_capability: str | None) -> CpuBf16Support:
    """What the CPU described by ``cpuinfo_text`` offers bf16 (see the module docstring)."""
    model, flags = parse_cpuinfo(cpuinfo_text)
    return CpuBf16Support(model=model, avx512_bf16="avx512_bf16" in flags, amx_bf16="amx_bf16" in flags,
                          amx_tile="amx_tile" in flags, torch_capability=torch_capability)


def torch_cpu_capability() -> str | None:
    """``torch.backends.cpu.get_cpu_capability()``, or None where torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return str(torch.backends.cpu.get_cpu_capability())


def detect_bf16_support(cpuinfo: Path = CPUINFO) -> CpuBf16Support:
    """``bf16_support`` of this machine (no ``/proc/cpuinfo``: no flags, no model)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    return bf16_support(text, torch_cpu_capability())


__all__ = ["CPUINFO", "CpuBf16Support", "bf16_support", "detect_bf16_support", "parse_cpuinfo", "torch_cpu_capability"]
