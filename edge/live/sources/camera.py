"""The SpikeLink camera (``--camera``): ``firmware_io.camera.CameraSource`` through the vendor SDK, live.

Link type and sensor mode are the enums of ``firmware_io.spikelink`` (spelled ``dummy-file``,
``400x250-40k`` on the command line). The mode fixes geometry and rate: ``--height``/``--width``/
``--rate-hz`` may be left out, and if given must agree with the mode (else a usage error). The
library is ``--camera-library``, else ``$SPIKELINK_LIBRARY``; a missing one is ``SourceUnavailable``
(exit code 3). ``--camera-file FILE`` replays a ``.dat`` of the mode's geometry through the SDK's
dummy-file link (implied by ``--camera-file``; ``--loop`` loops it); there ``--rate-hz`` is the
replay rate (default: the mode's).

When the camera vanishes, ``CameraSource`` reports ``ERROR`` once and reconnects with backoff, so
its errors are recoverable (``recoverable_errors``): the capture loop counts and reports them and
reads on. The outage's planes are a forward jump of the plane index (a source gap).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edge.live.options import Option, spellings, to_int, to_member, to_text
from edge.live.sources.base import BLOCK_PLANES, DEFAULT_BLOCK_PLANES, HEIGHT, LOOP, RATE_HZ, WIDTH, SourceConfig, SourceUnavailable
from firmware_io.contract import Geometry, SpikeSource
from firmware_io.spikelink import LIBRARY_ENV, LinkType, SensorMode

DEFAULT_CAMERA_BUFFER_POOL = 16  # SDK frames
DEFAULT_CAMERA_MODE = SensorMode.M400x250_40K


def link_name(link: LinkType) -> str:
    """The command-line spelling of a link type: ``DUMMY_FILE`` -> ``dummy-file``."""
    return link.name.lower().replace("_", "-")


def mode_name(mode: SensorMode) -> str:
    """The command-line spelling of a sensor mode (width x height, as the SDK names it): ``400x250-40k``."""
    return mode.name.removeprefix("M").lower().replace("_", "-")


def parse_camera_link(value: Any) -> LinkType:
    return to_member(value, "camera_link", LinkType, link_name)


def parse_camera_mode(value: Any) -> SensorMode:
    return to_member(value, "camera_mode", SensorMode, mode_name)


def parse_camera_library(value: Any) -> str:
    return to_text(value, "camera_library")


def parse_camera_file(value: Any) -> str:
    return to_text(value, "camera_file")


def parse_camera_buffer_pool(value: Any) -> int:
    """SDK frame buffers: an integer >= 1."""
    return to_int(value, "camera_buffer_pool", minimum=1)


CAMERA_LIBRARY = Option("camera_library", Path, parse_camera_library,
                        help=f"Path of the SpikeLink library (else ${LIBRARY_ENV}).")
CAMERA_LINK = Option("camera_link", str, parse_camera_link, choices=spellings(LinkType, link_name),
                     help="Camera link (default pcie; dummy-file with --camera-file).")
CAMERA_MODE = Option("camera_mode", str, parse_camera_mode, choices=spellings(SensorMode, mode_name),
                     default=mode_name(DEFAULT_CAMERA_MODE), show_default=True,
                     help="Sensor mode, width x height and rate; sets geometry and rate.")
CAMERA_FILE = Option("camera_file", Path, parse_camera_file,
                     help="A .dat of the mode's geometry replayed by the dummy-file link.")
CAMERA_BUFFER_POOL = Option("camera_buffer_pool", int, parse_camera_buffer_pool, default=DEFAULT_CAMERA_BUFFER_POOL,
                            show_default=True, help="SDK frame buffers (each holds --block-planes planes).")


@dataclass(frozen=True)
class CameraConfig(SourceConfig):
    """The camera, its link and mode (see the module docstring).

    ``rate_hz``: for the dummy-file link the replay rate (any positive rate); for a real link the
    mode's rate. None (the default) is the mode's rate.
    """

    SELECTOR: ClassVar[Option] = Option("camera", bool, None, help="Read the SpikeLink camera (needs the vendor library).")
    OPTIONS: ClassVar[tuple[Option, ...]] = (CAMERA_LIBRARY, CAMERA_LINK, CAMERA_MODE, CAMERA_FILE, CAMERA_BUFFER_POOL,
                                             RATE_HZ, LOOP, HEIGHT, WIDTH, BLOCK_PLANES)
    NOTES: ClassVar[dict[str, str]] = {
        "rate_hz": "camera: the mode's rate (must agree), or the dummy file's replay rate",
        "height": "camera: set by the mode",
        "width": "camera: set by the mode",
        "loop": "the camera's dummy file",
    }
    recoverable_errors: ClassVar[bool] = True

    camera_mode: SensorMode = DEFAULT_CAMERA_MODE
    camera_link: LinkType = LinkType.PCIE
    camera_file: str | None = None  # the .dat the dummy-file link replays; only with that link
    camera_library: str | None = None  # None: $SPIKELINK_LIBRARY
    camera_buffer_pool: int = DEFAULT_CAMERA_BUFFER_POOL
    block_planes: int = DEFAULT_BLOCK_PLANES  # the SDK's planes per block
    rate_hz: float | None = None
    loop: bool = False  # loop the dummy file

    def __post_init__(self) -> None:
        mode, link, dummy = mode_name(self.camera_mode), link_name(self.camera_link), self.dummy
        if dummy and self.camera_file is None:
            raise ValueError("--camera-link dummy-file replays a file: give --camera-file FILE.dat")
        if not dummy and self.camera_file is not None:
            raise ValueError(f"--camera-file is replayed by the dummy-file link, not --camera-link {link}")
        if self.loop and not dummy:
            raise ValueError(f"--loop applies to the dummy-file link (--camera-file), not {link}")
        if self.rate_hz is None:
            object.__setattr__(self, "rate_hz", self.camera_mode.rate_hz)
        elif not dummy and self.rate_hz != self.camera_mode.rate_hz:
            raise ValueError(f"--rate-hz {self.rate_hz:g} disagrees with --camera-mode {mode} "
                             f"({self.camera_mode.rate_hz:.0f} Hz); leave it out, the mode sets the rate")

    @classmethod
    def from_options(cls, selected: bool, *, camera_library: str | None, camera_link: LinkType | None,
                     camera_mode: SensorMode, camera_file: str | None, camera_buffer_pool: int, rate_hz: float | None,
                     loop: bool, height: int | None, width: int | None, block_planes: int) -> CameraConfig:
        geometry = camera_mode.geometry
        if (height is not None and height != geometry.height) or (width is not None and width != geometry.width):
            raise ValueError(
                f"--height {height if height is not None else '-'} / --width {width if width is not None else '-'} "
                f"disagree with --camera-mode {mode_name(camera_mode)} ({geometry.height}x{geometry.width} HxW); "
                f"leave them out, the mode sets the geometry")
        if camera_link is None:
            camera_link = LinkType.DUMMY_FILE if camera_file is not None else LinkType.PCIE
        return cls(camera_mode=camera_mode, camera_link=camera_link, camera_file=camera_file,
                   camera_library=camera_library, camera_buffer_pool=camera_buffer_pool, block_planes=block_planes,
                   rate_hz=rate_hz, loop=loop)

    @property
    def dummy(self) -> bool:
        """The dummy-file link: a ``.dat`` replayed through the SDK."""
        return self.camera_link is LinkType.DUMMY_FILE

    @property
    def live(self) -> bool:
        return True

    def library_path(self) -> str | None:
        """The camera library to load: ``camera_library``, else ``$SPIKELINK_LIBRARY`` (None: neither)."""
        return self.camera_library or os.environ.get(LIBRARY_ENV) or None

    def label(self) -> str:
        where = f" {self.camera_file}" if self.camera_file else ""
        return f"{link_name(self.camera_link)} {mode_name(self.camera_mode)}{where} (library {self.library_path()})"

    def preflight(self) -> None:
        """The camera library must exist (the message names the path and ``$SPIKELINK_LIBRARY``)."""
        path = self.library_path()
        if path is None:
            raise SourceUnavailable(f"no SpikeLink camera library: give --camera-library PATH or set {LIBRARY_ENV} "
                                    f"to the SDK's shared library")
        if not os.path.isfile(path):
            origin = "--camera-library" if self.camera_library else f"${LIBRARY_ENV}"
            raise SourceUnavailable(f"SpikeLink camera library not found: {path} (from {origin}); give "
                                    f"--camera-library PATH or set {LIBRARY_ENV} to the SDK's shared library")

    def geometry(self) -> Geometry:
        """The mode's geometry; the dummy link's file must hold whole planes of it."""
        geometry = self.camera_mode.geometry
        if self.camera_file is not None:
            if not os.path.isfile(self.camera_file):
                raise FileNotFoundError(f"dummy-link spike file not found: {self.camera_file}")
            size = os.path.getsize(self.camera_file)
            if size == 0 or size % geometry.plane_bytes:
                raise ValueError(f"{self.camera_file} is {size} bytes, not a whole number of "
                                 f"{geometry.plane_bytes}-byte planes of camera mode {mode_name(self.camera_mode)}")
        return geometry

    def describe(self) -> dict[str, Any]:
        geometry = self.camera_mode.geometry
        return {**super().describe(), "camera_link": link_name(self.camera_link),
                "camera_mode": mode_name(self.camera_mode), "height": geometry.height, "width": geometry.width}

    def open(self) -> SpikeSource:
        try:
            from firmware_io.camera import CameraSource
        except ImportError as exc:
            raise SourceUnavailable(f"the SpikeLink camera support is not available: {exc}") from exc
        return CameraSource(self.library_path(), link=self.camera_link, mode=self.camera_mode,
                            planes_per_block=self.block_planes, buffer_pool_size=self.camera_buffer_pool,
                            file_path=self.camera_file, loop=self.loop,
                            replay_rate_hz=self.rate_hz if self.dummy else 0.0)
