"""``CameraSource`` through the real ctypes binding, against the fake SpikeLink SDK built from C."""

from __future__ import annotations

import ctypes
import time

import numpy as np
import pytest

from firmware_io.contract import Geometry, ReadStatus, SourceError
from firmware_io.dat import DatReader, write_dat
from firmware_io.fake_spikelink import FakeControl
from firmware_io.fake_spikelink.build import FakeCommand
from firmware_io.spikelink import LIBRARY_ENV, Frame, InitParams, LinkType, SensorMode

GEOMETRY = Geometry(250, 400)
PPB = 50  # planes per block


@pytest.fixture
def control(fake_lib):
    fc = FakeControl(fake_lib)
    fc.reset()
    yield fc
    fc.reset()


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
                   planes_per_block=PPB, replay_rate_hz=200_000.0)
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


def test_struct_layout_matches_the_header(control):
    assert control.command(FakeCommand.Q_SIZEOF_FRAME) == ctypes.sizeof(Frame)
    assert control.command(FakeCommand.Q_SIZEOF_PARAMS) == ctypes.sizeof(InitParams)
    assert control.command(FakeCommand.Q_OFFSET_FRAME_SIZE) == Frame.size.offset
    assert control.command(FakeCommand.Q_OFFSET_FRAME_PTS) == Frame.pts.offset
    assert control.command(FakeCommand.Q_OFFSET_FRAME_TB) == Frame.time_base_num.offset
    assert control.command(FakeCommand.Q_OFFSET_PARAMS_RATE) == InitParams.rate_hz.offset
    assert control.command(FakeCommand.Q_OFFSET_PARAMS_PATH) == InitParams.file_path.offset


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


def test_sdk_pts_gap_becomes_a_plane_index_jump(fake_lib, control, dat_file):
    path, packed = dat_file
    control.drop_every(3)  # pts 2, 5, 8 never delivered (8 is the last: an invisible trailing loss)
    with open_camera(fake_lib, path) as camera:
        blocks = list(camera)
        assert camera.gaps == 2 and camera.planes_lost == 2 * PPB
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
    assert control.outstanding == 0


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


def test_no_device_raises_without_wait(fake_lib, control, dat_file):
    from firmware_io.camera import CameraSource

    with pytest.raises(SourceError, match="NO_DEVICE"):
        CameraSource(fake_lib, link=LinkType.PCIE)
    control.refuse_open(1)
    with pytest.raises(SourceError, match="open"):
        open_camera(fake_lib, dat_file[0])


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
    with CameraSource(link=LinkType.DUMMY_FILE, file_path=dat_file[0], planes_per_block=PPB, replay_rate_hz=-1) as camera:
        assert sum(b.n_planes for b in camera) == 420
