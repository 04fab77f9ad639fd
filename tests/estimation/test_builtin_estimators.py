"""The colour polynomial and mass-metallicity estimators."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.base import Estimator
from gpm_astro.exceptions import GPMAstroError, ParameterError, SchemaError
from gpm_astro.plugins import get_estimator
from gpm_astro.testing import check_estimator, make_estimator_table
from gpm_astro_plugins.colour_polynomial import ColourPolynomial
from gpm_astro_plugins.colour_polynomial.estimator import polynomial_terms
from gpm_astro_plugins.mass_metallicity import MassMetallicity


def colour_table(coef, order, n=400, seed=0, noise=0.0):
    """Fluxes whose colours give Z = the polynomial with ``coef`` exactly (plus noise)."""
    rng = np.random.default_rng(seed)
    g_r = rng.uniform(0.1, 1.2, n)
    r_z = rng.uniform(0.0, 0.9, n)
    r = rng.uniform(16.0, 18.0, n)
    z_true = sum(c * g_r**i * r_z**j for c, (i, j) in zip(coef, polynomial_terms(order)))
    z_true = z_true + rng.normal(0, noise, n) if noise else z_true
    mags = {"g": r + g_r, "r": r, "z": r - r_z}
    table = Table({f"flux_{b}": 10 ** ((22.5 - m) / 2.5) for b, m in mags.items()})
    table["oh_p50"] = z_true
    return table


@pytest.mark.parametrize("name", ["colour_polynomial", "mass_metallicity"])
def test_registered_through_entry_points(name):
    cls = get_estimator(name)
    assert issubclass(cls, Estimator) and cls.name == name


@pytest.mark.parametrize("estimator", [
    ColourPolynomial, ColourPolynomial(order=3), ColourPolynomial(extrapolate=True),
    MassMetallicity, MassMetallicity(mass_column="lgm_fib_p50", mass_err_column="z"),
])
def test_check_estimator_passes(estimator):
    assert len(check_estimator(estimator)) == 11


@pytest.mark.parametrize("order", [2, 3])
def test_polynomial_recovers_known_coefficients(order):
    coef = [8.1, 0.9, -0.4, 0.3, 0.25, -0.2, 0.05, -0.07, 0.12, 0.03][:len(polynomial_terms(order))]
    fitted = ColourPolynomial(order=order).fit(colour_table(coef, order))
    assert fitted.coef_ == pytest.approx(coef, abs=1e-8)
    assert fitted.residual_sigma_ < 1e-8
    assert len(fitted.terms_) == (6 if order == 2 else 10)


def test_polynomial_errors_reflect_training_scatter():
    coef = [8.1, 0.9, -0.4, 0.3, 0.25, -0.2]
    train = colour_table(coef, 2, n=3000, seed=1, noise=0.15)
    test = colour_table(coef, 2, n=3000, seed=2, noise=0.15)
    result = ColourPolynomial().fit(train).predict(test)
    residual = np.ma.filled(result["Z_pred"], np.nan) - test["oh_p50"]
    good = np.isfinite(residual)
    assert np.std(residual[good]) == pytest.approx(0.15, rel=0.05)
    inside = np.abs(residual[good]) < np.asarray(result["Z_pred_err"])[good]
    assert inside.mean() == pytest.approx(0.683, abs=0.03)


def test_polynomial_flags_bad_fluxes_and_extrapolation():
    coef = [8.1, 0.9, -0.4, 0.3, 0.25, -0.2]
    train = colour_table(coef, 2)
    test = colour_table(coef, 2, n=5, seed=3)
    test["flux_g"][0] = 0.0
    test["flux_r"][1] = -3.0
    test["flux_z"][2] = np.nan
    test["flux_g"][3] = test["flux_r"][3] * 100  # g - r = -5 mag: far outside training
    result = ColourPolynomial().fit(train).predict(test)
    assert result["Z_pred_flag"].tolist() == ["nonpositive_flux"] * 3 + [
        "colour_out_of_range", "ok"]
    assert result["Z_pred"].mask.tolist() == [True, True, True, True, False]
    assert result["Z_pred"].unit == "dex"
    extrapolated = ColourPolynomial(extrapolate=True).fit(train).predict(test)
    assert extrapolated["Z_pred_flag"][3] == "ok"


def test_polynomial_fit_errors():
    with pytest.raises(ParameterError, match="order must be"):
        ColourPolynomial(order=7).fit(colour_table([8.0] * 6, 2))
    with pytest.raises(ParameterError, match="usable training rows"):
        ColourPolynomial(order=3).fit(colour_table([8.0] * 6, 2, n=8))
    with pytest.raises(SchemaError, match="flux_z"):
        ColourPolynomial().fit(Table({"flux_g": [1.0], "flux_r": [1.0], "oh_p50": [9.0]}))
    with pytest.raises(GPMAstroError, match="not fitted"):
        ColourPolynomial().predict(colour_table([8.0] * 6, 2, n=3))


def test_mzr_matches_eq5_and_flags_out_of_range():
    masses = np.array([8.5001, 9.0, 10.0, 11.0, 11.4999, 8.49, 11.6, -9999.0, np.nan])
    table = Table({"lgm_tot_p50": masses})
    result = MassMetallicity().predict(table)
    expected = -1.492 + 1.847 * masses[:5] - 0.08026 * masses[:5] ** 2
    assert np.asarray(result["Z_pred"][:5]) == pytest.approx(expected)
    assert result["Z_pred_flag"].tolist() == ["ok"] * 5 + ["mass_out_of_range"] * 2 + [
        "missing_mass"] * 2
    assert result["Z_pred"].mask.tolist() == [False] * 5 + [True] * 4
    assert np.asarray(result["Z_pred_err"][:5]) == pytest.approx(0.10)


def test_mzr_valid_range_is_open_as_in_the_paper():
    """Eq. 5 holds for 8.5 < log M* < 11.5 (paper §4.6, METHOD.md §9): the end points are
    outside it, flagged and not predicted."""
    result = MassMetallicity().predict(Table({"lgm_tot_p50": [8.5, 11.5, 10.0]}))
    assert result["Z_pred_flag"].tolist() == ["mass_out_of_range"] * 2 + ["ok"]
    assert result["Z_pred"].mask.tolist() == [True, True, False]
    custom = MassMetallicity(mass_range=(9.0, 10.0)).predict(
        Table({"lgm_tot_p50": [9.0, 9.5, 10.0]}))
    assert custom["Z_pred_flag"].tolist() == ["mass_out_of_range", "ok", "mass_out_of_range"]


def test_mzr_error_propagates_mass_error():
    table = Table({"m": [10.0], "m_err": [0.3]})
    result = MassMetallicity(mass_column="m", mass_err_column="m_err").predict(table)
    slope = 1.847 - 2 * 0.08026 * 10.0
    assert result["Z_pred_err"][0] == pytest.approx(np.hypot(0.10, slope * 0.3))


class FakeMassModel(Estimator):
    """Predicts log M* = lgm_tot_p50 + offset; flags rows with a negative flux_r."""

    name = "fake_mass"
    output = "logmstar"
    requires_fit = False
    required_columns = ("lgm_tot_p50", "flux_r")

    def __init__(self, *, offset=0.0):
        self.offset = offset

    def fit(self, table, *, target="lgm_fib_p50"):
        return self

    def predict(self, table):
        from astropy.table import Column, MaskedColumn

        bad = np.asarray(table["flux_r"]) <= 0
        mass = np.asarray(table["lgm_tot_p50"], dtype=float) + self.offset
        return Table({"logmstar_pred": MaskedColumn(mass, mask=bad, unit="dex"),
                      "logmstar_pred_err": MaskedColumn(np.full(len(table), 0.2), mask=bad,
                                                        unit="dex"),
                      "logmstar_pred_flag": Column(np.where(bad, "blurry", "ok"))})


def test_mzr_from_a_mass_estimator():
    table = make_estimator_table(6, seed=3)
    table["flux_r"][1] = -1.0
    table["lgm_tot_p50"][2] = 12.0
    result = MassMetallicity(mass_estimator=FakeMassModel(offset=0.1)).predict(table)
    mass = np.asarray(table["lgm_tot_p50"]) + 0.1
    flags = result["Z_pred_flag"].tolist()
    assert flags[1] == "mass:blurry" and flags[2] == "mass_out_of_range"
    ok = np.array([f == "ok" for f in flags])
    expected = -1.492 + 1.847 * mass[ok] - 0.08026 * mass[ok] ** 2
    assert np.asarray(result["Z_pred"][ok]) == pytest.approx(expected)
    slope = 1.847 - 2 * 0.08026 * mass[ok]
    assert np.asarray(result["Z_pred_err"][ok]) == pytest.approx(np.hypot(0.1, slope * 0.2))
    assert check_estimator(MassMetallicity(mass_estimator=FakeMassModel()))


def test_mzr_rejects_a_metallicity_estimator_as_mass_model():
    with pytest.raises(ParameterError, match="logmstar"):
        MassMetallicity(mass_estimator="mass_metallicity").predict(Table({"lgm_tot_p50": [9.]}))
