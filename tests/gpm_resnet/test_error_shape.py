"""The error shape: coverage within quintiles, fitted on a calibration split, held out."""

import numpy as np

from scipy.stats import spearmanr

from gpm_astro_plugins.gpm_resnet.error_model import (ONE_SIGMA, error_shape_factor,
                                                       error_shape_shift, fit_error_shape)


def _shrunk_estimates(n, seed):
    """Posterior means of a skewed prior (a sharp upper edge, a long low tail, like the
    mass-metallicity relation) seen through per-galaxy noise, with their posterior std: the
    coverage is exact overall but not within quintiles of the true value."""
    rng = np.random.default_rng(seed)
    z_true = 9.25 - rng.gamma(2.0, 0.1, n)
    noise = rng.uniform(0.03, 0.15, n)  # shrinkage 0.5-0.95, as on the mock sky
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


def _shaped(shape, pred, err):
    return pred + error_shape_shift(pred, shape), err * error_shape_factor(pred, err, shape)


def test_error_shape_makes_coverage_hold_within_quintiles_on_held_out_rows():
    z_true, z_pred, err, noise = _shrunk_estimates(8000, 0)  # the calibration split
    shape = fit_error_shape(z_pred, z_true, err, {"Z_true": z_true, "noise": noise},
                            centre=float(np.mean(z_true)), scale=float(np.std(z_true)))
    assert len(shape["knots"]) == len(shape["shift"]) == 8
    assert shape["groups"] == ["Z_true", "noise"]
    held_true, held_pred, held_err, held_noise = _shrunk_estimates(20000, 1)
    before = _quintile_coverages(np.abs(held_pred - held_true) < held_err, held_true)
    shaped_pred, shaped_err = _shaped(shape, held_pred, held_err)
    covered = np.abs(shaped_pred - held_true) < shaped_err
    after = _quintile_coverages(covered, held_true)
    # 4,000 galaxies a quintile: binomial sigma 0.007
    assert np.max(np.abs(before - ONE_SIGMA)) > 0.08, before  # the problem is there
    assert np.max(np.abs(after - ONE_SIGMA)) < 0.03, after
    assert abs(np.mean(covered) - ONE_SIGMA) < 0.015
    by_noise = _quintile_coverages(covered, held_noise)
    assert np.max(np.abs(by_noise - ONE_SIGMA)) < 0.03, by_noise
    # the errors still rank galaxies by their noise, and the correction costs little accuracy
    # (0.75; the shape without the correction, a factor alone, reached 0.59)
    assert spearmanr(shaped_err, held_noise)[0] > 0.65
    rms = np.sqrt(np.mean((held_pred - held_true) ** 2))
    assert np.sqrt(np.mean((shaped_pred - held_true) ** 2)) < 1.02 * rms


def test_error_shape_bias_correction_undoes_part_of_the_pull_at_the_ends():
    z_true, z_pred, err, noise = _shrunk_estimates(8000, 3)
    shape = fit_error_shape(z_pred, z_true, err, {"Z_true": z_true},
                            centre=float(np.mean(z_true)), scale=float(np.std(z_true)))
    held_true, held_pred, held_err, _ = _shrunk_estimates(20000, 4)
    shifted = held_pred + error_shape_shift(held_pred, shape)
    top = held_true > np.quantile(held_true, 0.8)  # pulled down towards the prior's mean
    assert np.mean(held_pred[top] - held_true[top]) < -0.03
    assert (np.mean(shifted[top] - held_true[top])
            > np.mean(held_pred[top] - held_true[top]) + 0.005)


def test_error_shape_needs_enough_rows_and_none_is_the_identity():
    z_true, z_pred, err, _ = _shrunk_estimates(700, 2)
    assert fit_error_shape(z_pred, z_true, err, {"Z_true": z_true},
                           centre=9.0, scale=0.2) is None
    assert np.all(error_shape_factor(z_pred, err, None) == 1.0)
    assert np.all(error_shape_shift(z_pred, None) == 0.0)


def test_a_shape_saved_before_the_bias_correction_still_applies():
    old = {"centre": 9.0, "scale": 0.2, "knots": [-1.0, 1.0], "log_scale": [0.0, 0.5],
           "err_reference": 0.1, "err_power": 0.2, "groups": ["Z_true"], "n_rows": 8000}
    pred, err = np.array([8.8, 9.0, 9.2]), np.array([0.1, 0.1, 0.2])
    assert np.all(error_shape_shift(pred, old) == 0.0)
    np.testing.assert_allclose(error_shape_factor(pred, err, old),
                               np.exp([0.0, 0.25, 0.5]) * np.array([1, 1, 2 ** 0.2]))


def test_error_shape_bias_correction_is_capped_on_few_rows():
    from gpm_astro_plugins.gpm_resnet.error_model import SHIFT_RMS_CAP

    # 800 rows, strong shrinkage: the coverage terms alone would move the ends far
    rng = np.random.default_rng(7)
    z_true = 9.25 - rng.gamma(2.0, 0.1, 800)
    noise = rng.uniform(0.1, 0.3, 800)
    weight = 0.02 / (0.02 + noise ** 2)
    z_pred = 9.05 + weight * (z_true + rng.normal(0.0, 1.0, 800) * noise - 9.05)
    err = np.sqrt(weight) * noise
    shape = fit_error_shape(z_pred, z_true, err, {"Z_true": z_true},
                            centre=float(np.mean(z_true)), scale=float(np.std(z_true)))
    shifted = z_pred + error_shape_shift(z_pred, shape)
    rise = np.sqrt(np.mean((shifted - z_true) ** 2)) / np.sqrt(np.mean((z_pred - z_true) ** 2))
    assert rise - 1 <= SHIFT_RMS_CAP + 1e-6, rise
    assert np.max(np.abs(shifted - z_pred)) > 0.005  # capped, not switched off
