"""Hostile input: every step and both configurations must flag or pass, never crash or hang."""

import numpy as np
import pytest
from astropy.table import Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gpm_astro.preprocessing import PREPROCESS_FLAGS, preprocess_cutouts, resolve_steps

from . import constructed as C

SIZE = 24
SPECIAL = st.sampled_from([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-30,
                           3.4e38])
PIXELS = st.one_of(st.floats(-1e3, 1e3, width=32), SPECIAL)
BATCHES = arrays(np.float32, st.tuples(st.integers(1, 3), st.just(3), st.just(SIZE),
                                       st.just(SIZE)), elements=PIXELS)


def _with_galaxy(images):
    """Half the examples get a bright central blob so later steps also run."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    blob = 5.0 * np.exp(-((xx - 11.5) ** 2 + (yy - 11.5) ** 2) / 8.0)
    return np.where(np.isfinite(images) & (np.abs(images) < 1), images + blob, images)


@pytest.mark.parametrize("config", ["default", "paper"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images=BATCHES, add_galaxy=st.booleans())
def test_configs_never_raise_on_any_pixels(config, images, add_galaxy):
    if add_galaxy:
        images = _with_galaxy(images).astype(np.float32)
    out = preprocess_cutouts(Table({"cutout": images}), config=config, progress=False)
    assert len(out) == len(images)
    assert set(out["preprocess_flag"].tolist()) <= set(PREPROCESS_FLAGS)


@pytest.mark.parametrize("name", ["mask_neighbours", "mask_neighbours_paper",
                                  "blend_check_photutils", "fragment_check_paper"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images=BATCHES)
def test_self_contained_steps_never_raise(name, images):
    # few deblending levels: random pixels make hundreds of segments to deblend
    params = {"n_levels": 4} if name == "blend_check_photutils" else {}
    step, = resolve_steps([(name, params)])
    result = step.process(images, {"bands": "grz", "pixel_scale": 0.262})
    assert result.images.shape == images.shape
    assert set(np.asarray(result.flags).tolist()) <= set(PREPROCESS_FLAGS)


@pytest.mark.parametrize("config", ["default", "paper"])
def test_pathological_cutouts_are_flagged(config):
    blank = np.zeros((3, C.SIZE, C.SIZE), np.float32)
    images = C.stack(blank, blank + 0.1, blank - 0.5, np.full_like(blank, np.nan),
                     np.full_like(blank, 1e20), -C.isolated(seed=1), C.isolated(seed=2) * 1e4)
    out = preprocess_cutouts(Table({"cutout": images}), config=config, progress=False)
    flags = out["preprocess_flag"].tolist()
    assert flags[:5] == ["invalid_pixels"] * 5
    assert flags[5] == "no_central_source"  # all-negative galaxy: nothing above the sky
    assert flags[6] in PREPROCESS_FLAGS
