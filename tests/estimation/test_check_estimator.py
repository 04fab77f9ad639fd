"""check_estimator: each check passes on a correct estimator and fails on one broken for it."""

import numpy as np
import pytest
from astropy.table import Column, MaskedColumn, Table

from gpm_astro.base import Estimator
from gpm_astro.exceptions import GPMAstroError, SchemaError
from gpm_astro.testing import (ESTIMATOR_CHECKS, EstimatorCheckError, check_estimator,
                               make_estimator_table)


class Good(Estimator):
    """Z = a + b * mag_r, fitted by least squares: a minimal correct estimator."""

    name = "good"
    required_columns = ("mag_r",)

    def __init__(self, *, scale=1.0, label="x"):
        self.scale = scale
        self.label = label

    def fit(self, table, *, target="oh_p50"):
        slope, intercept = np.polyfit(np.asarray(table["mag_r"]), np.asarray(table[target]), 1)
        self.coef_ = (intercept, slope * self.scale)
        return self

    def _require(self, table):
        if not hasattr(self, "coef_"):
            raise GPMAstroError("not fitted: call fit first")
        if "mag_r" not in table.colnames:
            raise SchemaError("needs mag_r")

    def predict(self, table):
        self._require(table)
        mag = np.asarray(table["mag_r"], dtype=float)
        value = self.coef_[0] + self.coef_[1] * mag
        bad = mag > 17.8
        return Table({"Z_pred": MaskedColumn(value, mask=bad, unit="dex"),
                      "Z_pred_err": MaskedColumn(np.full(len(table), 0.1), mask=bad, unit="dex"),
                      "Z_pred_flag": Column(np.where(bad, "too_faint", "ok"))})


class PositionalInit(Good):
    def __init__(self, scale=1.0, *, label="x"):
        self.scale = scale
        self.label = label


class ConvertsInInit(Good):
    def __init__(self, *, scale=1.0, label="x"):
        self.scale = float(scale)
        self.label = label


class WorksInInit(Good):
    def __init__(self, *, scale=1.0, label="x"):
        self.scale = scale
        self.label = label
        self.cache = {}


class HidesParam(Good):
    def get_params(self):
        return {"scale": self.scale}


class FitReturnsNone(Good):
    def fit(self, table, *, target="oh_p50"):
        super().fit(table, target=target)


class FitChangesParam(Good):
    def fit(self, table, *, target="oh_p50"):
        super().fit(table, target=target)
        self.scale = 2.0
        return self


class FitPublicState(Good):
    def fit(self, table, *, target="oh_p50"):
        super().fit(table, target=target)
        self.slope = self.coef_[1]
        return self


class UnfittedSilent(Good):
    def predict(self, table):
        if not hasattr(self, "coef_"):
            self.coef_ = (9.0, 0.0)
        return super().predict(table)


class UnfittedWrongError(Good):
    def predict(self, table):
        if not hasattr(self, "coef_"):
            raise AttributeError("coef_")
        return super().predict(table)


class ReturnsInput(Good):
    def predict(self, table):
        result = super().predict(table)
        for name in result.colnames:
            table[name] = result[name]
        return table


class DropsRows(Good):
    def predict(self, table):
        return super().predict(table)[:-1] if len(table) else super().predict(table)


class NoUnit(Good):
    def predict(self, table):
        result = super().predict(table)
        result["Z_pred_err"].unit = None
        return result


class NumericFlags(Good):
    def predict(self, table):
        result = super().predict(table)
        result["Z_pred_flag"] = np.zeros(len(table), dtype=int)
        return result


class OkButMasked(Good):
    def predict(self, table):
        result = super().predict(table)
        result["Z_pred_flag"] = np.full(len(table), "ok")
        return result


class NegativeErrors(Good):
    def predict(self, table):
        result = super().predict(table)
        result["Z_pred_err"] = -result["Z_pred_err"]
        return result


class MutatesInput(Good):
    def predict(self, table):
        table.meta["touched"] = True
        return super().predict(table)


