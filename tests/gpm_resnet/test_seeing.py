"""GPM-ResNet's seeing correction: fitted on the calibration rows, applied in predict."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.exceptions import GPMAstroWarning, ParameterError, SchemaError
from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator
from gpm_astro_plugins.gpm_resnet.seeing import (BAD_SEEING_FLAG, MIN_SEEING_ROWS,
                                                 fit_seeing_correction, seeing_offset,
                                                 table_seeing)

from .conftest import error_head_config, make_galaxies

#: dex per arcsec of FWHM that the labels of `_seeing_dependent` carry and no image shows
SLOPE = 0.3


def _seeing_dependent(n, seed):
    """Galaxies whose label rises with a PSF FWHM that their cutouts do not show."""
    table = make_galaxies(n, seed=seed)
    fwhm = np.random.default_rng(seed + 50).uniform(1.0, 1.6, n)
    table["psfsize"] = np.column_stack([fwhm + 0.1, fwhm, fwhm - 0.1]).astype(np.float32)
    table["oh_p50"] = table["oh_p50"] + SLOPE * (fwhm - 1.3)
    return table


def test_the_fit_recovers_a_linear_trend_and_clips_outside_its_range():
    rng = np.random.default_rng(0)
    fwhm = rng.uniform(1.0, 1.6, 2000)
    value = rng.normal(8.8, 0.1, 2000)
    target = value + 0.05 - 0.2 * (fwhm - np.median(fwhm)) + rng.normal(0, 0.01, 2000)
    correction = fit_seeing_correction(value, target, fwhm)
    assert correction["intercept"] == pytest.approx(0.05, abs=0.002)
    assert correction["slope"] == pytest.approx(-0.2, abs=0.01)
    assert correction["n_rows"] == 2000 and correction["column"] == "psfsize"
    low, high = correction["range"]
    assert 1.0 <= low < 1.01 and 1.59 < high <= 1.6
    # beyond the calibration rows' range the correction stays at its end value
    assert seeing_offset([3.0], correction) == pytest.approx(seeing_offset([high], correction))
    # a calibration row without a FWHM counts as the reference seeing
    assert seeing_offset([np.nan], correction) == pytest.approx([correction["intercept"]])
    assert np.all(seeing_offset(fwhm, None) == 0)


@pytest.mark.parametrize("fwhm", [None, np.full(MIN_SEEING_ROWS, 1.3),
                                  np.r_[np.linspace(1, 2, MIN_SEEING_ROWS - 1), np.nan]])
def test_no_correction_without_enough_rows_or_spread_of_seeing(fwhm):
    n = MIN_SEEING_ROWS
    assert fit_seeing_correction(np.zeros(n), np.ones(n), fwhm) is None


def test_the_seeing_is_read_in_the_r_band_and_unusable_values_become_nan():
    table = Table({"psfsize": np.ma.masked_array([[1.4, 1.3, 1.2], [1.4, 0.0, 1.2],
                                                  [1.4, np.nan, 1.2], [1.4, 1.1, 1.2]],
                                                 mask=[[0] * 3, [0] * 3, [0] * 3, [0, 1, 0]])})
    np.testing.assert_array_equal(table_seeing(table, np.arange(4), "grz"),
                                  [1.3, np.nan, np.nan, np.nan])
    np.testing.assert_allclose(table_seeing(table, [0], "gzi"), [1.3])  # no r: the mean
    assert table_seeing(Table({"x": [1]}), [0], "grz") is None
    np.testing.assert_allclose(table_seeing(Table({"PSFSIZE": [1.2]}), [0], "grz"), [1.2])
    # Data Lab's ls_dr9.tractor gives one column per band
    tractor = Table({"psfsize_g": [1.5, 1.5], "PSFSIZE_R": [1.25, 0.0], "psfsize_z": [1.1, 1.1]})
    np.testing.assert_allclose(table_seeing(tractor, [0, 1], "grz"), [1.25, np.nan])
    with pytest.raises(SchemaError, match="psfsize has 3 values a row, the table's bands"):
        table_seeing(table, [0], "gr")
    np.testing.assert_allclose(table_seeing(Table({"psfsize": [1.2, -1]}), [0, 1], "grz"),
                               [1.2, np.nan])


@pytest.fixture(scope="module")
def corrected():
    estimator = GPMResNetEstimator(config=error_head_config(), progress=False,
                                   predict_batch_size=64)
    return estimator.fit(_seeing_dependent(120, 1), validation=_seeing_dependent(40, 2),
                         calibration=_seeing_dependent(600, 8))


def test_the_correction_is_fitted_on_the_calibration_rows_and_applied_in_predict(
        corrected, tmp_path):
    correction = corrected.seeing_correction_
    assert correction["n_rows"] == 600
    assert correction["slope"] == pytest.approx(SLOPE, abs=0.1)
    assert corrected.model_card()["seeing_correction"] == correction
    # the same cutouts in two seeings: the predictions differ by the correction alone
    table = _seeing_dependent(8, 3)
    good = corrected.predict(table)
    poor = table.copy()
    poor["psfsize"] = poor["psfsize"] + 0.2
    shifted = corrected.predict(poor)
    expected = (seeing_offset(table_seeing(poor, np.arange(8), "grz"), correction)
                - seeing_offset(table_seeing(table, np.arange(8), "grz"), correction))
    np.testing.assert_allclose(np.asarray(shifted["Z_pred"]) - np.asarray(good["Z_pred"]),
                               expected, atol=1e-9)
    assert np.all(expected > 0)
    # the saved model keeps it
    corrected.save(tmp_path / "model")
    loaded = GPMResNetEstimator.load(tmp_path / "model", progress=False, predict_batch_size=64)
    assert loaded.seeing_correction and loaded.seeing_correction_ == correction
    np.testing.assert_allclose(loaded.predict(table)["Z_pred"], good["Z_pred"], atol=1e-6)
    # loaded with seeing_correction=False: the stored correction is not applied
    off = GPMResNetEstimator.load(tmp_path / "model", progress=False, predict_batch_size=64,
                                  seeing_correction=False)
    out = off.predict(table)
    assert out.meta["gpm_astro"]["steps"][-1]["params"]["seeing_correction"].startswith(
        "switched off")
    np.testing.assert_allclose(
        np.asarray(good["Z_pred"]) - np.asarray(out["Z_pred"]),
        seeing_offset(table_seeing(table, np.arange(8), "grz"), correction), atol=1e-6)


def _step(out):
    return out.meta["gpm_astro"]["steps"][-1]["params"]


def test_a_corrected_model_flags_rows_without_seeing_and_warns_without_the_column(corrected):
    table = _seeing_dependent(4, 5)
    table["psfsize"][1, 1] = 0.0  # the Tractor's value for a band without exposures
    out = corrected.predict(table)
    assert list(out["Z_pred_flag"]) == ["ok", BAD_SEEING_FLAG, "ok", "ok"]
    assert list(np.ma.getmaskarray(out["Z_pred"])) == [False, True, False, False]
    assert _step(out)["seeing_correction"] == "applied"
    # a table without the column: uncorrected values, said in a warning and in the step
    bare = Table({"cutout": table["cutout"]}, meta=table.meta)
    with pytest.warns(GPMAstroWarning, match="lacks: Z_pred is not corrected"):
        uncorrected = corrected.predict(bare)
    assert _step(uncorrected)["seeing_correction"] == "not applied: no psfsize column"
    offset = seeing_offset(table_seeing(table, [0, 2, 3], "grz"), corrected.seeing_correction_)
    np.testing.assert_allclose(np.asarray(out["Z_pred"])[[0, 2, 3]]
                               - np.asarray(uncorrected["Z_pred"])[[0, 2, 3]], offset, atol=1e-9)


def test_no_correction_when_asked_for_none_or_without_the_column():
    config = error_head_config(epochs=1)
    calibration = _seeing_dependent(MIN_SEEING_ROWS, 8)
    off = GPMResNetEstimator(config=config, progress=False, seeing_correction=False).fit(
        _seeing_dependent(40, 1), validation=_seeing_dependent(20, 2), calibration=calibration)
    assert off.seeing_correction_ is None
    calibration.remove_column("psfsize")
    absent = GPMResNetEstimator(config=config, progress=False).fit(
        _seeing_dependent(40, 1), validation=_seeing_dependent(20, 2), calibration=calibration)
    assert absent.seeing_correction_ is None
    # neither needs the column to predict
    table = make_galaxies(3, seed=4)
    assert list(off.predict(table)["Z_pred_flag"]) == ["ok"] * 3
    assert list(absent.predict(table)["Z_pred_flag"]) == ["ok"] * 3
    with pytest.raises(ParameterError, match="seeing_correction must be True or False"):
        GPMResNetEstimator(config=config, progress=False, seeing_correction="yes").fit(
            _seeing_dependent(40, 1))


def test_a_seeing_beyond_the_training_range_is_outside_the_domain(corrected):
    low, high = corrected.domain_.ranges["psfsize"]
    assert 0.9 < low < 1.0 and 1.6 < high < 1.7  # training FWHM 1.0-1.6, widened 10 %
    table = _seeing_dependent(3, 6)
    table["psfsize"][:, 1] = [1.3, 2.5, 1.25]
    out = corrected.predict(table)
    flags = list(out["Z_pred_domain_flag"])
    assert "psfsize" not in flags[0] and "psfsize" not in flags[2]
    assert flags[1].startswith("out:") and "psfsize" in flags[1].split(":")[1].split(",")
    assert out["Z_pred_domain"][1] > 1
