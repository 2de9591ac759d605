"""``CameraSource`` through the real ctypes binding of the vendor ABI, against the fake SpikeLink library built from C:
planes byte for byte, gaps, drop-oldest, vanishing and stalled cameras, the PCIe 1K layout, the cusum unknown."""

from __future__ import annotations

import time

import numpy as np
import pytest

from firmware_io.bitpack import pack_planes
from firmware_io.contract import Geometry, ReadStatus, SourceError
from firmware_io.dat import DatReader, write_dat
from firmware_io.fake_spikelink import FakeError, FakeState
from firmware_io.layouts import PCIE_GEOMETRY, PCIE_PLANE_BYTES, Layout
from firmware_io.pcie import write_pcie
from firmware_io.spikelink import LIBRARY_ENV, InitParamsLayout, LinkType, SensorMode, UnknownAbiError

GEOMETRY = Geometry(250, 400)
PPB = 50  # planes per block


@pytest.fixture(scope="module")
def dat_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    planes = rng.random((420, *GEOMETRY.shape)) < 0.2  # 8 full blocks of 50 and a partial one
    path = tmp_path_factory.mktemp("camera") / "source.dat"
    write_dat(path, planes)
    with DatReader(path, GEOMETRY) as reader:
        packed = reader.packed().copy()
    return path, packed


def open_camera(fake_lib, dat_path, **kwargs):
    from firmware_io.camera import CameraSource

    options = dict(link=LinkType.DUMMY_FILE, mode=SensorMode.M400x250_40K, file_path=dat_path,
                   cusum=PPB, replay_rate_hz=200_000.0)
    options.update(kwargs)
    return CameraSource(fake_lib, **options)


def read_until(camera, predicate, limit_s=5.0):
    """Reads until ``predicate(reads)`` or end of stream; returns all reads."""
    reads = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        result = camera.read(timeout_s=0.2)
        reads.append(result)
        if result.status is ReadStatus.END_OF_STREAM or predicate(reads):
            return reads
    raise AssertionError(f"gave up after {limit_s} s: {[r.status for r in reads][-10:]}")


def test_planes_arrive_byte_for_byte_and_every_frame_is_released(fake_lib, control, dat_file):
    path, packed = dat_file
    with open_camera(fake_lib, path) as camera:
        assert camera.geometry == GEOMETRY and camera.rate_hz == 200_000.0
        blocks = list(camera)
        stats = camera.stats()
    assert [b.first_plane for b in blocks] == list(range(0, 420, PPB))
    got = np.concatenate([b.planes for b in blocks])
    np.testing.assert_array_equal(got, packed)
    assert all(b.planes.flags.writeable for b in blocks)
    assert stats["gaps"] == 0 and stats["dropped_blocks"] == 0 and stats["errors"] == 0
    assert control.delivered == len(blocks) == 9
    assert control.outstanding == 0 and control.released == control.delivered
    assert control.created == control.finished == 1  # one input object, released with Fini


def test_sdk_pts_gap_becomes_a_plane_index_jump(fake_lib, control, dat_file):
    path, packed = dat_file
    control.drop_every(3)  # pts 2, 5, 8 never delivered (8 is the last 20 planes: seen when the link goes quiet)
    with open_camera(fake_lib, path, stall_timeout_s=0.3) as camera:
        blocks = list(camera)
        assert camera.gaps == 3 and camera.planes_lost == 2 * PPB + 20
    assert [b.first_plane for b in blocks] == [0, 50, 150, 200, 300, 350]
    for block in blocks:
        np.testing.assert_array_equal(block.planes, packed[block.first_plane : block.stop_plane])
    assert control.outstanding == 0


def test_full_queue_drops_oldest_and_counts(fake_lib, control, dat_file):
    path, packed = dat_file
    with open_camera(fake_lib, path, replay_rate_hz=-1.0, max_queue_blocks=2) as camera:
        time.sleep(0.3)  # the fake delivers everything at once while nobody reads
        blocks = list(camera)
        assert camera.dropped_blocks == 7
    assert [b.first_plane for b in blocks] == [350, 400]  # the newest two survive
    np.testing.assert_array_equal(blocks[-1].planes, packed[400:])
    assert control.outstanding == 0


