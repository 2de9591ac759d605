"""ctypes binding to the SpikeLink camera SDK (vendor library, or the fake one in ``fake_spikelink``).

The interface follows the facts file ("The camera SDK"): ``init(params*)``, ``setcallback(cb)``,
``open()``, ``start()``, ``stop()``, ``close()``, ``releaseFrame(frame*)``, ``getState()``. The
vendor header is not available, so the C side is declared in ``firmware_io/fake_spikelink/
spikelink.h`` and mirrored here (``InitParams``, ``Frame``); both follow the facts file, and field
order, widths, codes and symbol names are this project's choices. A real vendor build may need
``SYMBOLS`` and the structures adapted; the fake reports its struct layout so tests check the
mirror.

Closed sets are enums: ``LinkType``, ``SensorMode`` (geometry and native rate), ``PixelFormat``,
``DeviceState``, ``ErrorCode``.

``SpikeLinkLibrary(path)`` loads the library (``FileNotFoundError`` naming the path and the
``SPIKELINK_LIBRARY`` variable when absent); its methods call the C functions and return the
integer code (``check`` turns a non-zero code into ``SpikeLinkError``). Calls go through
``ctypes.CDLL``, which releases the GIL for the duration of each call, so the SDK's thread can run
Python callbacks meanwhile (``stop`` joins that thread).
"""

from __future__ import annotations

import ctypes
import enum
import os
from pathlib import Path

from firmware_io.contract import Geometry, SourceError

LIBRARY_ENV = "SPIKELINK_LIBRARY"
MAX_DATA_POINTERS = 4

#: Python name -> C symbol. Change here to bind a library that spells them differently.
SYMBOLS = {
    "init": "spikelink_init",
    "setcallback": "spikelink_set_callback",
    "open": "spikelink_open",
    "start": "spikelink_start",
    "stop": "spikelink_stop",
    "close": "spikelink_close",
    "releaseFrame": "spikelink_release_frame",
    "getState": "spikelink_get_state",
}


class LinkType(enum.IntEnum):
    PCIE = 0x20
    USB3 = 0x21
    THUNDERBOLT = 0x22
    ETHERNET = 0x23
    DUMMY_FILE = 0x24  # replay a .dat file


class SensorMode(enum.IntEnum):
    """Sensor modes; names are width x height as in the SDK description."""

    M400x250_20K = 0x1000
    M400x250_40K = 0x1001
    M1000x1000_20K = 0x2000
    M1000x1000_40K = 0x2001
    M2000x1000_20K = 0x3000
    M2000x1000_40K = 0x3001

    @property
    def geometry(self) -> Geometry:
        width, height = {0x1000: (400, 250), 0x2000: (1000, 1000), 0x3000: (2000, 1000)}[self.value & 0xF000]
        return Geometry(height, width)

    @property
    def rate_hz(self) -> float:
        return 40_000.0 if self.value & 0x1 else 20_000.0


class PixelFormat(enum.IntEnum):
    GRAY1 = 0x01  # 1 bit per pixel


class DeviceState(enum.IntEnum):
    CLOSED = 0
    INITIALIZED = 1
    OPENED = 2
    RUNNING = 3
    STOPPED = 4
    END_OF_FILE = 5
    DISCONNECTED = -1


class ErrorCode(enum.IntEnum):
    OK = 0
    INVALID_ARG = -1
    NO_DEVICE = -2
    IO = -3
    STATE = -4
    NO_MEMORY = -5


class InitParams(ctypes.Structure):
    """Mirror of ``sl_init_params``."""

    _fields_ = [
        ("link_type", ctypes.c_int32),
        ("mode", ctypes.c_int32),
        ("format", ctypes.c_int32),
        ("buffer_pool_size", ctypes.c_int32),
        ("planes_per_block", ctypes.c_int32),
        ("loop", ctypes.c_int32),
        ("rate_hz", ctypes.c_double),
        ("file_path", ctypes.c_char_p),
    ]


