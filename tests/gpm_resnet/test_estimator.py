"""GPMResNetEstimator: fit/predict contract, flags, errors, save/load, tampering, bad input."""

import json

import numpy as np
import pytest
from astropy.table import MaskedColumn

from gpm_astro.exceptions import GPMAstroError, ParameterError, SchemaError, WeightsError
from gpm_astro.testing import check_estimator
from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator, GPMResNetMassEstimator
from gpm_astro_plugins.gpm_resnet.estimator import CARD_FILE, WEIGHTS_FILE

from .conftest import make_galaxies


@pytest.fixture(scope="module")
def fitted():
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    config = GPMResNetConfig(name="test", width=0.125, blocks=(1, 1, 1, 1), input_size=None,
                             input_scaling="asinh", drop_prob=0.15, drop_block_size=3,
                             epochs=4, batch_size=16, lr=2e-3, standardize_target=True,
                             head_hidden=16)
    table = make_galaxies(60, seed=1)
    estimator = GPMResNetEstimator(config=config, mc_passes=5, progress=False,
                                   predict_batch_size=16)
    return estimator.fit(table), table


def test_predict_columns_and_errors(fitted):
    estimator, _ = fitted
    table = make_galaxies(20, seed=9)
    out = estimator.predict(table)
    assert out.colnames == ["Z_pred", "Z_pred_err", "Z_pred_flag", "Z_pred_domain",
                            "Z_pred_domain_flag"]
    assert len(out) == 20 and str(out["Z_pred"].unit) == "dex"
    assert np.all(out["Z_pred_flag"] == "ok")
    assert np.all(np.isfinite(out["Z_pred"])) and np.all(out["Z_pred_err"] > 0)
    assert estimator.err_scale_ > 0
    # per-galaxy errors: the MC spread differs from galaxy to galaxy
    assert np.ptp(out["Z_pred_err"]) > 0
    steps = out.meta["gpm_astro"]["steps"]
    assert steps[-1]["step"] == "gpm_resnet.predict"


def test_bad_rows_are_flagged_not_dropped(fitted):
    estimator, _ = fitted
    table = make_galaxies(6, seed=10)
    table["preprocess_ok"] = [True, False, True, True, True, True]
    table["preprocess_flag"] = ["ok", "blended", "ok", "ok", "ok", "ok"]
    cutouts = table["cutout"].copy()
    cutouts[2, 1, 3, 3] = np.nan
    table["cutout"] = MaskedColumn(cutouts, mask=np.zeros(cutouts.shape, bool))
    table["cutout"].mask[4] = True
    before = table.copy()
    out = estimator.predict(table)
    assert list(out["Z_pred_flag"]) == ["ok", "preprocess:blended", "invalid_pixels", "ok",
                                        "missing_cutout", "ok"]
    assert list(out["Z_pred"].mask) == [False, True, True, False, True, False]
    assert np.array_equal(before["cutout"].mask, table["cutout"].mask)  # input untouched
    clean = estimator.predict(make_galaxies(6, seed=10))
    np.testing.assert_allclose(out["Z_pred"][[0, 3, 5]], clean["Z_pred"][[0, 3, 5]],
                               rtol=1e-6)


def test_fit_skips_unusable_rows_and_counts_them():
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    table = make_galaxies(24, seed=2)
    table["preprocess_ok"] = np.arange(24) % 6 != 0          # 4 rows failed
    table["oh_p50"][1] = -9999                                 # missing label
    table["cutout"][3, 0, 0, 0] = np.inf                       # bad pixels
    config = GPMResNetConfig(width=0.125, blocks=(1, 1, 1, 1), epochs=1, batch_size=8,
                             head_hidden=8, standardize_target=True)
    estimator = GPMResNetEstimator(config=config, mc_passes=1, progress=False).fit(table)
    summary = estimator.training_summary_
    assert summary["skipped"] == {"preprocess": 4, "missing_target": 1, "missing_cutout": 0,
                                  "non_float_cutout": 0, "invalid_pixels": 1,
                                  "blank_cutout": 0, "constant_cutout": 0, "blank_band": 0,
                                  "absurd_flux": 0, "no_positive_flux": 0}
    assert summary["n_train"] + summary["n_validation"] == 18
    # without MC passes or an ensemble the error is one calibrated constant
    assert estimator.err_scale_ is None and estimator.err_constant_ > 0
    out = estimator.predict(make_galaxies(3, seed=3))
    assert np.all(out["Z_pred_err"] == estimator.err_constant_)


