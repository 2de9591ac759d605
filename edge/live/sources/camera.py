"""The SpikeLink camera (``--camera``): ``firmware_io.camera.CameraSource`` over the vendor library, live.

Its options map onto the library's init parameters (``firmware_io.spikelink``), each an enum or a
checked number:

- ``--camera-link`` (``SpikeLinkInitParams.type``): ``pcie`` or ``dummy-file`` (the library replays a
  file itself; implied by ``--camera-file``). ``usb``, ``thunderbolt`` and ``ethernet`` are usage
  errors naming the unknown: their init structures are not published.
- ``--camera-mode`` (``mode``): geometry and rate, spelled width x height as the SDK does
  (``400x250-40k``). ``--height``/``--width``/``--rate-hz`` may be left out, and if given must agree
  (for the dummy link ``--rate-hz`` is the replay rate, ``SpikeLinkDummyInitParams.fps``).
- ``--camera-device`` (PCIe ``devName``) and ``--camera-channels`` (``channels``, 0..3; the channel
  mode is always read).
- ``--camera-cusum`` (planes per delivered frame: the capture block), ``--camera-buffer-pool``
  (``buff_size``, frames in the library's pool).
- ``--camera-layout``: how frames lay out planes (``firmware_io.layouts.Layout``); default the
  mode's (PCIe 1K rows for 1000x1000, the .dat convention otherwise).
- ``--camera-init-params``: ``wrapper`` (``SpikeLinkInitParams`` with ``cusum``, the default) or
  ``header`` (a library built from the older header, without it): not published per build.

The library is ``--camera-library``, else ``$SPIKELINK_LIBRARY``; a missing one is ``SourceUnavailable``
(exit code 3). ``--loop`` sets the dummy link's ``repeat``.

When the camera vanishes, ``CameraSource`` reports ``ERROR`` once and reconnects with backoff, so
its errors are recoverable (``recoverable_errors``): the capture loop counts and reports them and
reads on. The outage's planes are a forward jump of the plane index (a source gap). What the
library said (``IsOpen``, ``GetState``'s number, its last error) is the opened source's ``status()``,
which the daemon's ``health`` and ``describe`` report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edge.live.options import Option, spellings, to_int, to_member, to_text
from edge.live.sources.base import HEIGHT, LOOP, RATE_HZ, WIDTH, SourceConfig, SourceUnavailable
from firmware_io.contract import Geometry, SpikeSource
from firmware_io.layouts import Layout, layout_geometry, stored_plane_bytes
from firmware_io.spikelink import (
    DEFAULT_CUSUM,
    LIBRARY_ENV,
    InitParamsLayout,
    MAX_FRAME_BYTES,
    LinkType,
    SensorMode,
    UnknownAbiError,
    link_params_type,
)

DEFAULT_CAMERA_BUFFER_POOL = 16  # library frames
DEFAULT_CAMERA_CUSUM = DEFAULT_CUSUM  # planes per frame, as SpikeCV asks the 1000x1000 camera
DEFAULT_CAMERA_MODE = SensorMode.M400x250_40K
SELECTABLE_MODES = tuple(mode for mode in SensorMode if mode.known)


def link_name(link: LinkType) -> str:
    """The command-line spelling of a link type: ``DUMMY_FILE`` -> ``dummy-file``."""
    return link.name.lower().replace("_", "-")


def mode_name(mode: SensorMode) -> str:
    """The command-line spelling of a sensor mode (width x height, as the SDK names it): ``400x250-40k``."""
    return mode.name.removeprefix("M").lower().replace("_", "-")


def parse_camera_link(value: Any) -> LinkType:
    return to_member(value, "camera_link", LinkType, link_name)


def parse_camera_mode(value: Any) -> SensorMode:
    return to_member(value, "camera_mode", SELECTABLE_MODES, mode_name)


def parse_camera_library(value: Any) -> str:
    return to_text(value, "camera_library")


def parse_camera_file(value: Any) -> str:
    return to_text(value, "camera_file")


def parse_camera_device(value: Any) -> str:
    """The PCIe device name (``devName``): text of at most 255 bytes."""
    name = to_text(value, "camera_device")
    if len(os.fsencode(name)) > 255:
        raise ValueError(f"camera_device must be at most 255 bytes, got {value!r}")
    return name


def parse_camera_channels(value: Any) -> int:
    """``SpikeLinkQSFPInitParams.channels``: 0..3."""
    channels = to_int(value, "camera_channels", minimum=0)
    if channels > 3:
        raise ValueError(f"camera_channels must be 0..3, got {value!r}")
    return channels


def parse_camera_cusum(value: Any) -> int:
    """Planes per delivered frame: an integer >= 1."""
    return to_int(value, "camera_cusum", minimum=1)


def parse_camera_buffer_pool(value: Any) -> int:
    """Library frame buffers: an integer >= 1."""
    return to_int(value, "camera_buffer_pool", minimum=1)


def parse_camera_layout(value: Any) -> Layout:
    return to_member(value, "camera_layout", Layout)


def parse_camera_init_params(value: Any) -> InitParamsLayout:
    return to_member(value, "camera_init_params", InitParamsLayout)


CAMERA_LIBRARY = Option("camera_library", Path, parse_camera_library,
                        help=f"Path of the SpikeLink library (else ${LIBRARY_ENV}).")
CAMERA_LINK = Option("camera_link", str, parse_camera_link, choices=spellings(LinkType, link_name),
                     help="Camera link (default pcie; dummy-file with --camera-file; usb, thunderbolt and ethernet "
                          "have unpublished init structures).")
CAMERA_MODE = Option("camera_mode", str, parse_camera_mode, choices=spellings(SELECTABLE_MODES, mode_name),
                     default=mode_name(DEFAULT_CAMERA_MODE), show_default=True,
                     help="Sensor mode, width x height and rate; sets geometry and rate.")
CAMERA_DEVICE = Option("camera_device", str, parse_camera_device,
                       help="PCIe device name (the library's devName) of the camera.")
CAMERA_CHANNELS = Option("camera_channels", int, parse_camera_channels, default=0, show_default=True,
                         help="PCIe channels field (0..3) of the library's QSFP parameters.")
CAMERA_CUSUM = Option("camera_cusum", int, parse_camera_cusum, default=DEFAULT_CAMERA_CUSUM, show_default=True,
                      help="Planes per frame the library delivers (cusum; the capture block).")
CAMERA_BUFFER_POOL = Option("camera_buffer_pool", int, parse_camera_buffer_pool, default=DEFAULT_CAMERA_BUFFER_POOL,
                            show_default=True, help="Frames in the library's pool (buff_size; each holds --camera-cusum "
                                                    "planes).")
CAMERA_LAYOUT = Option("camera_layout", str, parse_camera_layout, choices=spellings(Layout),
                       help="Plane layout of the frames (default: pcie1k for the 1000x1000 modes, else dat).")
CAMERA_INIT_PARAMS = Option("camera_init_params", str, parse_camera_init_params, choices=spellings(InitParamsLayout),
                            default=InitParamsLayout.WRAPPER.value, show_default=True,
                            help="SpikeLinkInitParams layout the library was built with: wrapper (with cusum) or "
                                 "header (the older header's, without).")
CAMERA_FILE = Option("camera_file", Path, parse_camera_file,
                     help="A raw file of the mode's planes (in --camera-layout) replayed by the dummy-file link.")


@dataclass(frozen=True)
class CameraConfig(SourceConfig):
    """The camera, its link, mode and library settings (see the module docstring).

    ``rate_hz``: for the dummy-file link the replay rate (any positive rate); for a real link the
    mode's rate. None (the default) is the mode's rate. ``camera_layout`` None: the mode's.
    """

    SELECTOR: ClassVar[Option] = Option("camera", bool, None, help="Read the SpikeLink camera (needs the vendor library).")
    OPTIONS: ClassVar[tuple[Option, ...]] = (CAMERA_LIBRARY, CAMERA_LINK, CAMERA_MODE, CAMERA_DEVICE, CAMERA_CHANNELS,
                                             CAMERA_CUSUM, CAMERA_BUFFER_POOL, CAMERA_LAYOUT, CAMERA_INIT_PARAMS,
                                             CAMERA_FILE, RATE_HZ, LOOP, HEIGHT, WIDTH)
    NOTES: ClassVar[dict[str, str]] = {
        "rate_hz": "camera: the mode's rate (must agree), or the dummy file's replay rate",
        "height": "camera: set by the mode",
        "width": "camera: set by the mode",
        "loop": "the camera's dummy file",
    }
    recoverable_errors: ClassVar[bool] = True
    uses_devices: ClassVar[bool] = True

    camera_mode: SensorMode = DEFAULT_CAMERA_MODE
    camera_link: LinkType = LinkType.PCIE
    camera_file: str | None = None  # the raw file the dummy-file link replays; only with that link
    camera_library: str | None = None  # None: $SPIKELINK_LIBRARY
    camera_device: str | None = None  # PCIe devName
    camera_channels: int = 0
    camera_cusum: int = DEFAULT_CAMERA_CUSUM
    camera_buffer_pool: int = DEFAULT_CAMERA_BUFFER_POOL
    camera_layout: Layout | None = None  # None: the mode's
    camera_init_params: InitParamsLayout = InitParamsLayout.WRAPPER
    rate_hz: float | None = None
    loop: bool = False  # the dummy file's repeat

    def __post_init__(self) -> None:
        mode, link, dummy = mode_name(self.camera_mode), link_name(self.camera_link), self.dummy
        if not self.camera_mode.known:
            raise ValueError(f"--camera-mode: {self.camera_mode.name} has no published geometry")
        if dummy and self.camera_file is None:
            raise ValueError("--camera-link dummy-file replays a file: give --camera-file FILE")
        if not dummy and self.camera_file is not None:
            raise ValueError(f"--camera-file is replayed by the dummy-file link, not --camera-link {link}")
        try:
            link_params_type(self.camera_link)
        except UnknownAbiError as exc:
            raise ValueError(f"--camera-link {link}: {exc}") from None
        if self.camera_device is not None and dummy:
            raise ValueError("--camera-device names a PCIe device, not the dummy-file link's file (--camera-file)")
        if self.loop and not dummy:
            raise ValueError(f"--loop applies to the dummy-file link (--camera-file), not {link}")
        try:
            layout_geometry(self.layout, self.camera_mode.geometry)
        except ValueError as exc:
            raise ValueError(f"--camera-layout {self.layout.value} does not fit --camera-mode {mode}: {exc}") from None
        frame_bytes = self.camera_cusum * stored_plane_bytes(self.layout, self.camera_mode.geometry)
        if frame_bytes > MAX_FRAME_BYTES:
            raise ValueError(f"--camera-cusum {self.camera_cusum} makes {frame_bytes}-byte frames in --camera-mode "
                             f"{mode}; a frame's size field is an int32 (at most {MAX_FRAME_BYTES} bytes)")
        if self.rate_hz is None:
            object.__setattr__(self, "rate_hz", self.camera_mode.rate_hz)
        elif not dummy and self.rate_hz != self.camera_mode.rate_hz:
            raise ValueError(f"--rate-hz {self.rate_hz:g} disagrees with --camera-mode {mode} "
                             f"({self.camera_mode.rate_hz:.0f} Hz); leave it out, the mode sets the rate")

    @classmethod
    def from_options(cls, selected: bool, *, camera_library: str | None, camera_link: LinkType | None,
                     camera_mode: SensorMode, camera_device: str | None, camera_channels: int, camera_cusum: int,
                     camera_buffer_pool: int, camera_layout: Layout | None, camera_init_params: InitParamsLayout,
                     camera_file: str | None, rate_hz: float | None, loop: bool, height: int | None,
                     width: int | None) -> CameraConfig:
        geometry = camera_mode.geometry
        if (height is not None and height != geometry.height) or (width is not None and width != geometry.width):
            raise ValueError(
                f"--height {height if height is not None else '-'} / --width {width if width is not None else '-'} "
                f"disagree with --camera-mode {mode_name(camera_mode)} ({geometry.height}x{geometry.width} HxW); "
                f"leave them out, the mode sets the geometry")
        if camera_link is None:
            camera_link = LinkType.DUMMY_FILE if camera_file is not None else LinkType.PCIE
        return cls(camera_mode=camera_mode, camera_link=camera_link, camera_file=camera_file,
                   camera_library=camera_library, camera_device=camera_device, camera_channels=camera_channels,
                   camera_cusum=camera_cusum, camera_buffer_pool=camera_buffer_pool, camera_layout=camera_layout,
                   camera_init_params=camera_init_params, rate_hz=rate_hz, loop=loop)

    @property
    def dummy(self) -> bool:
        """The dummy-file link: a raw file replayed by the library."""
        return self.camera_link is LinkType.DUMMY_FILE

    @property
    def layout(self) -> Layout:
        """The frames' plane layout: ``camera_layout``, else the mode's."""
        return self.camera_layout or self.camera_mode.layout

    @property
    def block_planes(self) -> int:
        """Planes per capture block: the library's frame (``cusum``)."""
        return self.camera_cusum

    @property
    def live(self) -> bool:
        return True

    def library_path(self) -> str | None:
        """The camera library to load: ``camera_library``, else ``$SPIKELINK_LIBRARY`` (None: neither)."""
        return self.camera_library or os.environ.get(LIBRARY_ENV) or None

    def label(self) -> str:
        where = f" {self.camera_file}" if self.camera_file else (f" device {self.camera_device}" if self.camera_device else "")
        return (f"{link_name(self.camera_link)} {mode_name(self.camera_mode)} {self.layout.value}{where} "
                f"(library {self.library_path()})")

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
        """The mode's geometry; the dummy link's file must hold whole planes of the layout."""
        geometry = self.camera_mode.geometry
        if self.camera_file is not None:
            if not os.path.isfile(self.camera_file):
                raise FileNotFoundError(f"dummy-link spike file not found: {self.camera_file}")
            size = os.path.getsize(self.camera_file)
            plane_bytes = stored_plane_bytes(self.layout, geometry)
            if size == 0 or size % plane_bytes:
                raise ValueError(f"{self.camera_file} is {size} bytes, not a whole number of {plane_bytes}-byte "
                                 f"planes of camera mode {mode_name(self.camera_mode)} in the {self.layout.value} layout")
        return geometry

    def describe(self) -> dict[str, Any]:
        geometry = self.camera_mode.geometry
        return {**super().describe(), "camera_link": link_name(self.camera_link), "camera_mode": mode_name(self.camera_mode),
                "camera_layout": self.layout.value, "height": geometry.height, "width": geometry.width,
                "block_planes": self.block_planes}

    def open(self) -> SpikeSource:
        try:
            from firmware_io.camera import CameraSource
        except ImportError as exc:
            raise SourceUnavailable(f"the SpikeLink camera support is not available: {exc}") from exc
        return CameraSource(self.library_path(), link=self.camera_link, mode=self.camera_mode, cusum=self.camera_cusum,
                            buffer_pool_size=self.camera_buffer_pool, layout=self.layout,
                            init_layout=self.camera_init_params, device_name=self.camera_device or "",
                            channels=self.camera_channels, file_path=self.camera_file, loop=self.loop,
                            replay_rate_hz=self.rate_hz if self.dummy else 0.0)