class Frame(ctypes.Structure):
    """Mirror of ``sl_frame``: ``data[0]`` holds ``cusum`` planes, ``size = W*H/8*cusum`` bytes."""

    _fields_ = [
        ("data", ctypes.POINTER(ctypes.c_uint8) * MAX_DATA_POINTERS),
        ("linesize", ctypes.c_int32 * MAX_DATA_POINTERS),
        ("size", ctypes.c_int64),
        ("width", ctypes.c_int32),
        ("height", ctypes.c_int32),
        ("cusum", ctypes.c_int32),
        ("format", ctypes.c_int32),
        ("pts", ctypes.c_int64),
        ("time_base_num", ctypes.c_int32),
        ("time_base_den", ctypes.c_int32),
    ]


FRAME_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.POINTER(Frame))


class SpikeLinkError(SourceError):
    """An SDK call returned an error code."""

    def __init__(self, call: str, code: int) -> None:
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = "UNKNOWN"
        super().__init__(f"SpikeLink {call}() failed with code {code} ({name})")
        self.call = call
        self.code = code


def resolve_library_path(library_path: str | os.PathLike | None = None) -> Path:
    """The library to load: the argument, else ``$SPIKELINK_LIBRARY``; it must exist."""
    if library_path is None:
        env = os.environ.get(LIBRARY_ENV)
        if not env:
            raise FileNotFoundError(
                f"no SpikeLink library given: pass library_path or set {LIBRARY_ENV} to the SDK's "
                f"shared library (or to the fake built by firmware_io.fake_spikelink.build_fake_spikelink())"
            )
        library_path = env
    path = Path(library_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"SpikeLink library not found at {path} (set by the library_path argument or {LIBRARY_ENV})"
        )
    return path


class SpikeLinkLibrary:
    """The loaded SDK: one method per C function, each returning the C return code."""

    def __init__(self, library_path: str | os.PathLike | None = None) -> None:
        self.path = resolve_library_path(library_path)
        try:
            self._lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise SourceError(f"cannot load SpikeLink library {self.path}: {exc}") from exc
        missing = [symbol for symbol in SYMBOLS.values() if not hasattr(self._lib, symbol)]
        if missing:
            raise SourceError(f"{self.path} is not a SpikeLink library: missing symbols {missing}")
        f = {name: getattr(self._lib, symbol) for name, symbol in SYMBOLS.items()}
        f["init"].argtypes = [ctypes.POINTER(InitParams)]
        f["setcallback"].argtypes = [FRAME_CALLBACK]
        f["releaseFrame"].argtypes = [ctypes.POINTER(Frame)]
        for name in ("open", "start", "stop", "close", "getState"):
            f[name].argtypes = []
        for fn in f.values():
            fn.restype = ctypes.c_int32
        self._f = f

    def init(self, params: InitParams) -> int:
        return int(self._f["init"](ctypes.byref(params)))

    def setcallback(self, callback) -> int:
        """``callback`` must be a ``FRAME_CALLBACK`` the caller keeps alive while the SDK may call it."""
        return int(self._f["setcallback"](callback))

    def open(self) -> int:
        return int(self._f["open"]())

    def start(self) -> int:
        return int(self._f["start"]())

    def stop(self) -> int:
        return int(self._f["stop"]())

    def close(self) -> int:
        return int(self._f["close"]())

    def releaseFrame(self, frame) -> int:  # noqa: N802 - the SDK's name
        return int(self._f["releaseFrame"](frame))

    def getState(self) -> int:  # noqa: N802 - the SDK's name
        return int(self._f["getState"]())

    def state(self) -> DeviceState | int:
        code = self.getState()
        try:
            return DeviceState(code)
        except ValueError:
            return code

    @staticmethod
    def check(call: str, code: int) -> None:
        if code != 0:
            raise SpikeLinkError(call, code)
