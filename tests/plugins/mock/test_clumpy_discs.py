"""Clumpy mock discs: HII-region knots and spiral arms, recorded in the truth."""

import numpy as np
import pytest

from gpm_astro.exceptions import ParameterError
from gpm_astro_plugins.mock import MockSky
from gpm_astro_plugins.mock.rendering import KNOT_COLOUR, Clumps


@pytest.fixture(scope="module")
def two_skies():
    clumpy = MockSky(n_galaxies=12, seed=5, clumpy_rate=0.5, knot_fraction=0.4)
    smooth = MockSky(n_galaxies=12, seed=5, clumpy_rate=0.0)
    return clumpy.generate(), smooth.generate()


def test_truth_records_the_clumps_and_smooth_discs_are_untouched(two_skies):
    clumpy, smooth = two_skies
    truth = clumpy.truth
    is_clumpy = np.asarray(truth["clumpy"])
    assert 0 < is_clumpy.sum() < len(truth)
    assert set(np.asarray(truth["knot_fraction"])[is_clumpy]) == {0.4}
    assert set(np.asarray(truth["arm_fraction"])[is_clumpy]) == {0.1}
    assert np.all(np.asarray(truth["n_knots"])[is_clumpy] >= 8)
    assert np.all(np.asarray(truth["knot_fraction"])[~is_clumpy] == 0)
    assert not smooth.truth["clumpy"].any()
    # everything but the clumpy discs' own light is drawn from the same streams
    a, b = np.asarray(clumpy.images["cutout"]), np.asarray(smooth.images["cutout"])
    for i in range(len(truth)):
        same = np.array_equal(a[i], b[i], equal_nan=True)
        drawn = str(truth["bad_pixel_kind"][i]) != "all_zero"
        assert same == (not is_clumpy[i] or not drawn)
    for name in ("Z_true", "disk_flux", "hlr_arcsec"):
        np.testing.assert_array_equal(truth[name], smooth.truth[name])


@pytest.mark.parametrize("seed", [0, 3])
def test_clump_knots_are_the_same_for_the_same_seed(seed):
    # galsim.BaseDeviate(0) seeds from the clock: seed 0 drew other knots on every call
    def knot_positions():
        return Clumps(0.4, 0.1, 12, seed=seed).profiles(1.0)[0].points

    np.testing.assert_array_equal(knot_positions(), knot_positions())


def test_clumps_keep_the_band_fluxes():
    disk = np.array([2.0, 3.0, 4.0])
    smooth, knots, arms = Clumps(0.4, 0.1, 12, seed=1).band_fluxes(disk)
    np.testing.assert_allclose(smooth + knots + arms, disk)
    np.testing.assert_allclose(knots / disk, 0.4 * KNOT_COLOUR)  # blue knots
    np.testing.assert_allclose(arms / disk, 0.1)


@pytest.mark.parametrize("options, match", [
    ({"clumpy_rate": 1.5}, "clumpy_rate"),
    ({"knot_fraction": 0.7, "arm_fraction": 0.3}, "knot_fraction \\+ arm_fraction"),
])
def test_bad_clump_parameters(options, match):
    with pytest.raises(ParameterError, match=match):
        MockSky(n_galaxies=2, **options).catalog()
