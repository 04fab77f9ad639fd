"""predict_metallicity / iter_predict_metallicity: rows, order, masking, streaming, errors."""

import numpy as np
import pytest
from astropy.table import Column, MaskedColumn, Table

from gpm_astro import predict_metallicity
from gpm_astro.base import Estimator
from gpm_astro.estimation import iter_predict_metallicity, resolve_estimator
from gpm_astro.exceptions import (EmptyResultWarning, ParameterError, PluginError, SchemaError,
                                  UnknownPluginError)
from gpm_astro.testing import make_estimator_table


class Spy(Estimator):
    """Z = 8 + mean cutout flux / 1000; records every batch it is given."""

    name = "spy"
    requires_fit = False
    required_columns = ("cutout",)

    def __init__(self, *, offset=8.0):
        self.offset = offset

    def fit(self, table, *, target="oh_p50"):
        return self

    def load(self, weights):
        self.loaded_ = weights
        return self

    def predict(self, table):
        self.batches_ = getattr(self, "batches_", []) + [np.asarray(table["row"]).copy()]
        value = self.offset + np.asarray(table["cutout"]).mean(axis=(1, 2, 3)) / 1000
        dark = value < self.offset + 1e-6
        return Table({"Z_pred": MaskedColumn(value, mask=dark, unit="dex"),
                      "Z_pred_err": MaskedColumn(np.full(len(table), 0.05), mask=dark,
                                                 unit="dex"),
                      "Z_pred_flag": Column(np.where(dark, "dark", "ok"))})


@pytest.fixture
def galaxies():
    table = make_estimator_table(23, seed=5, cutout_size=16)
    table["row"] = np.arange(len(table))
    table["preprocess_ok"][[2, 3, 17]] = False
    table["preprocess_flag"][[2, 3, 17]] = ["blended", "too_large", "no_central_source"]
    table["cutout"][5] = 1e-6  # faint but a possible image: the spy flags it 'dark'
    table["cutout"][5, 0, 0, 0] = 2e-6
    table["cutout"][6] = 0.0  # no galaxy at all: flagged before the spy sees it
    table.meta["origin"] = {"stage": "test"}
    return table


def test_rows_order_and_failed_rows(galaxies):
    spy = Spy()
    before = galaxies.copy()
    out = predict_metallicity(galaxies, estimator=spy, batch_size=5, progress=False)
    assert len(out) == len(galaxies)
    assert out["row"].tolist() == list(range(23))
    flags = out["Z_pred_flag"].tolist()
    assert flags[2] == "preprocess:blended" and flags[3] == "preprocess:too_large"
    assert flags[17] == "preprocess:no_central_source" and flags[5] == "dark"
    assert flags[6] == "blank_cutout"
    assert flags.count("ok") == 18
    assert out["Z_pred"].mask.tolist() == [f != "ok" for f in flags]
    expected = 8.0 + np.asarray(galaxies["cutout"]).mean(axis=(1, 2, 3)) / 1000
    ok = np.array([f == "ok" for f in flags])
    assert np.asarray(out["Z_pred"])[ok] == pytest.approx(expected[ok])
    assert out["Z_pred"].unit == "dex" and out["Z_pred_err"].unit == "dex"
    # streaming: never more than batch_size rows, never a failed row
    seen = np.concatenate(spy.batches_)
    assert max(len(b) for b in spy.batches_) <= 5
    assert sorted(seen.tolist()) == [i for i in range(23) if i not in (2, 3, 6, 17)]
    # the input is untouched
    assert galaxies.colnames == before.colnames and galaxies.meta == before.meta
    assert np.array_equal(galaxies["cutout"], before["cutout"])
    step = out.meta["gpm_astro"]["steps"][-1]
    assert step["step"] == "predict_metallicity" and step["params"]["batch_size"] == 5
    assert step["params"]["estimator"] == "spy" and step["params"]["n_predicted"] == 18
    assert out.meta["origin"] == {"stage": "test"}


def test_without_preprocess_columns_every_row_is_predicted(galaxies):
    galaxies.remove_columns(["preprocess_ok", "preprocess_flag"])
    out = predict_metallicity(galaxies, estimator=Spy(), batch_size=100, progress=False)
    assert out["Z_pred_flag"].tolist().count("ok") == 21  # the dark and the blank row


def test_iter_predict_streams_chunks(galaxies):
    spy = Spy()
    chunks = (galaxies[i:i + 10] for i in range(0, len(galaxies), 10))
    outs = list(iter_predict_metallicity(chunks, estimator=spy, batch_size=4, progress=False,
                                         keep_columns=["row"]))
    assert [len(t) for t in outs] == [10, 10, 3]
    assert outs[0].colnames == ["row", "Z_pred", "Z_pred_err", "Z_pred_flag"]
    whole = predict_metallicity(galaxies, estimator=Spy(), progress=False)
    joined = np.concatenate([np.ma.filled(t["Z_pred"], np.nan) for t in outs])
    assert np.array_equal(joined, np.ma.filled(whole["Z_pred"], np.nan), equal_nan=True)
    assert max(len(b) for b in spy.batches_) <= 4


