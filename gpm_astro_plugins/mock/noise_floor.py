"""The mock sky's noise floor: E[Z | what a noise-free image shows], a regression fitted on a
reference population drawn by the same model."""

from functools import lru_cache

import numpy as np

from gpm_astro.survey_constants import polynomial_design

from .population import image_features

_REFERENCE_SIZE = 12_000
#: share of too-large galaxies in the reference sample (size separates them anyway)
_REFERENCE_LARGE_RATE = 0.1
_REFERENCE_SEED = 20_250_404


@lru_cache(maxsize=8)
def _noise_floor_predictor(population, faint):
    """Fit E[Z | image features] on a reference population drawn by the same model.

    A full cubic polynomial in the nine standardised features of `image_features`, fitted by
    least squares to a fixed-seed reference sample of 12,000 galaxies, 10 per cent of them too
    large (the sizes separate those anyway). Returns a function features -> Z_best.
    """
    rng = np.random.default_rng(_REFERENCE_SEED + int(faint))
    large = rng.uniform(size=_REFERENCE_SIZE) < _REFERENCE_LARGE_RATE
    reference = population.draw(rng, _REFERENCE_SIZE, faint=faint, large=large)
    features = image_features(reference)
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale == 0] = 1.0

    def design(x):
        return polynomial_design((x - mean) / scale, 3)

    coefficients, *_ = np.linalg.lstsq(design(features), reference["Z_true"], rcond=None)

    def predict(x):
        if len(x) == 0:
            return np.zeros(0)
        return design(x) @ coefficients

    return predict
