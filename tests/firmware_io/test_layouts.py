"""The 1000x1000 PCIe row layout (``firmware_io.layouts``, pure) and its files (``firmware_io.pcie``, through
``open_recording``): where pixels and tags land, round trips from known arrays, streams cut mid-plane, detection."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_io.bitpack import pack_planes
from firmware_io.contract import FormatError, Geometry
from firmware_io.dat import DatReader, write_dat
from firmware_io.layouts import (
    FIRST_TAG,
    HALF_ROWS_PER_PLANE,
    LAST_TAG,
    PCIE_GEOMETRY,
    PCIE_PLANE_BYTES,
    Layout,
    bad_planes,
    detect_layout,
    encode_tag,
    find_plane_boundary,
    packed_from_pcie_rows,
    parse_tags,
    pcie_rows_from_packed,
    plane_tags,
    writer_tags,
)
from firmware_io.pcie import PcieReader, PcieWriter, write_pcie
from firmware_io.recording import open_recording


def random_planes(n: int, seed: int, density: float = 0.2) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, *PCIE_GEOMETRY.shape)) < density).astype(np.uint8)


@pytest.fixture(scope="module")
def planes() -> np.ndarray:
    return random_planes(6, seed=1)


@pytest.fixture(scope="module")
def raw(planes) -> np.ndarray:
    return pcie_rows_from_packed(pack_planes(planes))


# -- pure functions ----------------------------------------------------------------------------------
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), density=st.floats(0.0, 1.0))
def test_rows_and_packed_planes_round_trip(seed, density):
    packed = pack_planes(random_planes(2, seed, density))
    raw = pcie_rows_from_packed(packed)
    assert raw.shape == (2, PCIE_PLANE_BYTES) and not len(bad_planes(raw))
    np.testing.assert_array_equal(packed_from_pcie_rows(raw), packed)


@pytest.mark.parametrize("row, col", [(0, 0), (0, 499), (0, 500), (0, 999), (999, 0), (499, 503), (500, 996), (731, 250)])
def test_a_pixel_lands_in_its_raw_row_and_column(row, col):
    """Rows top-down (not flipped), columns 0-499 then 512-1011 of the 1024-bit row, LSB first."""
    plane = np.zeros(PCIE_GEOMETRY.shape, dtype=np.uint8)
    plane[row, col] = 1
    raw = pcie_rows_from_packed(pack_planes(plane))[0].reshape(PCIE_GEOMETRY.height, 128)
    bits = np.unpackbits(raw, axis=1, bitorder="little")
    tag_columns = np.r_[500:512, 1012:1024]
    bits[:, tag_columns] = 0
    raw_col = col if col < 500 else 512 + col - 500
    assert list(zip(*np.nonzero(bits))) == [(row, raw_col)]


def test_the_writers_tags_meet_the_facts():
    line, channel = writer_tags()
    assert len(line) == HALF_ROWS_PER_PLANE
    assert (line[0], channel[0]) == FIRST_TAG and (line[-1], channel[-1]) == LAST_TAG
    assert line.min() == 1 and line.max() == 500 and set(channel) == {0, 1, 2, 3}
    assert len(set(zip(line.tolist(), channel.tolist()))) == HALF_ROWS_PER_PLANE, "each (line, channel) once"
    half_rows = np.zeros((3, 64), dtype=np.uint8)
    for i, (l, c) in enumerate([(500, 0), (1, 2), (500, 3)]):
        v = encode_tag(l, c) | 0x000F  # the low nibble is pixels 496-499, not tag
        half_rows[i, 62], half_rows[i, 63] = v & 0xFF, v >> 8
    got_line, got_channel = parse_tags(half_rows)
    assert got_line.tolist() == [500, 1, 500] and got_channel.tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="line 1..500"):
        encode_tag(501, 0)


def test_tags_are_read_from_real_rows(raw):
    line, channel = plane_tags(raw)
    expected_line, expected_channel = writer_tags()
    assert (line == expected_line).all() and (channel == expected_channel).all()


@pytest.mark.parametrize("cut", [0, 1, 2, 62, 63, 64, 65, 4_000, 64_000, 127_935, 127_999, 128_000, 128_001])
def test_the_first_plane_boundary_is_found_wherever_the_stream_starts(raw, cut):
    stream = raw.reshape(-1)[cut:]
    expected = (-cut) % PCIE_PLANE_BYTES
    assert find_plane_boundary(stream) == expected
    assert find_plane_boundary(stream.tobytes()) == expected
    np.testing.assert_array_equal(stream[expected : expected + PCIE_PLANE_BYTES], raw[(cut + expected) // PCIE_PLANE_BYTES])


def test_no_boundary_without_a_whole_well_tagged_plane(raw):
    assert find_plane_boundary(raw[0, :-1]) is None  # a plane less one byte
    assert find_plane_boundary(np.zeros(3 * PCIE_PLANE_BYTES, dtype=np.uint8)) is None
    broken = raw.copy()
    broken[0, 64 * 700 + 62] &= 0x0F  # one half-row's tag becomes line 0 (tags must be 1..500)
    broken[0, 64 * 700 + 63] = 0
    assert find_plane_boundary(broken.reshape(-1)) == PCIE_PLANE_BYTES  # the next plane is the first whole one
    assert bad_planes(broken).tolist() == [0]


def test_detect_layout_only_from_tags(raw, planes):
    assert detect_layout(raw.reshape(-1)[3_333 : 3_333 + 2 * PCIE_PLANE_BYTES]) is Layout.PCIE1K
    dat_bytes = pack_planes(planes).reshape(-1)  # the same planes in the .dat convention
    assert detect_layout(dat_bytes[: 2 * PCIE_PLANE_BYTES]) is Layout.DAT
    for filler in (0x00, 0xFF, 0x1F):
        assert detect_layout(np.full(2 * PCIE_PLANE_BYTES, filler, dtype=np.uint8)) is Layout.DAT
    assert detect_layout(b"") is Layout.DAT


def test_a_plane_with_broken_tags_is_named(raw):
    broken = raw.copy()
    broken[4, PCIE_PLANE_BYTES - 1] ^= 0xC0  # plane 4's last half-row: channel 3 -> 0
    with pytest.raises(FormatError, match=r"raw PCIe plane 4 .*last line 500 channel 0"):
        packed_from_pcie_rows(broken)
    with pytest.raises(ValueError, match=r"uint8 \(n, 128000\)"):
        packed_from_pcie_rows(np.zeros((1, 125_000), dtype=np.uint8))


# -- files ----------------------------------------------------------------------------------------------
def test_a_pcie_file_made_from_a_known_array_reads_back_equal(tmp_path, planes):
    path = write_pcie(tmp_path / "cam.dat", planes)
    assert path.stat().st_size == len(planes) * PCIE_PLANE_BYTES
    with open_recording(path) as rec:  # layout and geometry detected from the tags
        assert isinstance(rec, PcieReader) and rec.geometry == PCIE_GEOMETRY and rec.n_planes == len(planes)
        assert rec.offset_bytes == 0
        np.testing.assert_array_equal(rec.unpacked(), planes)
        np.testing.assert_array_equal(rec.packed(1, 4), pack_planes(planes[1:4]))
        for chunk in (1, 4, 5):
            joined = np.concatenate([p for _, p in rec.iter_packed(chunk)])
            np.testing.assert_array_equal(joined, pack_planes(planes))
    with open_recording(path, Geometry(1000, 1000), layout=Layout.PCIE1K) as rec:
        np.testing.assert_array_equal(rec.unpacked(5, 6), planes[5:6])


def test_a_raw_stream_that_starts_mid_plane_reads_from_its_first_boundary(tmp_path, planes, raw):
    path = tmp_path / "dump.dat"
    path.write_bytes(raw.reshape(-1)[77_777:].tobytes() + raw[0].tobytes())  # starts inside plane 0
    with open_recording(path) as rec:
        assert rec.offset_bytes == PCIE_PLANE_BYTES - 77_777 and rec.n_planes == len(planes)
        np.testing.assert_array_equal(rec.unpacked(), np.concatenate([planes[1:], planes[:1]]))


def test_a_truncated_or_desynchronised_file_is_refused_unless_partial(tmp_path, planes, raw):
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(raw.tobytes()[:-1000])
    with pytest.raises(FormatError, match=r"ends in 127000 bytes of a partial pcie1k plane.*--allow-partial"):
        open_recording(truncated)
    with pytest.warns(UserWarning, match="truncated"):
        with open_recording(truncated, allow_partial=True) as rec:
            np.testing.assert_array_equal(rec.unpacked(), planes[:-1])
    lost = raw.copy()
    lost[3, 63] = 0  # plane 3 no longer starts with (500, 0)
    desync = tmp_path / "desync.dat"
    desync.write_bytes(lost.tobytes())
    with pytest.raises(FormatError, match=r"plane 3 \(byte 384000\) does not start and end with the boundary tags"):
        open_recording(desync)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with open_recording(desync, allow_partial=True) as rec:
            assert rec.n_planes == 3
            np.testing.assert_array_equal(rec.unpacked(), planes[:3])


def test_layout_selection_and_its_errors(tmp_path, planes):
    pcie = write_pcie(tmp_path / "cam.dat", planes[:2])
    with pytest.raises(FormatError, match="not a whole number"):  # read as a .dat it is the wrong size
        open_recording(pcie, Geometry(1000, 1000), layout=Layout.DAT)
    with pytest.raises(ValueError, match="holds 1000x1000 planes, not 250x400"):
        open_recording(pcie, Geometry(250, 400), layout=Layout.PCIE1K)
    with open_recording(pcie, Geometry(10, 8)) as rec:  # an explicit other geometry: the .dat convention
        assert isinstance(rec, DatReader)
    dat = write_dat(tmp_path / "plain.dat", planes[:2])  # 1000x1000 in the .dat convention: not PCIe
    with open_recording(dat, Geometry(1000, 1000)) as rec:
        assert isinstance(rec, DatReader)
        np.testing.assert_array_equal(rec.unpacked(), planes[:2])
    with pytest.raises(ValueError, match="applies to raw .dat files"):
        open_recording(tmp_path / "x.npz", layout=Layout.PCIE1K)
    with pytest.raises(FormatError, match="no whole pcie1k plane"):
        open_recording(dat, layout=Layout.PCIE1K)


def test_the_writer_is_atomic(tmp_path, planes):
    target = tmp_path / "cam.dat"
    with pytest.raises(RuntimeError):
        with PcieWriter(target) as writer:
            writer.write_planes(planes[:1])
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="holds 1000x1000 planes"):
        PcieWriter(target, Geometry(250, 400))
