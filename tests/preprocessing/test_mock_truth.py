"""On the mock sky, the default configuration gives the right flag to nearly every cutout."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.preprocessing import preprocess_cutouts


@pytest.fixture(scope="module")
def mock_sky():
    from gpm_astro_plugins.mock import EXPECTED_FLAG, MockSky

    sky = MockSky(n_galaxies=100, seed=11).generate()
    expected = np.array([EXPECTED_FLAG[c] for c in np.asarray(sky.truth["truth_case"])])
    return sky.images, np.asarray(sky.truth["truth_case"]).astype(str), expected


def test_default_flags_at_least_90_percent_of_the_mock_right(mock_sky):
    images, case, expected = mock_sky
    out = preprocess_cutouts(images, progress=False)
    flags = np.asarray(out["preprocess_flag"]).astype(str)
    assert np.mean(flags == expected) >= 0.90
    # every truth case is mostly right, not only the common clean one
    for truth_case in set(case) - {"blended"}:
        assert np.mean(flags[case == truth_case] == expected[case == truth_case]) >= 0.8
    assert np.all(flags[case == "bad_pixels"] == "invalid_pixels")
    assert np.mean(flags[case == "clean"] == "ok") >= 0.95


def test_default_beats_the_paper_recipe_on_the_mock(mock_sky):
    images, _, expected = mock_sky
    table = Table({"cutout": images["cutout"]}, meta=dict(images.meta))
    default = np.asarray(preprocess_cutouts(table, progress=False)["preprocess_flag"])
    paper = np.asarray(preprocess_cutouts(table, config="paper",
                                          progress=False)["preprocess_flag"])
    assert np.mean(default == expected) > np.mean(paper == expected) + 0.2
