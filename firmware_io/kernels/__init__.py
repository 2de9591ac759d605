"""Native kernels: small C loops compiled on first use (``firmware_io.cbuild``), numpy otherwise.

``spike_count_bits()`` returns the C spike counter (see ``spikecount.c``) or ``None`` when it is
disabled (``SPIKE_EDGE_NATIVE=0``) or cannot be built here (no C compiler); callers then use their
numpy path, which computes the same numbers. Which one runs is logged once and reported by
``native_status()`` (``spike-edge bench decode`` prints it).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).resolve().parent / "spikecount.c"
_CFLAGS = ("-O3", "-std=c11", "-Wall", "-Wextra")
_lock = threading.Lock()
_state: dict[str, object] = {}


def _load() -> Callable | None:
    if os.environ.get("SPIKE_EDGE_NATIVE", "1") == "0":
        _state["status"] = "numpy (SPIKE_EDGE_NATIVE=0)"
        return None
    from firmware_io.cbuild import build_shared

    try:
        lib = ctypes.CDLL(str(build_shared("spikecount", [_SOURCE], _CFLAGS)))
    except (OSError, RuntimeError) as exc:  # no compiler, failed build or load
        _state["status"] = f"numpy (native kernel unavailable: {exc})"
        log.warning("spike counting falls back to numpy: %s", exc)
        return None
    fn = lib.spike_count_bits
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    _state["status"] = "native C"
    return fn


def spike_count_bits() -> Callable | None:
    if "fn" not in _state:
        with _lock:
            if "fn" not in _state:
                _state["fn"] = _load()
    return _state["fn"]  # type: ignore[return-value]


def native_status() -> str:
    spike_count_bits()
    return str(_state["status"])
