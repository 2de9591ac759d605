"""The ctypes binding of the vendor SpikeLink ABI (``firmware_io.spikelink``) against the C compiler and the fake
library built from C: structure layouts field by field, the exported symbols, the frame pool, the dummy link."""

from __future__ import annotations

import ctypes
import subprocess
import time

import numpy as np
import pytest

from firmware_io.cbuild import CompilerNotFoundError, build_shared, find_c_compiler
from firmware_io.contract import SourceError
from firmware_io.fake_spikelink import FakeState, header_path
from firmware_io.spikelink import (
    FRAME_CALLBACK,
    STRUCTURES,
    SYMBOLS,
    InitParamsLayout,
    LinkType,
    PixelFormat,
    SensorMode,
    SpikeLinkDummyInitParams,
    SpikeLinkInitParams,
    SpikeLinkLibrary,
    SpikeLinkVideoFrame,
    SVPicture,
    SVRational,
    UnknownAbiError,
    dummy_params,
    link_params_type,
    qsfp_params,
)

PLANE_BYTES = 12_500  # 400x250


@pytest.fixture
def compiler():
    try:
        return find_c_compiler()
    except CompilerNotFoundError as exc:
        pytest.skip(str(exc))


def test_every_structure_matches_the_c_compilers_layout(tmp_path, compiler):
    """sizeof, alignof and every field's offsetof, from a program compiled against spikelinkapi.h."""
    lines = []
    for struct in STRUCTURES:
        c_name = struct.__name__
        lines.append(f'printf("{c_name} sizeof %zu\\n", sizeof({c_name}));')
        lines.append(f'printf("{c_name} alignof %zu\\n", _Alignof({c_name}));')
        for field, *_ in struct._fields_:
            lines.append(f'printf("{c_name} {field} %zu\\n", offsetof({c_name}, {field}));')
    program = tmp_path / "layout.c"
    program.write_text('#include <stddef.h>\n#include <stdio.h>\n#include "spikelinkapi.h"\nint main(void) {\n'
                       + "\n".join(lines) + "\nreturn 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run([*compiler, "-std=c11", "-I", str(header_path().parent), "-o", str(exe), str(program)],
                   check=True, capture_output=True, timeout=120)
    c_side = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines():
        struct, what, value = line.split()
        c_side[struct, what] = int(value)
    py_side = {}
    for struct in STRUCTURES:
        py_side[struct.__name__, "sizeof"] = ctypes.sizeof(struct)
        py_side[struct.__name__, "alignof"] = ctypes.alignment(struct)
        for field, *_ in struct._fields_:
            py_side[struct.__name__, field] = getattr(struct, field).offset
    assert py_side == c_side
    # the facts' layouts, spelled out for the two structures every call passes
    assert ctypes.sizeof(SpikeLinkInitParams) == 80 and SpikeLinkInitParams.picture.offset == 32
    assert ctypes.sizeof(SpikeLinkVideoFrame) == 104 and SpikeLinkVideoFrame.pts.offset == 56


def test_the_binding_loads_the_vendor_symbols_and_nothing_invented(fake_lib):
    assert SYMBOLS == ("CreateSpikeLinkInputPython", "Init", "SetCallbackPython", "Open", "Start", "Stop", "Close",
                       "IsOpen", "GetState", "ReleaseFrame", "Fini")
    lib = SpikeLinkLibrary(fake_lib)
    for symbol in SYMBOLS:
        assert getattr(lib, symbol) is getattr(lib._lib, symbol)
    assert lib.Init.argtypes[1]._type_ is SpikeLinkInitParams and lib.IsOpen.restype is ctypes.c_bool
    raw = ctypes.CDLL(fake_lib)
    for invented in ("spikelink_init", "spikelink_set_callback", "spikelink_release_frame", "spikelink_get_state"):
        assert not hasattr(raw, invented), invented


def test_a_library_without_a_vendor_symbol_is_refused_by_name(tmp_path, compiler):
    stub = tmp_path / "partial.c"
    stub.write_text("".join(f"void {s}(void) {{}}\n" for s in SYMBOLS if s != "ReleaseFrame"))
    try:
        path = build_shared("partial_spikelink", [stub], ("-O0",), cache=tmp_path)
    except CompilerNotFoundError as exc:
        pytest.skip(str(exc))
    with pytest.raises(SourceError, match="does not export ReleaseFrame"):
        SpikeLinkLibrary(path)


def test_links_whose_init_structure_is_unpublished_are_named_not_guessed():
    assert link_params_type(LinkType.PCIE).__name__ == "SpikeLinkQSFPInitParams"
    assert link_params_type(LinkType.DUMMY_FILE) is SpikeLinkDummyInitParams
    with pytest.raises(UnknownAbiError, match=r"init structure of the USB link \(type 0x21\) is not published"):
        link_params_type(LinkType.USB)
    for link in (LinkType.THUNDERBOLT, LinkType.ETHERNET):
        with pytest.raises(UnknownAbiError, match=link.name):
            link_params_type(link)


def test_name_fields_are_checked_where_they_enter():
    params = qsfp_params("spikelink0", channels=2)
    assert bytes(params.devName).rstrip(b"\0") == b"spikelink0" and params.channels == 2
    with pytest.raises(ValueError, match="channels must be 0..3, got 4"):
        qsfp_params("x", channels=4)
    with pytest.raises(ValueError, match="under 256 bytes"):
        dummy_params("d" * 300 + ".dat", SVRational(1, 1), False)


