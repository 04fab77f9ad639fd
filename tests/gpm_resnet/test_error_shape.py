"""The error shape: coverage within quintiles, fitted on a calibration split, held out."""

import numpy as np

from gpm_astro_plugins.gpm_resnet.error_model import (ONE_SIGMA, error_shape_factor,
                                                       fit_error_shape)


def _shrunk_estimates(n, seed):
    """Posterior means of a skewed prior (a sharp upper edge, a long low tail, like the
    mass-metallicity relation) seen through per-galaxy noise, with their posterior std: the
    coverage is exact overall but not within quintiles of the true value."""
    rng = np.random.default_rng(seed)
    z_true = 9.25 - rng.gamma(2.0, 0.1, n)
    noise = rng.uniform(0.05, 0.25, n)
    measured = z_true + rng.normal(0.0, 1.0, n) * noise
    prior_mean, prior_var = 9.05, 0.02
    weight = prior_var / (prior_var + noise ** 2)
    z_pred = prior_mean + weight * (measured - prior_mean)
    err = np.sqrt(weight * noise ** 2)
    return z_true, z_pred, err, noise


def _quintile_coverages(covered, values):
    edges = np.quantile(values, [0.2, 0.4, 0.6, 0.8])
    codes = np.searchsorted(edges, values, side="right")
    return np.array([covered[codes == q].mean() for q in range(5)])


def test_error_shape_makes_coverage_hold_within_quintiles_on_held_out_rows():
    z_true, z_pred, err, noise = _shrunk_estimates(8000, 0)  # the calibration split
    shape = fit_error_shape(np.abs(z_pred - z_true), err, z_pred,
                            {"Z_true": z_true, "noise": noise},
                            centre=float(np.mean(z_true)), scale=float(np.std(z_true)))
    assert len(shape["knots"]) == 12 and shape["groups"] == ["Z_true", "noise"]
    held_true, held_pred, held_err, held_noise = _shrunk_estimates(20000, 1)
    residual = np.abs(held_pred - held_true)
    before = _quintile_coverages(residual < held_err, held_true)
    shaped_err = held_err * error_shape_factor(held_pred, held_err, shape)
    after = _quintile_coverages(residual < shaped_err, held_true)
    # 4,000 galaxies a quintile: binomial sigma 0.007
    assert np.max(np.abs(before - ONE_SIGMA)) > 0.08, before  # the problem is there
    assert np.max(np.abs(after - ONE_SIGMA)) < 0.04, after
    assert abs(np.mean(residual < shaped_err) - ONE_SIGMA) < 0.015
    by_noise = _quintile_coverages(residual < shaped_err, held_noise)
    assert np.max(np.abs(by_noise - ONE_SIGMA)) < 0.035, by_noise


def test_error_shape_needs_enough_rows_and_none_is_the_identity():
    z_true, z_pred, err, _ = _shrunk_estimates(700, 2)
    assert fit_error_shape(np.abs(z_pred - z_true), err, z_pred, {"Z_true": z_true},
                           centre=9.0, scale=0.2) is None
    assert np.all(error_shape_factor(z_pred, err, None) == 1.0)