def test_vanishing_camera_reports_error_once_then_reconnects(fake_lib, control, dat_file):
    path, packed = dat_file
    control.vanish_after(4)
    control.comeback_after_ms(150)
    with open_camera(fake_lib, path, loop=True, backoff_initial_s=0.02) as camera:
        reads = read_until(camera, lambda rs: sum(r.status is ReadStatus.OK for r in rs) >= 10)
        statuses = [r.status for r in reads]
        errors = [r for r in reads if r.status is ReadStatus.ERROR]
        assert len(errors) == 1 and "disconnected" in errors[0].message
        cut = statuses.index(ReadStatus.ERROR)
        before = [r.block for r in reads[:cut] if r.status is ReadStatus.OK]
        after = [r.block for r in reads[cut:] if r.status is ReadStatus.OK]
        assert [b.first_plane for b in before] == [0, 50, 100, 150]
        for block in before:
            np.testing.assert_array_equal(block.planes, packed[block.first_plane : block.stop_plane])
        # a new session replays the file from its start; indices jump past the outage and keep going
        assert after[0].first_plane > before[-1].stop_plane
        np.testing.assert_array_equal(after[0].planes, packed[:PPB])
        assert all(b.first_plane == a.stop_plane for a, b in zip(after, after[1:]))
        assert camera.reconnects == 1 and camera.errors == 1 and camera.gaps >= 1
        assert control.starts == 2
        status = camera.status()  # what the library said, for describe/health
        # the last thing the library refused: Open() while the device was away (the fake's NO_DEVICE code)
        assert status["reconnects"] == 1 and status["errors"] == 1
        assert status["last_error"] == f"Open() returned {int(FakeError.NO_DEVICE)}"
        assert status["sdk_state"] == FakeState.RUNNING and status["sdk_is_open"] is True and status["connected"]
    assert control.outstanding == 0
    # a fresh input object per attempt (the failed Opens included), each released with Fini
    assert control.created == control.finished == control.open_attempts >= 3


def test_stalled_link_is_detected_and_recovered(fake_lib, control, dat_file):
    path, _ = dat_file
    control.stall_after(2)
    with open_camera(fake_lib, path, loop=True, stall_timeout_s=0.2, backoff_initial_s=0.02) as camera:
        reads = read_until(camera, lambda rs: sum(r.status is ReadStatus.OK for r in rs) >= 5)
        errors = [r.message for r in reads if r.status is ReadStatus.ERROR]
        assert len(errors) == 1 and "no frames" in errors[0]
        assert camera.reconnects == 1
    assert control.outstanding == 0


def test_absent_device_retries_with_backoff(fake_lib, control, dat_file):
    path, packed = dat_file
    control.refuse_open(3)
    with open_camera(fake_lib, path, wait_for_device=True, backoff_initial_s=0.01) as camera:
        reads = read_until(camera, lambda rs: rs[-1].status is ReadStatus.OK)
        assert reads[0].status is ReadStatus.ERROR and "not available" in reads[0].message
        assert [r.status for r in reads].count(ReadStatus.ERROR) == 1
        np.testing.assert_array_equal(reads[-1].block.planes, packed[:PPB])
        assert reads[-1].block.first_plane == 0
    assert control.open_attempts == 4


def test_no_device_raises_without_wait(fake_lib, control, dat_file, tmp_path):
    from firmware_io.camera import CameraSource

    missing = str(tmp_path / "no-such-device")
    with pytest.raises(SourceError, match=rf"Open\(\) returned {int(FakeError.NO_DEVICE)}.*no-such-device"):
        CameraSource(fake_lib, link=LinkType.PCIE, device_name=missing)
    with pytest.raises(SourceError, match=r"Init\(\) returned .*PCIe device name \(empty"):
        CameraSource(fake_lib, link=LinkType.PCIE)
    control.refuse_open(1)
    with pytest.raises(SourceError, match="Open"):
        open_camera(fake_lib, dat_file[0])
    assert control.created == control.finished == 3 and control.outstanding == 0


def test_missing_library_gives_a_clear_error(tmp_path, monkeypatch):
    from firmware_io.camera import CameraSource

    missing = tmp_path / "libspikelink.so"
    with pytest.raises(FileNotFoundError) as info:
        CameraSource(missing)
    assert str(missing) in str(info.value) and LIBRARY_ENV in str(info.value)
    monkeypatch.delenv(LIBRARY_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=LIBRARY_ENV):
        CameraSource()
    monkeypatch.setenv(LIBRARY_ENV, str(missing))
    with pytest.raises(FileNotFoundError, match="libspikelink.so"):
        CameraSource()


def test_library_from_env_var(fake_lib, control, dat_file, monkeypatch):
    from firmware_io.camera import CameraSource

    monkeypatch.setenv(LIBRARY_ENV, fake_lib)
    with CameraSource(link=LinkType.DUMMY_FILE, file_path=dat_file[0], cusum=PPB, replay_rate_hz=-1) as camera:
        assert sum(b.n_planes for b in camera) == 420


