"""Metrics of eq. 3 and the binned / calibration statistics."""

import numpy as np
import pytest

from gpm_astro.exceptions import ParameterError
from gpm_astro.metrics import (binned_statistics, error_calibration, nmad, summarize,
                               tremonti_mzr)


def test_nmad_matches_hand_computation():
    delta = np.array([0.10, -0.20, 0.05, 0.30, -0.05, 2.00, 0.00])
    # median = 0.05; |delta - 0.05| = .05 .25 0 .25 .10 1.95 .05 -> sorted median 0.10
    assert nmad(delta) == pytest.approx(1.4826 * 0.10)


def test_nmad_ignores_masked_and_nan():
    delta = np.ma.array([0.1, -0.1, 0.0, 99.0, np.nan], mask=[0, 0, 0, 1, 0])
    assert nmad(delta) == pytest.approx(1.4826 * 0.1)
    assert np.isnan(nmad([]))


def test_nmad_equals_sigma_for_normal_residuals():
    delta = np.random.default_rng(0).normal(0.0, 0.12, 200_000)
    assert nmad(delta) == pytest.approx(0.12, rel=0.01)


def test_summarize_whole_set_not_batch_average():
    rng = np.random.default_rng(1)
    true = rng.uniform(8.3, 9.3, 5000)
    pred = true + 0.03 + rng.normal(0, 0.1, 5000)
    stats = summarize(pred, true)
    delta = pred - true
    assert stats["mu"] == pytest.approx(delta.mean())
    assert stats["sigma"] == pytest.approx(delta.std())
    assert stats["nmad"] == pytest.approx(1.4826 * np.median(np.abs(delta - np.median(delta))))
    # the published code's NMAD divided by the batch count is ~20x smaller: we must not be
    assert stats["nmad"] > 0.09
    assert stats["n"] == 5000 and stats["n_excluded"] == 0


def test_summarize_excludes_missing_truth_and_masked_predictions():
    pred = np.ma.array([9.0, 9.1, 8.9, 9.2], mask=[0, 0, 1, 0])
    true = np.array([9.0, -9999.0, 8.9, 9.0])
    stats = summarize(pred, true, err=[0.1, 0.1, 0.1, 0.1])
    assert stats["n"] == 2 and stats["n_excluded"] == 2
    assert stats["mu"] == pytest.approx(0.1)
    assert stats["coverage"] == pytest.approx(0.5)  # |0| < .1 yes, |0.2| < .1 no


def test_error_calibration_is_68_percent_for_gaussian_errors():
    rng = np.random.default_rng(2)
    true = np.zeros(100_000)
    err = rng.uniform(0.05, 0.2, true.size)
    pred = rng.normal(0, err)
    assert error_calibration(pred, true, err) == pytest.approx(0.6827, abs=0.005)


def test_binned_statistics_bins_and_edges():
    true = np.array([8.1, 8.2, 8.6, 8.7, 9.0])
    pred = true + np.array([0.1, 0.1, -0.2, 0.0, 0.3])
    table = binned_statistics(pred, true, true, [8.0, 8.5, 9.0], by_name="oh_p50")
    assert table["n"].tolist() == [2, 3]  # 9.0 is in the last, closed bin
    assert table["mu"][0] == pytest.approx(0.1)
    assert table["mu"][1] == pytest.approx(np.mean([-0.2, 0.0, 0.3]))
    assert set(table["quantity"]) == {"oh_p50"}


def test_binned_statistics_bad_bins():
    with pytest.raises(ParameterError, match="bins"):
        binned_statistics([1.0], [1.0], [1.0], 0)
    with pytest.raises(ParameterError, match="increasing"):
        binned_statistics([1.0], [1.0], [1.0], [2.0, 1.0])


def test_tremonti_relation_values():
    # eq. 5 by hand at three masses
    for x in (8.5, 10.0, 11.5):
        assert tremonti_mzr(x) == pytest.approx(-1.492 + 1.847 * x - 0.08026 * x * x)
    assert tremonti_mzr(10.0) == pytest.approx(8.952, abs=1e-4)