def test_registered_name_params_fit_table_and_suffix():
    train = make_estimator_table(40, seed=1, cutout_size=8)
    test = make_estimator_table(10, seed=2, cutout_size=8)
    out = predict_metallicity(test, estimator="colour_polynomial", order=3, fit_table=train,
                              progress=False)
    assert out.meta["gpm_astro"]["steps"][-1]["params"]["estimator_params"]["order"] == 3
    again = predict_metallicity(out, estimator="mass_metallicity", suffix="_mzr",
                                progress=False)
    assert {"Z_pred", "Z_pred_mzr", "Z_pred_err_mzr", "Z_pred_flag_mzr"} <= set(again.colnames)
    with pytest.raises(SchemaError, match="suffix"):
        predict_metallicity(out, estimator="mass_metallicity", progress=False)


def test_weights_go_to_load(galaxies):
    out = predict_metallicity(galaxies, estimator=Spy, weights="my_weights", progress=False)
    assert out.meta["gpm_astro"]["steps"][-1]["params"]["weights"] == "my_weights"
    assert resolve_estimator(Spy, weights="w.safetensors").loaded_ == "w.safetensors"
    with pytest.raises(ParameterError, match="no load method"):
        predict_metallicity(galaxies, estimator="mass_metallicity", weights="x",
                            progress=False)


def test_bad_input_errors(galaxies):
    with pytest.raises(UnknownPluginError, match="colour_polynomial.*mass_metallicity"):
        predict_metallicity(galaxies, estimator="no_such_model")
    with pytest.raises(SchemaError, match="cutout"):
        predict_metallicity(galaxies[["row", "preprocess_ok"]], estimator=Spy())
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ParameterError, match="batch_size"):
            predict_metallicity(galaxies, estimator=Spy(), batch_size=bad)
    with pytest.raises(ParameterError, match="instance"):
        predict_metallicity(galaxies, estimator=Spy(), offset=3.0)
    with pytest.raises(TypeError, match="estimator must be"):
        predict_metallicity(galaxies, estimator=42)
    with pytest.raises(TypeError, match="astropy.table.Table"):
        predict_metallicity({"cutout": [1]}, estimator=Spy())
    with pytest.raises(SchemaError, match="keep_columns"):
        predict_metallicity(galaxies, estimator=Spy(), keep_columns=["nope"])


def test_unfitted_estimator_error_reaches_the_user():
    from gpm_astro.exceptions import GPMAstroError

    with pytest.raises(GPMAstroError, match="not fitted"):
        predict_metallicity(make_estimator_table(3, cutout_size=8),
                            estimator="colour_polynomial", progress=False)


def test_contract_breaking_estimator_is_named(galaxies):
    class Short(Spy):
        name = "short"

        def predict(self, table):
            return super().predict(table)[:-1]

    with pytest.raises(PluginError, match="'short' broke the estimator contract"):
        predict_metallicity(galaxies, estimator=Short(), progress=False)


def test_value_missing_under_an_ok_flag_is_flagged(galaxies):
    class Holes(Spy):
        """Calls three rows ``ok`` (or nothing) without giving them a value."""
        name = "holes"

        def predict(self, table):
            out = super().predict(table)
            out["Z_pred"][0] = np.nan
            out["Z_pred"].mask[1] = True
            out["Z_pred"][2] = np.inf
            out["Z_pred_flag"][:3] = ["ok", "ok", ""]
            return out

    holes = Holes()
    out = predict_metallicity(galaxies, estimator=holes, progress=False, batch_size=10_000)
    shown = holes.batches_[0]
    position = {row: i for i, row in enumerate(galaxies["row"])}
    holed = [position[row] for row in shown[:3]]
    assert list(out["Z_pred_flag"][holed]) == ["no_prediction"] * 3
    assert out["Z_pred"].mask[holed].all()
    assert "no_prediction" not in list(out["Z_pred_flag"][[position[r] for r in shown[3:]]])


def test_empty_table_keeps_schema(galaxies):
    with pytest.warns(EmptyResultWarning):
        out = predict_metallicity(galaxies[:0], estimator=Spy(), progress=False)
    assert len(out) == 0
    assert {"Z_pred", "Z_pred_err", "Z_pred_flag"} <= set(out.colnames)


def test_all_rows_failed_never_shows_a_row_to_the_estimator(galaxies):
    galaxies["preprocess_ok"] = False
    spy = Spy()
    out = predict_metallicity(galaxies, estimator=spy, progress=False)
    # only an empty table, whose answer names the estimator's extra columns
    assert [len(batch) for batch in spy.batches_] == [0]
    assert all(f.startswith("preprocess:") for f in out["Z_pred_flag"])
    assert out["Z_pred"].mask.all()


def test_classmethod_load_builds_the_instance(galaxies):
    class FromCard(Spy):
        name = "from_card"

        @classmethod
        def load(cls, weights, **params):
            instance = cls(**params)
            instance.loaded_ = weights
            return instance

    est = resolve_estimator(FromCard, weights="card.safetensors", offset=7.0)
    assert est.loaded_ == "card.safetensors" and est.offset == 7.0
    out = predict_metallicity(galaxies, estimator=FromCard, weights="w", offset=7.5,
                              progress=False)
    assert out["Z_pred"].min() > 7.5