class Session:
    """The raw ABI, driven by hand: a dummy-link input whose callback keeps or releases frames."""

    def __init__(self, lib_path: str, dat: str, *, cusum: int, buff_size: int, fps: int, repeat: bool,
                 release: bool) -> None:
        self.lib = SpikeLinkLibrary(lib_path)
        self.release = release
        self.kept: list[int] = []
        self.pts: list[int] = []
        self.sizes: list[int] = []
        self.callback = FRAME_CALLBACK(self._on_frame)
        self.dummy = dummy_params(dat, SVRational(fps, 1), repeat)
        self.params = SpikeLinkInitParams(
            opaque=ctypes.addressof(self.dummy), type=LinkType.DUMMY_FILE, mode=SensorMode.M400x250_40K,
            format=PixelFormat.GRAY1, buff_size=buff_size, cusum=cusum,
            picture=SVPicture(width=400, height=250, format=PixelFormat.GRAY1, fps=SVRational(40_000, 1)))
        self.input = self.lib.CreateSpikeLinkInputPython()
        assert self.input
        self.lib.check("Init", self.lib.Init(self.input, ctypes.byref(self.params)))
        self.lib.SetCallbackPython(self.input, self.callback)
        self.lib.check("Open", self.lib.Open(self.input))
        assert self.lib.IsOpen(self.input)

    def _on_frame(self, frame_ptr):
        frame = SpikeLinkVideoFrame.from_address(frame_ptr)
        self.pts.append(frame.pts)
        self.sizes.append(frame.size)
        if self.release:
            self.lib.ReleaseFrame(self.input, frame_ptr)
        else:
            self.kept.append(frame_ptr)

    def release_kept(self) -> None:
        kept, self.kept = self.kept, []
        for frame_ptr in kept:
            self.lib.ReleaseFrame(self.input, frame_ptr)

    def close(self) -> None:
        self.lib.Stop(self.input)
        self.lib.Close(self.input)
        self.lib.Fini(self.input)


@pytest.fixture(scope="module")
def dat400(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sdk") / "planes.dat"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 400 * PLANE_BYTES, dtype=np.uint8).tobytes())
    return str(path)


def wait_for(predicate, limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_the_frame_pool_runs_dry_when_frames_are_not_released(fake_lib, control, dat400):
    s = Session(fake_lib, dat400, cusum=10, buff_size=3, fps=20_000, repeat=True, release=False)
    try:
        s.lib.check("Start", s.lib.Start(s.input))
        wait_for(lambda: control.pool_empty >= 20)  # 2,000 frames/s due, three pool frames, none released
        assert control.delivered == 3 and control.outstanding == 3 and len(s.kept) == 3
        assert s.pts == [0, 1, 2]
        s.release_kept()
        wait_for(lambda: control.delivered > 3)  # a freed frame is filled again
        assert s.pts[3] > 3, "the frames due while the pool was dry are lost; pts moved on"
        assert control.bad_releases == 0
    finally:
        s.release_kept()
        s.close()
    assert control.created == control.finished == 1


def test_the_dummy_link_replays_its_file_once_or_repeats(fake_lib, control, dat400):
    once = Session(fake_lib, dat400, cusum=64, buff_size=4, fps=0, repeat=False, release=True)
    try:
        once.lib.check("Start", once.lib.Start(once.input))
        wait_for(lambda: once.lib.GetState(once.input) == FakeState.END_OF_FILE)
        assert once.pts == list(range(7))  # 400 planes in frames of 64: six whole and a short last one
        assert once.sizes == [64 * PLANE_BYTES] * 6 + [16 * PLANE_BYTES]
    finally:
        once.close()
    again = Session(fake_lib, dat400, cusum=64, buff_size=4, fps=0, repeat=True, release=True)
    try:
        again.lib.check("Start", again.lib.Start(again.input))
        wait_for(lambda: len(again.pts) > 20)
        assert again.lib.GetState(again.input) == FakeState.RUNNING
    finally:
        again.close()
    assert control.outstanding == 0


def test_init_reads_the_header_layout_when_the_build_has_no_cusum(fake_lib, control, dat400):
    """A library built from the older header reads SpikeLinkInitParams without cusum: the picture sits 8 bytes
    earlier. The fake in that mode refuses the wrapper's layout (its picture is misread) and accepts the header's."""
    control.header_cusum(25)
    lib = SpikeLinkLibrary(fake_lib, init_layout=InitParamsLayout.HEADER)
    from firmware_io.spikelink import SpikeLinkInitParamsNoCusum

    dummy = dummy_params(dat400, SVRational(0, 1), False)
    picture = SVPicture(width=400, height=250, format=PixelFormat.GRAY1, fps=SVRational(40_000, 1))
    header = SpikeLinkInitParamsNoCusum(opaque=ctypes.addressof(dummy), type=LinkType.DUMMY_FILE,
                                        mode=SensorMode.M400x250_40K, format=PixelFormat.GRAY1, buff_size=2,
                                        picture=picture)
    handle = lib.CreateSpikeLinkInputPython()
    try:
        assert lib.Init(handle, ctypes.byref(header)) == 0
    finally:
        lib.Fini(handle)
    wrapper_lib = SpikeLinkLibrary(fake_lib)
    wrapper = SpikeLinkInitParams(opaque=ctypes.addressof(dummy), type=LinkType.DUMMY_FILE,
                                  mode=SensorMode.M400x250_40K, format=PixelFormat.GRAY1, buff_size=2, cusum=25,
                                  picture=picture)
    handle = wrapper_lib.CreateSpikeLinkInputPython()
    try:
        assert wrapper_lib.Init(handle, ctypes.byref(wrapper)) != 0
    finally:
        wrapper_lib.Fini(handle)
