"""The .dat reader/writer: round trips, chunked reads, with-head files, truncation and size errors, npz."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_io.bitpack import pack_planes
from firmware_io.contract import FormatError, Geometry
from firmware_io.dat import DatReader, DatWriter, write_dat
from firmware_io.npz import NpzReader, write_uhsr_npz
from firmware_io.recording import open_recording


def random_planes(n, h, w, seed=0, rate=0.3):
    return (np.random.default_rng(seed).random((n, h, w)) < rate).astype(np.uint8)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 33), n=st.integers(1, 50), seed=st.integers(0, 1000))
def test_write_read_round_trip_any_geometry(h, w, n, seed, tmp_path_factory):
    path = tmp_path_factory.mktemp("dat") / "x.dat"
    planes = random_planes(n, h, w, seed)
    write_dat(path, planes)
    with DatReader(path, Geometry(h, w)) as reader:
        assert reader.n_planes == n
        np.testing.assert_array_equal(reader.unpacked(), planes)
        np.testing.assert_array_equal(reader.packed(), pack_planes(planes))


@pytest.mark.parametrize("geometry", [Geometry(250, 400), Geometry(1000, 1000)])
def test_standard_sizes_file_size(tmp_path, geometry):
    planes = random_planes(3, *geometry.shape)
    path = write_dat(tmp_path / "x.dat", planes)
    assert path.stat().st_size == 3 * geometry.plane_bytes
    with DatReader(path, geometry) as reader:
        np.testing.assert_array_equal(reader.unpacked(1, 3), planes[1:3])


def test_chunked_reads_of_every_size_join_up(tmp_path):
    planes = random_planes(37, 6, 10, seed=5)
    path = write_dat(tmp_path / "x.dat", planes)
    with DatReader(path, Geometry(6, 10)) as reader:
        whole = reader.packed()
        for chunk in range(1, reader.n_planes + 1):
            parts = list(reader.iter_packed(chunk))
            assert [first for first, _ in parts] == list(range(0, 37, chunk))
            np.testing.assert_array_equal(np.concatenate([p for _, p in parts]), whole)
        np.testing.assert_array_equal(np.concatenate([p for _, p in reader.iter_packed(4, 5, 30)]), whole[5:30])


def test_with_head_drops_the_last_16_columns(tmp_path):
    stored = random_planes(4, 250, 416, seed=2)
    path = write_dat(tmp_path / "head.dat", stored)
    with DatReader(path, Geometry(250, 400), with_head=True) as reader:
        assert reader.n_planes == 4
        np.testing.assert_array_equal(reader.unpacked(), stored[:, :, :400])
        np.testing.assert_array_equal(reader.packed(1, 3), pack_planes(stored[1:3, :, :400]))


def test_truncated_file_error_states_the_numbers(tmp_path):
    path = write_dat(tmp_path / "x.dat", random_planes(3, 250, 400))
    with open(path, "ab") as f:
        f.write(b"\x00" * 100)
    with pytest.raises(FormatError) as err:
        DatReader(path)
    message = str(err.value)
    for number in ("37600", "12500", "3 full planes", "100 trailing bytes"):
        assert number in message
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with DatReader(path, allow_partial=True) as reader:
            assert reader.n_planes == 3
    assert any("partial plane" in str(w.message) for w in caught)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        DatReader(empty)
    with pytest.raises(FileNotFoundError):
        DatReader(tmp_path / "missing.dat")


def test_wrong_geometry_is_reported(tmp_path):
    path = write_dat(tmp_path / "x.dat", random_planes(2, 250, 400))
    with pytest.raises(FormatError, match="geometry"):
        DatReader(path, Geometry(1000, 1000))


def test_out_of_range_plane_access(tmp_path):
    path = write_dat(tmp_path / "x.dat", random_planes(2, 4, 8))
    with DatReader(path, Geometry(4, 8)) as reader, pytest.raises(IndexError, match=r"\[1, 5\)"):
        reader.packed(1, 5)


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "out.dat"
    with pytest.raises(RuntimeError):
        with DatWriter(path, Geometry(4, 8)) as writer:
            writer.write_planes(random_planes(2, 4, 8))
            assert not path.exists()  # nothing under the final name while writing
            raise RuntimeError("interrupted")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    with DatWriter(path, Geometry(4, 8)) as writer:
        writer.write_planes(random_planes(2, 4, 8))
        with pytest.raises(ValueError, match=r"\(n, 4\)"):
            writer.write_packed(np.zeros((1, 5), np.uint8))
    assert path.stat().st_size == 8


def test_uhsr_npz_round_trip(tmp_path):
    planes = random_planes(200, 25, 25, seed=9)
    path = write_uhsr_npz(tmp_path / "0.npz", planes, 7, "4144_helicopter.jpg")
    with open_recording(path) as reader:
        assert isinstance(reader, NpzReader)
        assert (reader.n_planes, reader.geometry) == (200, Geometry(25, 25))
        assert (reader.label, reader.label_name) == (7, "4144_helicopter.jpg")
        np.testing.assert_array_equal(reader.unpacked(10, 20), planes[10:20])
        np.testing.assert_array_equal(reader.packed(), pack_planes(planes))


def test_npz_without_spikes_is_a_format_error(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, other=np.zeros(3))
    with pytest.raises(FormatError, match="'spk'"):
        NpzReader(path)
