"""ctypes binding to the vendor's SpikeLink camera library (``spikelinkapi.so``), exactly as published.

The ABI is the one the facts file states ("The camera SDK (SpikeLink): the vendor ABI as published"),
rendered as C in ``firmware_io/fake_spikelink/spikelinkapi.h``: the exported functions ``SYMBOLS``
with their C signatures, the structures below field by field (natural alignment, no packing), and the
codes as enums (``LinkType``, ``SensorMode``, ``PixelFormat``, ``ChannelMode``). The Python entry
points of the library are bound (``CreateSpikeLinkInputPython`` and ``SetCallbackPython``), not the
C++ ``CreateSpikeLinkInput(params, observer)`` ones. ``SaveFile`` exists in SpikeCV's wrapper only
and is not bound: recording is this project's own.

What the published sources leave open is never guessed:

- ``SpikeLinkInitParams``: SpikeCV's wrapper (what ran against shipping cameras) has ``cusum``
  (planes per delivered frame) after ``buff_size``; the vendor header's copy, older, lacks it.
  Nothing outside a library build tells which layout it was compiled with, so it is a setting,
  ``InitParamsLayout`` (default ``wrapper``, as the facts direct); ``firmware_io.camera`` reports a
  frame size that contradicts the requested ``cusum`` as this unknown, naming the setting.
- The USB link's init structure (and those of Thunderbolt and Ethernet) is not published:
  ``link_params_type`` raises ``UnknownAbiError`` naming it, for any link but PCIe and dummy.
- ``GetState()``'s values and the codes behind a non-zero return of ``Init``/``Open``/``Start`` are
  not published: they are reported as the numbers the library returned, never interpreted.
  Zero is taken as success, as the wrapper's callers do.

``SpikeLinkLibrary(path)`` loads the library (``FileNotFoundError`` naming the path and the
``SPIKELINK_LIBRARY`` variable when absent; ``SourceError`` naming any missing symbol) and binds
every symbol with its exact signature. Calls go through ``ctypes.CDLL``, which releases the GIL for
the duration of each call, so the library's thread can run the Python callback meanwhile (``Stop``
joins that thread). ``__stdcall`` (MSVC builds) only matters on 32-bit Windows, where
``ctypes.WinDLL`` would be needed; this binding targets 64-bit Linux and Windows.
"""

from __future__ import annotations

import ctypes
import enum
import os
from fractions import Fraction
from pathlib import Path

from firmware_io.contract import Geometry, SourceError
from firmware_io.layouts import Layout

LIBRARY_ENV = "SPIKELINK_LIBRARY"
NAME_BYTES = 256  # devName / fileName
DEFAULT_CUSUM = 50  # planes per delivered frame, as SpikeCV asks the 1000x1000 camera
MAX_FRAME_BYTES = 2**31 - 1  # SpikeLinkVideoFrame.size is an int32

#: The exported C functions the binding loads: the vendor's names, nothing else.
SYMBOLS = ("CreateSpikeLinkInputPython", "Init", "SetCallbackPython", "Open", "Start", "Stop", "Close", "IsOpen",
           "GetState", "ReleaseFrame", "Fini")


class LinkType(enum.IntEnum):
    """``SpikeLinkInitParams.type``."""

    PCIE = 0x20
    USB = 0x21
    THUNDERBOLT = 0x22
    ETHERNET = 0x23
    DUMMY_FILE = 0x24  # the library replays a file itself (SpikeLinkDummyInitParams)


class SensorMode(enum.IntEnum):
    """``SpikeLinkInitParams.mode``: names are width x height and plane rate, as the SDK lists them."""

    M400x250_20K = 0x1000
    M400x250_40K = 0x1001
    M1000x1000_20K = 0x2000
    M1000x1000_40K = 0x2001
    M2000x1000_20K = 0x3000
    M2000x1000_40K = 0x3001
    UNKNOWN = 0x8000  # listed by the SDK, with no geometry: not selectable

    @property
    def known(self) -> bool:
        return self is not SensorMode.UNKNOWN

    @property
    def geometry(self) -> Geometry:
        if not self.known:
            raise ValueError(f"sensor mode {self.name} (0x{self.value:x}) has no published geometry")
        width, height = {0x1000: (400, 250), 0x2000: (1000, 1000), 0x3000: (2000, 1000)}[self.value & 0xF000]
        return Geometry(height, width)

    @property
    def rate_hz(self) -> float:
        if not self.known:
            raise ValueError(f"sensor mode {self.name} (0x{self.value:x}) has no published rate")
        return 40_000.0 if self.value & 0x1 else 20_000.0

    @property
    def layout(self) -> Layout:
        """How this mode's frames lay out planes: PCIe 1K rows for the 1000x1000 modes (the facts: modes
        0x2000/0x2001 deliver them), the .dat convention otherwise (not stated for 400x250 and 2000x1000)."""
        return Layout.PCIE1K if self.value & 0xF000 == 0x2000 else Layout.DAT


