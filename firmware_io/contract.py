"""The spike data contract: the one definition of what flows out of every source.

Everything upstream of reconstruction speaks these types: file readers, the simulator, the vendor
camera, the replay source and the ring-buffer reader.

Invariants
----------
- A *plane* is one readout of the whole pixel array: ``height * width`` bits, at most
  ``MAX_PLANE_PIXELS``.
- *Packed* planes are stored exactly as the camera writes them (camera order): pixel ``p`` of the
  stored plane is bit ``p % 8`` of byte ``p // 8`` (least-significant bit first), rows stored
  bottom-up (the image is upside down), ``ceil(height * width / 8)`` bytes per plane. Packed arrays
  are ``uint8`` of shape ``(n_planes, plane_bytes)``. Unpacking (``firmware_io.bitpack``) returns
  planes the right way up.
- Plane indices are integers counted from the first plane of the stream; ranges are half-open
  ``[start, stop)``. Within one source, block indices only increase; a block may be empty
  (``n_planes == 0``) but is never ``None`` when the status is ``OK``.
- Times are integer nanoseconds of ``time.monotonic_ns()`` (``*_ns`` names); rates are floats in Hz.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

DEFAULT_HEIGHT = 250
DEFAULT_WIDTH = 400
DEFAULT_RATE_HZ = 40_000.0
#: The largest plane any part of the stack accepts: 2**26 pixels (8192x8192; the Vidar camera has
#: 100,000). A geometry beyond it is refused where it enters, before anything is sized from it.
MAX_PLANE_PIXELS = 1 << 26


class FormatError(ValueError):
    """Raw spike data that does not have the layout it claims (truncated, wrong size, bad fields)."""


class SourceError(RuntimeError):
    """A live source failed in a way the caller should report (camera vanished, SDK error)."""


@dataclass(frozen=True)
class Geometry:
    """Size of one plane in pixels."""

    height: int
    width: int

    def __post_init__(self) -> None:
        for name, value in (("height", self.height), ("width", self.width)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        pixels = int(self.height) * int(self.width)
        if pixels > MAX_PLANE_PIXELS:
            raise ValueError(
                f"a {self.height}x{self.width} plane has {pixels:,} pixels; at most "
                f"{MAX_PLANE_PIXELS:,} (e.g. 8192x8192) are supported"
            )

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def plane_bytes(self) -> int:
        """Bytes of one packed plane (a trailing partial byte is padded with zero bits)."""
        return (self.pixels + 7) // 8

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def __str__(self) -> str:
        return f"{self.height}x{self.width}"


DEFAULT_GEOMETRY = Geometry(DEFAULT_HEIGHT, DEFAULT_WIDTH)


class ReadStatus(enum.Enum):
    """Outcome of one ``read`` on a source."""

    OK = "ok"
    TIMEOUT = "timeout"
    END_OF_STREAM = "end-of-stream"
    ERROR = "error"


@dataclass(frozen=True)
class SpikeBlock:
    """Consecutive packed planes ``[first_plane, first_plane + n_planes)`` of one stream.

    ``capture_t_ns`` is when the block was handed over by the sensor side (the camera callback, the
    replay schedule or the simulator), on the ``time.monotonic_ns`` clock.
    """

    first_plane: int
    planes: np.ndarray
    capture_t_ns: int

    def __post_init__(self) -> None:
        if self.planes.ndim != 2 or self.planes.dtype != np.uint8:
            raise ValueError(
                f"packed planes must be uint8 of shape (n_planes, plane_bytes), "
                f"got {self.planes.dtype} {self.planes.shape}"
            )
        if self.first_plane < 0:
            raise ValueError(f"first_plane must be >= 0, got {self.first_plane}")

    @property
    def n_planes(self) -> int:
        return int(self.planes.shape[0])

    @property
    def stop_plane(self) -> int:
        return self.first_plane + self.n_planes


@dataclass(frozen=True)
class Read:
    """What a source returns from ``read``: a status and, when the status is OK, a block."""

    status: ReadStatus
    block: SpikeBlock | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if (self.status is ReadStatus.OK) != (self.block is not None):
            raise ValueError("a Read carries a block exactly when its status is OK")


@runtime_checkable
class SpikeSource(Protocol):
    """The protocol every source follows (replay, simulator, camera, ring-buffer reader)."""

    geometry: Geometry
    rate_hz: float

    def read(self, timeout_s: float | None = None) -> Read: ...

    def close(self) -> None: ...

    def __enter__(self) -> "SpikeSource": ...

    def __exit__(self, *exc: object) -> None: ...

    def __iter__(self) -> Iterator[SpikeBlock]: ...


@dataclass
class SourceBase:
    """Shared plumbing for sources: context manager and iteration over ``read``.

    Iteration yields blocks until end-of-stream, skips timeouts, and raises ``SourceError`` on an
    error status, so simple consumers can write ``for block in source``; live consumers call
    ``read`` and act on each status themselves.
    """

    geometry: Geometry
    rate_hz: float = DEFAULT_RATE_HZ
    closed: bool = field(default=False, init=False)

    def read(self, timeout_s: float | None = None) -> Read:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[SpikeBlock]:
        while True:
            result = self.read(timeout_s=1.0)
            if result.status is ReadStatus.OK:
                assert result.block is not None
                yield result.block
            elif result.status is ReadStatus.END_OF_STREAM:
                return
            elif result.status is ReadStatus.ERROR:
                raise SourceError(result.message or "source reported an error")


def now_ns() -> int:
    """The contract's clock: ``time.monotonic_ns``."""
    return time.monotonic_ns()
