"""TFP and TFI: the pinned semantics, and TFP on packed bytes equal to TFP on planes."""

import numpy as np
import pytest

from edge.reconstruction.classical import tfi, tfp, tfp_packed
from firmware_io.bitpack import pack_planes
from firmware_io.contract import Geometry


def one_pixel(spike_planes, n=41):
    planes = np.zeros((n, 1, 1), np.uint8)
    planes[list(spike_planes), 0, 0] = 1
    return planes


def test_tfp_is_the_window_mean_and_matches_packed():
    planes = (np.random.default_rng(0).random((41, 9, 13)) < 0.4).astype(np.uint8)
    expected = planes.mean(axis=0)
    np.testing.assert_allclose(tfp(planes), expected, rtol=1e-6)
    np.testing.assert_allclose(tfp_packed(pack_planes(planes), Geometry(9, 13)), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "spikes, interval",
    [
        ((15, 24), 9),        # spike before and after the key
        ((20, 23), 3),        # spike on the key plane counts as the earlier one
        ((17, 20, 21), 1),    # the last spike at or before the key, the first after it
        ((25, 30), 40),       # no spike before the key -> 2 * half
        ((5, 12), 40),        # no spike after the key -> 2 * half
        ((), 40),             # no spike at all
        ((0, 25), 40),        # plane 0 is never searched, as in the reference
        ((1, 40), 39),        # the search reaches plane 1 and plane 40
    ],
)
def test_tfi_edge_cases(spikes, interval):
    assert tfi(one_pixel(spikes))[0, 0] == pytest.approx(1.0 / interval)


def test_tfi_window_edges_for_short_windows():
    # T = 5: key 2, half 2: backwards planes 2, 1; forwards 3, 4
    assert tfi(one_pixel((1, 4), n=5))[0, 0] == pytest.approx(1 / 3)
    assert tfi(one_pixel((0, 4), n=5))[0, 0] == pytest.approx(1 / 4)


def test_bad_windows_are_rejected():
    with pytest.raises(ValueError):
        tfp(np.zeros((0, 2, 2)))
    with pytest.raises(ValueError):
        tfi(np.zeros((1, 2, 2)))