class PixelFormat(enum.IntEnum):
    """Pixel formats the facts name (the codes between GRAY8 and ARGB are not listed)."""

    GRAY1 = 0x00010000  # 1 bit per pixel: spike planes
    GRAY8 = 0x00010001
    ARGB = 0x00010008


class ChannelMode(enum.IntEnum):
    """``SpikeLinkQSFPInitParams.channelMode``."""

    READ = 0
    SEND = 1
    BOTH = 2


class InitParamsLayout(str, enum.Enum):
    """Which ``SpikeLinkInitParams`` a library build was compiled with (the one ABI fact left open)."""

    WRAPPER = "wrapper"  # SpikeCV's wrapper: with ``cusum`` (the default, as the facts direct)
    HEADER = "header"  # the vendor header's older copy: no ``cusum``; the library picks planes per frame


class SVRational(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int64), ("den", ctypes.c_int64)]


class SVPicture(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_int32),  # the decode width: 1024 for the 1000x1000 camera
        ("height", ctypes.c_int32),
        ("format", ctypes.c_uint32),
        ("fps", SVRational),
        ("time_base", SVRational),
    ]


class SpikeLinkInitParams(ctypes.Structure):
    """The wrapper's layout (with ``cusum``)."""

    _fields_ = [
        ("opaque", ctypes.c_void_p),  # -> SpikeLinkQSFPInitParams or SpikeLinkDummyInitParams
        ("type", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("format", ctypes.c_uint32),
        ("buff_size", ctypes.c_int32),
        ("cusum", ctypes.c_int32),
        ("picture", SVPicture),
    ]


class SpikeLinkInitParamsNoCusum(ctypes.Structure):
    """The vendor header's older layout (no ``cusum``)."""

    _fields_ = [
        ("opaque", ctypes.c_void_p),
        ("type", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("format", ctypes.c_uint32),
        ("buff_size", ctypes.c_int32),
        ("picture", SVPicture),
    ]


class SpikeLinkQSFPInitParams(ctypes.Structure):
    """The PCIe link's structure."""

    _fields_ = [
        ("devName", ctypes.c_int8 * NAME_BYTES),
        ("channels", ctypes.c_int32),  # 0..3
        ("channelMode", ctypes.c_int32),  # ChannelMode
    ]


class SpikeLinkDummyInitParams(ctypes.Structure):
    """The dummy link's structure (0x24: the library replays ``fileName``)."""

    _fields_ = [
        ("fileName", ctypes.c_char * NAME_BYTES),
        ("fps", SVRational),
        ("duration", ctypes.c_int64),
        ("skip", ctypes.c_int32),
        ("start", ctypes.c_int32),
        ("end", ctypes.c_int32),
        ("repeat", ctypes.c_bool),
    ]


class SpikeLinkVideoFrame(ctypes.Structure):
    """One delivered frame: ``data[0]`` holds ``size`` bytes, ``cusum`` planes of ``height x width`` bits."""

    _fields_ = [
        ("data", ctypes.POINTER(ctypes.c_uint8) * 3),
        ("linesize", ctypes.c_int32 * 3),
        ("format", ctypes.c_int32),
        ("size", ctypes.c_int32),
        ("width", ctypes.c_int32),
        ("height", ctypes.c_int32),
        ("pts", ctypes.c_int64),  # pts * cusum: the index of the frame's first plane
        ("dts", ctypes.c_int64),
        ("duration", ctypes.c_int64),
        ("time_base", SVRational),
        ("opaque", ctypes.c_void_p),
    ]


#: Every structure of the ABI (tests compare each with the C compiler's layout).
STRUCTURES = (SVRational, SVPicture, SpikeLinkInitParams, SpikeLinkInitParamsNoCusum, SpikeLinkQSFPInitParams,
              SpikeLinkDummyInitParams, SpikeLinkVideoFrame)

INIT_PARAMS_TYPES = {InitParamsLayout.WRAPPER: SpikeLinkInitParams, InitParamsLayout.HEADER: SpikeLinkInitParamsNoCusum}

#: ``void (*cb)(void* frame)``: ``frame`` is a ``SpikeLinkVideoFrame*``.
FRAME_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class UnknownAbiError(SourceError):
    """A part of the vendor ABI that the published sources do not state (the USB link's init structure)."""


class SpikeLinkError(SourceError):
    """A library call returned a non-zero code (its meaning is not published: the number is quoted)."""

    def __init__(self, call: str, code: int, hint: str = "") -> None:
        super().__init__(f"SpikeLink {call}() returned {code}{f'; {hint}' if hint else ''}")
        self.call = call
        self.code = code


def link_params_type(link: LinkType) -> type[ctypes.Structure]:
    """The structure ``SpikeLinkInitParams.opaque`` points to for ``link``; ``UnknownAbiError`` where unpublished."""
    if link is LinkType.PCIE:
        return SpikeLinkQSFPInitParams
    if link is LinkType.DUMMY_FILE:
        return SpikeLinkDummyInitParams
    detail = (" (SpikeCV sets openByParam = \"000000000001\", type = 2, packetSize = 262144, queueSize = 16 on it, "
              "but neither the vendor header nor the wrapper gives its layout)") if link is LinkType.USB else ""
    raise UnknownAbiError(
        f"the init structure of the {link.name} link (type 0x{link.value:x}) is not published{detail}; this binding "
        f"will not guess it: use the PCIe link (0x20) or the dummy file link (0x24)")


def rational(value: float, max_den: int = 1_000_000) -> SVRational:
    """A rate as ``SVRational`` (``20000.0`` -> 20000/1)."""
    fraction = Fraction(value).limit_denominator(max_den)
    return SVRational(fraction.numerator, fraction.denominator)


def qsfp_params(device_name: str, channels: int = 0, channel_mode: ChannelMode = ChannelMode.READ) -> SpikeLinkQSFPInitParams:
    """``SpikeLinkQSFPInitParams`` for the PCIe device ``device_name`` (``ValueError`` for a bad field)."""
    name = os.fsencode(device_name)
    if len(name) >= NAME_BYTES or b"\0" in name:
        raise ValueError(f"PCIe device name must be under {NAME_BYTES} bytes without NUL, got {device_name!r}")
    if not 0 <= channels <= 3:
        raise ValueError(f"PCIe channels must be 0..3, got {channels!r}")
    params = SpikeLinkQSFPInitParams(channels=channels, channelMode=int(ChannelMode(channel_mode)))
    ctypes.memmove(params.devName, name, len(name))
    return params


def dummy_params(file_name: str | os.PathLike, fps: SVRational, repeat: bool) -> SpikeLinkDummyInitParams:
    """``SpikeLinkDummyInitParams`` as SpikeCV fills them (``duration = skip = start = end = 0``)."""
    name = os.fsencode(file_name)
    if len(name) >= NAME_BYTES or b"\0" in name:
        raise ValueError(f"the dummy link's file name must be under {NAME_BYTES} bytes, got {str(file_name)!r} "
                         f"({len(name)} bytes): move the file to a shorter path")
    return SpikeLinkDummyInitParams(fileName=name, fps=fps, duration=0, skip=0, start=0, end=0, repeat=bool(repeat))


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
    """The loaded library: one method per exported function, named and typed as the C symbol."""

    def __init__(self, library_path: str | os.PathLike | None = None, *,
                 init_layout: InitParamsLayout = InitParamsLayout.WRAPPER) -> None:
        self.path = resolve_library_path(library_path)
        self.init_layout = InitParamsLayout(init_layout)
        try:
            self._lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise SourceError(f"cannot load SpikeLink library {self.path}: {exc}") from exc
        missing = [symbol for symbol in SYMBOLS if not hasattr(self._lib, symbol)]
        if missing:
            raise SourceError(f"{self.path} is not the SpikeLink library: it does not export {', '.join(missing)}")
        handle, i32 = ctypes.c_void_p, ctypes.c_int32
        signatures = {
            "CreateSpikeLinkInputPython": (handle, []),
            "Init": (i32, [handle, ctypes.POINTER(INIT_PARAMS_TYPES[self.init_layout])]),
            "SetCallbackPython": (None, [handle, FRAME_CALLBACK]),
            "Open": (i32, [handle]),
            "Start": (i32, [handle]),
            "Stop": (i32, [handle]),
            "Close": (i32, [handle]),
            "IsOpen": (ctypes.c_bool, [handle]),
            "GetState": (i32, [handle]),
            "ReleaseFrame": (None, [handle, handle]),
            "Fini": (None, [handle]),
        }
        for symbol, (restype, argtypes) in signatures.items():
            function = getattr(self._lib, symbol)
            function.restype, function.argtypes = restype, argtypes
            setattr(self, symbol, function)

    @staticmethod
    def check(call: str, code: int, hint: str = "") -> None:
        """``SpikeLinkError`` quoting ``code`` when it is not zero."""
        if code != 0:
            raise SpikeLinkError(call, int(code), hint)
