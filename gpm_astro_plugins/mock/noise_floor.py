"""The mock sky's noise floor: E[Z | what a noise-free image shows] (``Z_best``), a regression
fitted on a reference population drawn by the same model, and each galaxy's own floor
(``Z_floor``, the posterior standard deviation of Z given its cutout; see `measurement`)."""

from functools import lru_cache

import numpy as np

from gpm_astro.survey_constants import polynomial_design

from .population import image_features

_REFERENCE_SIZE = 12_000
#: share of too-large galaxies in the reference sample (size separates them anyway)
_REFERENCE_LARGE_RATE = 0.1
_REFERENCE_SEED = 20_250_404


@lru_cache(maxsize=8)
def _reference_sample(population, faint):
    """Image features and Z of the fixed-seed reference sample: 12,000 galaxies, 10 per cent of
    them too large (the sizes separate those anyway)."""
    rng = np.random.default_rng(_REFERENCE_SEED + int(faint))
    large = rng.uniform(size=_REFERENCE_SIZE) < _REFERENCE_LARGE_RATE
    reference = population.draw(rng, _REFERENCE_SIZE, faint=faint, large=large)
    return image_features(reference), reference["Z_true"]


@lru_cache(maxsize=8)
def _noise_floor_predictor(population, faint):
    """Fit E[Z | image features] on a reference population drawn by the same model.

    A full cubic polynomial in the nine standardised features of `image_features`, fitted by
    least squares to the reference sample (`_reference_sample`). Returns a function
    features -> Z_best.
    """
    features, z_true = _reference_sample(population, faint)
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale == 0] = 1.0

    def design(x):
        return polynomial_design((x - mean) / scale, 3)

    coefficients, *_ = np.linalg.lstsq(design(features), z_true, rcond=None)

    def predict(x):
        if len(x) == 0:
            return np.zeros(0)
        return design(x) @ coefficients

    return predict


#: finite-difference step of the Z_best gradient, in units of each feature's population spread
_GRADIENT_STEP = 1e-3
#: terms of the cubic polynomial of `_noise_floor_predictor` (9 features)
_CUBIC_TERMS = 220


@lru_cache(maxsize=8)
def _floor_models(population, faint):
    """What the per-galaxy floor needs, from the reference sample.

    Returns ``(variance, prior_covariance, feature_scale)``: Var(Z | image features) as a
    function of the features (`measurement.floor_variance_model` on the residuals of
    `_noise_floor_predictor`, inflated by n / (n - 220) for the fit's own degrees of freedom),
    the population covariance of the features (the prior of the measurement), and the features'
    population spread.
    """
    from .measurement import floor_variance_model

    features, z_true = _reference_sample(population, faint)
    residual = z_true - _noise_floor_predictor(population, faint)(features)
    residual = residual * np.sqrt(len(residual) / (len(residual) - _CUBIC_TERMS))
    return (floor_variance_model(features, residual), np.cov(features, rowvar=False),
            features.std(axis=0))


def per_galaxy_floor(population, faint, gal, observing, *, pixel_scale, gains, moffat_beta):
    """``Z_floor``: the posterior standard deviation of Z given each galaxy's cutout (dex).

    See `measurement` for the method. ``gal`` and ``observing`` hold the galaxies' population
    columns and their PSF and sky noise; all must be of the kind ``faint`` says.
    """
    from .measurement import feature_covariance
    from .measurement import per_galaxy_floor as combine

    n = len(gal["disk_q"])
    if n == 0:
        return np.zeros(0)
    predictor = _noise_floor_predictor(population, faint)
    variance, prior, spread = _floor_models(population, faint)
    features = image_features(gal)
    base = predictor(features)
    gradient = np.empty_like(features)
    for k in range(features.shape[1]):
        step = spread[k] * _GRADIENT_STEP or _GRADIENT_STEP
        moved = features.copy()
        moved[:, k] += step
        gradient[:, k] = (predictor(moved) - base) / step
    covariance = feature_covariance(gal, observing, prior, pixel_scale=pixel_scale,
                                    gains=gains, moffat_beta=moffat_beta)
    return combine(features, gradient, variance(features), covariance)