def test_save_load_round_trip_gives_identical_predictions(fitted, tmp_path):
    estimator, _ = fitted
    table = make_galaxies(12, seed=11)
    expected = estimator.predict(table)
    estimator.save(tmp_path / "model")
    card = json.loads((tmp_path / "model" / CARD_FILE).read_text())
    assert card["architecture"]["width"] == 0.125
    assert card["input"]["input_scaling"] == "asinh" and card["input"]["bands"] == "grz"
    assert card["training_data"]["n_train"] == 48 and card["package_version"]
    assert len(card["weights_sha256"]) == 64
    assert (tmp_path / "model" / "loss_history.csv").is_file()
    assert (tmp_path / "model" / "loss_curves.png").stat().st_size > 1000
    for source in (tmp_path / "model", tmp_path / "model" / WEIGHTS_FILE):
        # the Monte-Carlo draws are seeded per forward pass: same batch size, same draws
        loaded = GPMResNetEstimator.load(source, progress=False,
                                         predict_batch_size=estimator.predict_batch_size)
        got = loaded.predict(table)
        for name in ("Z_pred", "Z_pred_err"):
            np.testing.assert_array_equal(got[name], expected[name])


def test_tampered_weights_are_refused(fitted, tmp_path):
    estimator, _ = fitted
    weights = estimator.save(tmp_path)
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="tampered"):
        GPMResNetEstimator.load(tmp_path)


def test_loading_a_z_model_as_mass_model_is_refused(fitted, tmp_path):
    estimator, _ = fitted
    estimator.save(tmp_path)
    with pytest.raises(WeightsError, match="'Z'"):
        GPMResNetMassEstimator.load(tmp_path)
    with pytest.raises(WeightsError, match="no weights named 'nonexistent-model'"):
        GPMResNetEstimator.load("nonexistent-model")


def test_bad_input(fitted):
    estimator, table = fitted
    with pytest.raises(SchemaError, match="cutout"):
        estimator.predict(table[["oh_p50"]])
    wrong = table[["oh_p50"]].copy()
    wrong["cutout"] = np.zeros((len(wrong), 24, 24), np.float32)
    with pytest.raises(SchemaError, match=r"\(n, 3, S, S\)"):
        estimator.predict(wrong)
    with pytest.raises(SchemaError, match="trained on 24 x 24"):
        estimator.predict(make_galaxies(2, size=32))
    with pytest.raises(SchemaError, match="lacks"):
        GPMResNetEstimator(progress=False).fit(table, target="no_such_column")
    with pytest.raises(GPMAstroError, match="not fitted"):
        GPMResNetEstimator().predict(table)
    with pytest.raises(ParameterError, match="mc_passes"):
        GPMResNetEstimator(mc_passes=0).fit(table)
    with pytest.raises(ParameterError, match="'huge'"):
        GPMResNetEstimator(config="huge").fit(table)


def test_ensemble_and_mass_estimator():
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    config = GPMResNetConfig(width=0.125, blocks=(1, 1, 1, 1), epochs=1, batch_size=8,
                             head_hidden=8, drop_prob=0.0, standardize_target=True)
    table = make_galaxies(20, seed=5)
    mass = GPMResNetMassEstimator(config=config, n_ensemble=2, mc_passes=1, progress=False)
    out = mass.fit(table).predict(table[:5])
    assert mass.target_ == "lgm_fib_p50" and len(mass.models_) == 2
    assert out.colnames == ["logmstar_pred", "logmstar_pred_err", "logmstar_pred_flag",
                            "logmstar_pred_domain", "logmstar_pred_domain_flag"]
    assert np.all(out["logmstar_pred_err"] > 0)  # spread between the two members
    assert set(mass.history_["member"]) == {0, 1}


