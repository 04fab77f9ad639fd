"""Inputs a real user passes that once gave a silently wrong result or a raw library exception
from the public Table functions and the estimators: each must now give a correct result, a
flagged row or a clear package error (a `GPMAstroError` subclass)."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro import predict_metallicity
from gpm_astro.exceptions import SchemaError
from gpm_astro.testing import make_estimator_table

from .conftest import SIZE


# ------------------------------------------------------------------ preprocess_ok in any case

def _upper_case_preprocess(n=4):
    """A catalogue written by a tool that upper-cases FITS column names."""
    table = make_estimator_table(n, seed=2, cutout_size=SIZE)
    table.remove_columns(["preprocess_ok", "preprocess_flag"])
    table["PREPROCESS_OK"] = [True, False, True, False]
    table["PREPROCESS_FLAG"] = ["ok", "blended", "ok", "too_large"]
    return table


def test_upper_case_preprocess_ok_rows_are_not_predicted():
    out = predict_metallicity(_upper_case_preprocess(), estimator="mass_metallicity",
                              progress=False)
    assert out["Z_pred_flag"].tolist() == ["ok", "preprocess:blended", "ok",
                                           "preprocess:too_large"]
    assert np.ma.getmaskarray(out["Z_pred"]).tolist() == [False, True, False, True]


def test_upper_case_preprocess_ok_in_gpm_resnet(saved_model):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    table = _upper_case_preprocess()
    flags = estimator.predict(table)["Z_pred_flag"].tolist()
    assert flags[1] == "preprocess:blended" and flags[3] == "preprocess:too_large"
    rows, skipped = estimator._usable_rows(table, "oh_p50")  # what fit trains on
    assert 1 not in rows and 3 not in rows and skipped["preprocess"] == 2


def test_preprocess_ok_in_two_cases_is_an_error():
    table = _upper_case_preprocess()
    table["preprocess_ok"] = True
    with pytest.raises(SchemaError, match="differ only in case"):
        predict_metallicity(table, estimator="mass_metallicity", progress=False)