def test_links_with_unpublished_init_structures_fail_clearly(fake_lib):
    from firmware_io.camera import CameraSource

    with pytest.raises(UnknownAbiError, match="USB link.*not published"):
        CameraSource(fake_lib, link=LinkType.USB)


# -- the 1000x1000 camera: frames of PCIe rows ---------------------------------------------------------
@pytest.fixture(scope="module")
def pcie_file(tmp_path_factory):
    """12 planes of the 1000x1000 camera in its PCIe row layout, from a known array."""
    planes = np.random.default_rng(5).random((12, *PCIE_GEOMETRY.shape)) < 0.1
    path = tmp_path_factory.mktemp("pcie") / "pcie.dat"
    write_pcie(path, planes)
    return path, pack_planes(planes)


def test_pcie_frames_arrive_as_contract_planes(fake_lib, control, pcie_file):
    path, packed = pcie_file
    with open_camera(fake_lib, path, mode=SensorMode.M1000x1000_20K, cusum=4, replay_rate_hz=-1) as camera:
        assert camera.layout is Layout.PCIE1K and camera.geometry == PCIE_GEOMETRY and camera.frame_width == 1024
        blocks = list(camera)
    assert [b.first_plane for b in blocks] == [0, 4, 8]
    np.testing.assert_array_equal(np.concatenate([b.planes for b in blocks]), packed)
    assert control.outstanding == 0


def test_a_pcie_frame_with_broken_tags_is_dropped_and_counted(fake_lib, control, pcie_file, tmp_path):
    path, packed = pcie_file
    broken = bytearray(path.read_bytes())
    broken[5 * PCIE_PLANE_BYTES + 63] ^= 0xFF  # plane 5's first tag: no longer line 500 channel 0
    bad = tmp_path / "broken.dat"
    bad.write_bytes(bytes(broken))
    with open_camera(fake_lib, bad, mode=SensorMode.M1000x1000_20K, cusum=2, replay_rate_hz=-1) as camera:
        blocks = list(camera)
        assert camera.bad_frames == 1 and camera.planes_lost == 2 and camera.gaps == 1
        assert "plane 4 dropped" in camera.status()["last_error"]
    assert [b.first_plane for b in blocks] == [0, 2, 6, 8, 10]
    for block in blocks:
        np.testing.assert_array_equal(block.planes, packed[block.first_plane : block.stop_plane])


def test_the_pcie_link_reads_the_device_it_is_named(fake_lib, control, pcie_file):
    """The fake's PCIe "device" is the file named by devName, streamed in a loop at the mode's rate."""
    from firmware_io.camera import CameraSource

    path, packed = pcie_file
    control.rate_hz(2_000)  # 1000x1000 planes at 2 kHz instead of 20 kHz: light on a shared machine
    with CameraSource(fake_lib, link=LinkType.PCIE, mode=SensorMode.M1000x1000_20K, device_name=str(path),
                      cusum=4) as camera:
        assert camera.rate_hz == 20_000.0
        reads = read_until(camera, lambda rs: sum(r.status is ReadStatus.OK for r in rs) >= 4)
        blocks = [r.block for r in reads if r.status is ReadStatus.OK]
        status = camera.status()
    assert [b.first_plane for b in blocks[:4]] == [0, 4, 8, 12]
    for block in blocks[:4]:
        np.testing.assert_array_equal(block.planes, packed[np.arange(block.first_plane, block.stop_plane) % 12])
    assert status["link"] == "pcie" and status["layout"] == "pcie1k" and status["sdk_state"] == FakeState.RUNNING


def test_a_frame_larger_than_cusum_names_the_init_layout_unknown(fake_lib, control, dat_file):
    """A library built without cusum (the fake emulating the older header) sends its own planes per frame."""
    path, packed = dat_file
    control.header_cusum(30)
    with pytest.raises(SourceError, match=r"Init\(\) returned .*--camera-init-params header"):
        open_camera(fake_lib, path)  # the wrapper's layout misread by a header build
    with open_camera(fake_lib, path, init_layout=InitParamsLayout.HEADER, cusum=PPB) as camera:
        blocks = list(camera)
        assert camera.status()["cusum"] == 30 and camera.status()["init_params"] == "header"
    assert [b.first_plane for b in blocks] == list(range(0, 420, 30))
    np.testing.assert_array_equal(np.concatenate([b.planes for b in blocks]), packed)
