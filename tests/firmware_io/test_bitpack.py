"""Bit packing in camera order: round trips, the documented bit/row order, counting on packed bytes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_io.bitpack import block_counts, count_spikes, pack_planes, unpack_planes
from firmware_io.contract import Geometry

geometries = st.tuples(st.integers(1, 40), st.integers(1, 70))


@settings(max_examples=60, deadline=None)
@given(geometries, st.integers(1, 300), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip_and_counts(shape, n, rate, seed):
    geometry = Geometry(*shape)
    planes = (np.random.default_rng(seed).random((n, *shape)) < rate).astype(np.uint8)
    packed = pack_planes(planes)
    assert packed.shape == (n, geometry.plane_bytes)
    np.testing.assert_array_equal(unpack_planes(packed, geometry), planes)
    np.testing.assert_array_equal(count_spikes(packed, geometry), planes.sum(axis=0))


def test_camera_order_lsb_first_rows_flipped():
    geometry = Geometry(2, 8)
    planes = np.zeros((1, 2, 8), np.uint8)
    planes[0, 0, 0] = 1  # top-left pixel: stored in the last row (rows are upside down)
    planes[0, 1, 2] = 1  # bottom row, column 2: stored first, bit 2 of byte 0
    packed = pack_planes(planes)
    assert packed.tolist() == [[0b100, 0b1]]
    np.testing.assert_array_equal(unpack_planes(packed, geometry), planes)
    # numpy's reference decoding of the same bytes, then flipped, gives the same planes
    reference = np.unpackbits(packed, axis=1, bitorder="little").reshape(1, 2, 8)[:, ::-1]
    np.testing.assert_array_equal(reference, planes)


def test_count_spikes_beyond_lane_capacity():
    geometry = Geometry(3, 5)
    planes = np.ones((700, 3, 5), np.uint8)  # > 255 planes: lane sums must be split
    assert (count_spikes(pack_planes(planes), geometry) == 700).all()


def test_block_counts_sum_to_window_counts():
    geometry = Geometry(10, 16)
    planes = (np.random.default_rng(3).random((100, 10, 16)) < 0.3).astype(np.uint8)
    blocks = block_counts(pack_planes(planes), geometry, 20)
    assert blocks.shape == (5, 10, 16)
    np.testing.assert_array_equal(blocks.sum(axis=0), planes.sum(axis=0))


def test_wrong_plane_size_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="12500"):
        unpack_planes(np.zeros((2, 100), np.uint8), Geometry(250, 400))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 600), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_native_and_numpy_spike_counts_agree(n, nbytes, seed):
    from firmware_io.bitpack import _bit_counts, _bit_counts_numpy
    from firmware_io.kernels import spike_count_bits

    if spike_count_bits() is None:
        import pytest

        pytest.skip("the native kernel cannot be built here")
    packed = np.random.default_rng(seed).integers(0, 256, (n, nbytes), dtype=np.uint8)
    np.testing.assert_array_equal(_bit_counts(packed), _bit_counts_numpy(packed)[: 8 * nbytes])
    strided = np.random.default_rng(seed).integers(0, 256, (n, nbytes + 5), dtype=np.uint8)[:, :nbytes]
    np.testing.assert_array_equal(_bit_counts(strided), _bit_counts_numpy(np.ascontiguousarray(strided))[: 8 * nbytes])