def test_check_estimator_contract():
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    config = GPMResNetConfig(width=0.125, blocks=(1, 1, 1, 1), input_size=32, epochs=1,
                             batch_size=8, head_hidden=8, input_scaling="asinh",
                             standardize_target=True, drop_block_size=3)
    for cls in (GPMResNetEstimator, GPMResNetMassEstimator):
        passed = check_estimator(cls(config=config, mc_passes=3, progress=False))
        assert "row_order" in passed and "deterministic" in passed


def test_mixed_precision_predict_agrees_with_fp32(fitted):
    estimator, _ = fitted
    table = make_galaxies(32, seed=11)
    reference = estimator.predict(table, precision="fp32")
    mixed = estimator.predict(table, precision="mixed")
    difference = np.abs(np.asarray(mixed["Z_pred"]) - np.asarray(reference["Z_pred"]))
    assert 0 < difference.max() < 0.005
    np.testing.assert_allclose(mixed["Z_pred_err"], reference["Z_pred_err"], atol=0.005)
    assert mixed.meta["gpm_astro"]["steps"][-1]["params"]["precision"] == "mixed"
    with pytest.raises(ParameterError, match="precision"):
        estimator.predict(table, precision="fp8")


def test_mixed_precision_through_predict_metallicity(fitted, tmp_path):
    from gpm_astro import predict_metallicity

    estimator, _ = fitted
    table = make_galaxies(10, seed=14)
    direct = estimator.predict(table, precision="mixed")
    estimator.save(tmp_path / "model")
    out = predict_metallicity(table, weights=str(tmp_path / "model"), precision="mixed",
                              predict_batch_size=16, progress=False)
    np.testing.assert_allclose(out["Z_pred"], direct["Z_pred"], atol=1e-6)
    assert out.meta["gpm_astro"]["steps"][-1]["params"]["estimator_params"]["precision"] == "mixed"
    # an estimator made with precision="mixed" trains in fp32 and predicts in mixed
    trained = GPMResNetEstimator(config=estimator.config_, precision="mixed", mc_passes=1,
                                 progress=False).fit(make_galaxies(24, seed=15))
    steps = trained.predict(table).meta["gpm_astro"]["steps"]
    assert steps[-1]["params"]["precision"] == "mixed"


def test_forward_batch_size_does_not_change_values(fitted):
    import torch

    estimator, _ = fitted
    table = make_galaxies(21, seed=13)
    values = {}
    for size in (3, "auto", 64):
        estimator.set_params(predict_batch_size=size)
        values[size] = np.asarray(estimator.predict(table)["Z_pred"])
    estimator.set_params(predict_batch_size=16)
    # each row's value is its own deterministic pass, whatever the rows around it
    np.testing.assert_allclose(values[3], values[64], atol=1e-5)
    np.testing.assert_allclose(values["auto"], values[64], atol=1e-5)
    estimator.set_params(predict_batch_size="auto")
    assert estimator._forward_batch_size(torch.device("cpu")) == 8
    assert estimator._forward_batch_size(torch.device("cuda")) == 64
    for bad in (0, "big", 2.5):
        estimator.set_params(predict_batch_size=bad)
        with pytest.raises(ParameterError, match="predict_batch_size must be a positive"):
            estimator.predict(table)
    estimator.set_params(predict_batch_size=16)


def test_compiled_prediction_keeps_values_and_monte_carlo_errors(fitted):
    estimator, _ = fitted
    table = make_galaxies(8, seed=12)
    eager = estimator.predict(table)
    compiled = estimator.predict(table, compile=True)
    assert np.allclose(compiled["Z_pred"], eager["Z_pred"], atol=1e-4)
    assert np.allclose(compiled["Z_pred_err"], eager["Z_pred_err"], atol=1e-3)