class SortsRows(Good):
    def predict(self, table):
        order = np.argsort(np.asarray(table["mag_r"]))
        return super().predict(table[order])


class BatchDependent(Good):
    def predict(self, table):
        result = super().predict(table)
        result["Z_pred"] = result["Z_pred"] - np.mean(result["Z_pred"]) + 9.0
        return result


class SqueezesSingleRow(Good):
    """Squeezes its input, so a one-row table loses the mag_r term (a classic torch bug)."""

    def predict(self, table):
        result = super().predict(table)
        if len(table) == 1:
            result["Z_pred"] = np.ma.array([self.coef_[0]], mask=result["Z_pred"].mask)
            result["Z_pred"].unit = "dex"
        return result


class FailsOnEmpty(Good):
    def predict(self, table):
        if len(table) == 0:
            raise IndexError("empty")
        return super().predict(table)


class Random(Good):
    def predict(self, table):
        result = super().predict(table)
        result["Z_pred"] = result["Z_pred"] + np.random.normal(0, 0.01, len(table))
        return result


class IgnoresMissingColumn(Good):
    def predict(self, table):
        if "mag_r" not in table.colnames:
            table = table.copy()
            table["mag_r"] = 17.0
        return super().predict(table)


class NoRequiredColumns(Good):
    required_columns = ()


BROKEN = [
    (PositionalInit, "init_stores_params"),
    (ConvertsInInit, "init_stores_params"),
    (WorksInInit, "init_stores_params"),
    (HidesParam, "get_params_round_trip"),
    (UnfittedSilent, "unfitted_predict_raises"),
    (UnfittedWrongError, "unfitted_predict_raises"),
    (FitReturnsNone, "fit_returns_self"),
    (FitChangesParam, "fit_returns_self"),
    (FitPublicState, "fit_returns_self"),
    (ReturnsInput, "predict_output"),
    (DropsRows, "predict_output"),
    (NoUnit, "predict_output"),
    (NumericFlags, "predict_output"),
    (OkButMasked, "predict_output"),
    (NegativeErrors, "predict_output"),
    (MutatesInput, "input_not_mutated"),
    (SortsRows, "row_order"),
    (BatchDependent, "row_order"),
    (SqueezesSingleRow, "single_rows"),
    (FailsOnEmpty, "empty_table"),
    (Random, "deterministic"),
    (IgnoresMissingColumn, "missing_columns"),
    (NoRequiredColumns, "missing_columns"),
]


def test_good_estimator_passes_every_check():
    assert check_estimator(Good) == [c.__name__.removeprefix("check_") for c in ESTIMATOR_CHECKS]
    assert check_estimator(Good(scale=0.5, label="y"))


@pytest.mark.parametrize("broken, check", BROKEN, ids=[b.__name__ for b, _ in BROKEN])
def test_broken_estimator_fails_its_check(broken, check):
    with pytest.raises(EstimatorCheckError, match=f"^{check}:"):
        check_estimator(broken)


def test_every_check_can_fail():
    assert {check for _, check in BROKEN} == {
        c.__name__.removeprefix("check_") for c in ESTIMATOR_CHECKS}


def test_check_estimator_rejects_non_estimators():
    with pytest.raises(TypeError, match="Estimator"):
        check_estimator(object)


def test_synthetic_table_is_reproducible_and_complete():
    a, b = make_estimator_table(5, seed=3), make_estimator_table(5, seed=3)
    assert np.array_equal(a["cutout"], b["cutout"]) and a["cutout"].dtype == np.float32
    for name in ("flux_g", "flux_r", "flux_z", "lgm_tot_p50", "lgm_fib_p50", "oh_p50",
                 "preprocess_ok", "preprocess_flag", "mag_r", "z_phot_median"):
        assert name in a.colnames
    assert np.all(a["flux_g"] > 0) and a["flux_r"].unit == "nanomaggy"
    # the cutout's total flux per band follows the catalogue fluxes
    assert np.allclose(a["cutout"].sum(axis=(2, 3))[:, 1], a["flux_r"], rtol=0.05)
