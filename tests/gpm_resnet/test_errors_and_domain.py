"""GPM-ResNet's error head (calibration and ranking on held-out data) and domain flag."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from gpm_astro import predict_metallicity
from gpm_astro.exceptions import GPMAstroError, GPMAstroWarning, SchemaError
from gpm_astro.metrics import summarize
from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator
from gpm_astro_plugins.gpm_resnet.domain import DomainModel, image_quantities
from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

from .conftest import error_head_config, make_galaxies


def _noisy_labels(n, seed):
    """Galaxies whose label noise is 0.02 dex for bright ones and 0.25 dex for faint ones:
    the brightness, which the image shows, says how well each label can be predicted."""
    table = make_galaxies(n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    faint = rng.uniform(size=n) < 0.5
    table["cutout"][faint] *= 0.25
    noise = np.where(faint, 0.25, 0.02)
    table["noise"] = noise
    table["oh_p50"] = table["oh_p50"] + rng.normal(0.0, 1.0, n) * noise
    return table


@pytest.fixture(scope="module")
def error_head_model():
    estimator = GPMResNetEstimator(config=error_head_config(epochs=12), progress=False,
                                   predict_batch_size=64)
    # calibration split: a table used neither for training nor for the report (nor for the
    # best-epoch choice): 1,200 rows give the error shape three knots
    return estimator.fit(_noisy_labels(240, 1), validation=_noisy_labels(160, 2),
                         calibration=_noisy_labels(1200, 8))


def test_error_head_is_calibrated_and_ranks_on_held_out_galaxies(error_head_model):
    held_out = _noisy_labels(400, 3)
    out = error_head_model.predict(held_out)
    delta = np.abs(np.asarray(out["Z_pred"]) - np.asarray(held_out["oh_p50"]))
    err = np.asarray(out["Z_pred_err"])
    coverage = np.mean(delta < err)
    # 400 galaxies: the binomial sigma of a 68 % coverage is 0.023
    assert 0.6 < coverage < 0.76, coverage
    # the error knows which galaxies are noisy: the faint half gets the larger errors
    noise = np.asarray(held_out["noise"])
    assert spearmanr(err, noise)[0] > 0.5
    assert np.median(err[noise > 0.1]) > 2 * np.median(err[noise < 0.1])
    card = error_head_model.model_card()
    assert card["uncertainty"]["calibration_split"] == "calibration"
    assert card["uncertainty"]["error_model"].startswith("error head")
    assert card["training_data"]["n_calibration"] == 1200


def test_error_shape_is_fitted_on_the_calibration_split_and_applied_in_predict(tmp_path):
    from gpm_astro_plugins.gpm_resnet.error_model import (ONE_SIGMA, error_shape_factor,
                                                           error_shape_shift)

    estimator = GPMResNetEstimator(config=error_head_config(), progress=False,
                                   predict_batch_size=64,
                                   error_shape=True)
    calibration, validation = _noisy_labels(1200, 8), _noisy_labels(40, 2)
    estimator.fit(_noisy_labels(120, 1), validation=validation, calibration=calibration)
    shape = estimator.err_shape_
    assert len(shape["knots"]) == 3 and shape["groups"] == ["oh_p50", "mag_r", "radius_r"]
    # the validation metrics (model card, `gpm-astro train`) are those of what predict gives:
    # the bias-corrected Z_pred with its shaped error
    on_validation = estimator.predict(validation)
    expected = summarize(on_validation["Z_pred"], validation["oh_p50"],
                         on_validation["Z_pred_err"])
    for key in ("mu", "sigma", "coverage", "median_err"):
        assert estimator.validation_metrics_[key] == pytest.approx(expected[key], rel=1e-6), key
    assert estimator.model_card()["uncertainty"]["err_shape"] == shape
    # exactly 68.27 % of the calibration rows are covered, by construction
    out = estimator.predict(calibration)
    covered = np.abs(np.asarray(out["Z_pred"]) - calibration["oh_p50"]) < out["Z_pred_err"]
    assert abs(np.mean(covered) - ONE_SIGMA) < 2 / 1200
    # predict applies the shape: without it the errors are the bare calibrated ones
    held_out = _noisy_labels(50, 9)
    shaped = estimator.predict(held_out)
    estimator.err_shape_ = None
    unshaped = estimator.predict(held_out)
    bare_pred, bare = np.asarray(unshaped["Z_pred"]), np.asarray(unshaped["Z_pred_err"])
    estimator.err_shape_ = shape
    np.testing.assert_allclose(shaped["Z_pred"], bare_pred + error_shape_shift(bare_pred, shape),
                               rtol=1e-12)
    np.testing.assert_allclose(
        shaped["Z_pred_err"], bare * error_shape_factor(bare_pred, bare, shape), rtol=1e-9)
    assert not np.allclose(shaped["Z_pred_err"], bare)
    # and the saved model keeps it
    estimator.save(tmp_path / "model")
    loaded = GPMResNetEstimator.load(tmp_path / "model", progress=False, predict_batch_size=64)
    assert loaded.error_shape and loaded.calibration_split_ == "calibration"
    np.testing.assert_allclose(loaded.predict(held_out)["Z_pred_err"], shaped["Z_pred_err"],
                               rtol=1e-5)


def test_error_head_survives_save_and_load(error_head_model, tmp_path):
    table = _noisy_labels(12, 4)
    before = error_head_model.predict(table)
    error_head_model.save(tmp_path / "model")
    loaded = GPMResNetEstimator.load(tmp_path / "model", progress=False)
    after = loaded.predict(table)
    for column in ("Z_pred", "Z_pred_err", "Z_pred_domain"):
        np.testing.assert_allclose(after[column], before[column], rtol=1e-5, atol=1e-6)
    assert list(after["Z_pred_domain_flag"]) == list(before["Z_pred_domain_flag"])


def test_domain_flag_fires_on_fainter_galaxies_and_is_quiet_on_the_test_split(
        error_head_model):
    test_split = _noisy_labels(200, 5)
    fainter = make_galaxies(60, seed=6)
    fainter["cutout"] *= 0.002  # >= 3 mag fainter than the faintest training galaxy
    quiet = predict_metallicity(test_split, estimator=error_head_model, progress=False)
    fired = predict_metallicity(fainter, estimator=error_head_model, progress=False)
    quiet_flags = np.asarray(quiet["Z_pred_domain_flag"]).astype(str)
    fired_flags = np.asarray(fired["Z_pred_domain_flag"]).astype(str)
    assert np.mean(np.char.startswith(quiet_flags, "out")) <= 0.05
    assert np.all(np.char.startswith(fired_flags, "out"))
    assert all("mag_r" in flag for flag in fired_flags)
    assert np.all(np.asarray(fired["Z_pred_domain"]) > 1)
    assert np.median(np.asarray(quiet["Z_pred_domain"])) < 1


def test_domain_model_checks_each_quantity_and_the_features():
    rng = np.random.default_rng(0)
    train = {"mag_r": rng.uniform(15, 17, 500), "redshift": rng.uniform(0.01, 0.2, 500)}
    features = rng.normal(size=(500, 4))
    model = DomainModel.fit(train, features, rng.normal(size=(200, 4)),
                            redshift_column="z_phot_median")
    score, flags = model.score({"mag_r": np.array([16.0, 20.0, 16.0, 16.0]),
                                "redshift": np.array([0.1, 0.1, 0.5, np.nan])},
                               np.vstack([np.zeros((3, 4)), np.full((1, 4), 8.0)]))
    assert list(flags) == ["in", "out:mag_r", "out:redshift", "out:features"]
    assert score[0] < 1 < score[1]
    # a missing redshift skips that check; the card round-trips
    again = DomainModel.from_card(model.to_card(), model.tensors())
    assert np.array_equal(again.score({"mag_r": np.array([20.0])}, np.zeros((1, 4)))[1],
                          ["out:mag_r"])


def test_no_positive_flux_in_the_aperture_fails_the_check_instead_of_skipping_it(
        error_head_model):
    rng = np.random.default_rng(0)
    train = {"mag_r": rng.uniform(15, 17, 500), "colour_gr": rng.uniform(0.5, 1, 500),
             "redshift": rng.uniform(0.01, 0.2, 500)}
    model = DomainModel.fit(train, rng.normal(size=(500, 4)), rng.normal(size=(200, 4)))
    score, flags = model.score({"mag_r": np.array([16.0, np.nan]),
                                "colour_gr": np.array([np.nan, 0.7]),
                                "redshift": np.array([0.1, np.nan])}, np.zeros((2, 4)))
    # a NaN magnitude or colour is a flux <= 0 (fainter than any magnitude); a NaN redshift
    # is unknown and stays skipped
    assert list(flags) == ["out:colour_gr", "out:mag_r"] and np.all(np.isinf(score))
    # through predict: a galaxy with no positive r-band flux in its aperture
    table = _noisy_labels(3, 4)
    table["cutout"][1, 1] = -0.01
    out = error_head_model.predict(table)
    assert out["Z_pred_flag"][1] == "ok"
    reasons = out["Z_pred_domain_flag"][1].split(":")[1].split(",")
    assert {"mag_r", "colour_gr", "colour_rz", "radius_r"} <= set(reasons)
    assert np.isinf(out["Z_pred_domain"][1])


def test_image_quantities_measure_colour_and_size():
    images = make_galaxies(3, seed=7)["cutout"]
    q = image_quantities(np.asarray(images), "grz")
    # the synthetic galaxies have g : r : z = 0.6 : 1.0 : 1.4
    np.testing.assert_allclose(q["colour_gr"], 2.5 * np.log10(1.0 / 0.6), atol=0.02)
    np.testing.assert_allclose(q["colour_rz"], 2.5 * np.log10(1.4 / 1.0), atol=0.02)
    assert np.all(q["radius_r"] > 0)


def test_domain_flag_on_mock_galaxies_fainter_and_farther_than_the_training_set():
    from gpm_astro_plugins.mock.sky import MockSky

    clean = {"blend_rate": 0, "large_rate": 0, "empty_rate": 0, "bad_pixel_rate": 0,
             "per_galaxy_floor": False}
    labelled = MockSky(n_galaxies=200, seed=2, labelled_fraction=1.0, **clean).generate()
    faint = MockSky(n_galaxies=30, seed=3, labelled_fraction=0.0, **clean).generate()
    table = labelled.images
    table["Z_true"] = labelled.truth["Z_true"]
    # the archive is sorted by flux: split at random
    table = table[np.random.default_rng(0).permutation(len(table))]
    config = GPMResNetConfig(name="test", width=0.125, blocks=(1, 1, 1, 1), crop_size=32,
                             input_scaling="asinh", drop_prob=0.0, epochs=2, batch_size=32,
                             standardize_target=True, error_head=True, head_hidden=16)
    estimator = GPMResNetEstimator(config=config, progress=False, predict_batch_size=64)
    estimator.fit(table[:120], target="Z_true", validation=table[120:160])
    assert estimator.domain_.redshift_column == "z_phot_median"
    quiet = np.asarray(estimator.predict(table[160:])["Z_pred_domain_flag"]).astype(str)
    fired = np.asarray(estimator.predict(faint.images)["Z_pred_domain_flag"]).astype(str)
    assert np.mean(np.char.startswith(quiet, "out")) <= 0.1
    assert np.mean(np.char.startswith(fired, "out")) >= 0.9
    # without a redshift column the check cannot be made: said, not silently skipped
    no_redshift = faint.images.copy()
    no_redshift.remove_columns([c for c in ("z_phot_median", "z") if c in no_redshift.colnames])
    with pytest.warns(GPMAstroWarning, match="no redshift column"):
        estimator.predict(no_redshift[:4])


def test_calibrate_refits_a_saved_models_errors_on_new_rows(error_head_model, tmp_path):
    from gpm_astro_plugins.gpm_resnet.error_model import ONE_SIGMA

    error_head_model.save(tmp_path / "model")
    loaded = GPMResNetEstimator.load(tmp_path / "model", progress=False, predict_batch_size=64,
                                     error_shape=True)
    before = (loaded.err_scale_, loaded.err_constant_)
    # labels twice as noisy as the training sky's: the errors must grow to cover them
    noisier = _noisy_labels(900, 21)
    noisier["oh_p50"] = noisier["oh_p50"] + np.random.default_rng(5).normal(0, 0.1, 900)
    assert loaded.calibrate(noisier) is loaded
    assert (loaded.err_scale_, loaded.err_constant_) != before
    shape = loaded.err_shape_
    assert shape is not None and len(shape["knots"]) == 2 and shape["n_rows"] == 900
    card = loaded.model_card()
    assert card["training_data"]["n_calibration"] == 900
    assert card["uncertainty"]["calibration_split"] == "calibration"
    # the validation metrics were measured with the errors fit gave: said so in the card
    assert card["metrics"]["validation"]["measured_before_calibrate"] is True
    assert "measured_before_calibrate" not in error_head_model.validation_metrics_
    # exactly 68.27 % of the calibration rows are covered, by construction, as after fit
    out = loaded.predict(noisier)
    covered = np.abs(np.asarray(out["Z_pred"]) - noisier["oh_p50"]) < out["Z_pred_err"]
    assert abs(np.mean(covered) - ONE_SIGMA) < 2 / 900
    # the original model is untouched, and a table in other bands is refused
    assert (error_head_model.err_scale_, error_head_model.err_constant_) == before
    other = noisier[:10]
    other.meta["bands"] = "zrg"
    with pytest.raises(SchemaError, match="calibration bands"):
        loaded.calibrate(other)


def test_calibrate_needs_a_trained_model():
    with pytest.raises(GPMAstroError, match="not fitted"):
        GPMResNetEstimator(config=error_head_config(), progress=False).calibrate(
            _noisy_labels(10, 0))
