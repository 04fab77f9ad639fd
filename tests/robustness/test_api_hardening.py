"""Inputs a real user passes that once gave a silently wrong result or a raw library exception
from the public Table functions and the estimators: each must now give a correct result, a
flagged row or a clear package error (a `GPMAstroError` subclass)."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Column, MaskedColumn, QTable

from gpm_astro import predict_metallicity, preprocess_cutouts
from gpm_astro.exceptions import ParameterError, SchemaError
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


# ------------------------------------------------------------------ units of fluxes and cutouts

def _colour_tables():
    return (make_estimator_table(40, seed=5, cutout_size=SIZE),
            make_estimator_table(5, seed=1, cutout_size=SIZE))


def test_colour_polynomial_refuses_magnitudes_given_as_fluxes():
    train, table = _colour_tables()
    for band in "grz":  # e.g. flux_columns pointed at mag_g, mag_r, mag_z
        table[f"flux_{band}"] = Column(22.5 - 2.5 * np.log10(table[f"flux_{band}"]), unit=u.mag)
    with pytest.raises(SchemaError, match="'flux_g' has unit mag, which is not a flux"):
        predict_metallicity(table, estimator="colour_polynomial", fit_table=train,
                            progress=False)


@pytest.mark.parametrize("unit", [u.Jy, u.ABmag])
def test_colour_polynomial_converts_flux_units(unit):
    train, table = _colour_tables()
    expected = predict_metallicity(table, estimator="colour_polynomial", fit_table=train,
                                   progress=False)["Z_pred"]
    converted = QTable(table)
    for band in "grz":
        flux = np.asarray(table[f"flux_{band}"]) * u.nanomaggy
        converted[f"flux_{band}"] = flux.to(unit, u.zero_point_flux(1 * u.ABflux))
    got = predict_metallicity(converted, estimator="colour_polynomial", fit_table=train,
                              progress=False)
    assert got["Z_pred_flag"].tolist() == ["ok"] * 5
    assert np.allclose(np.asarray(got["Z_pred"]), np.asarray(expected), atol=1e-9)


@pytest.mark.parametrize("spelling", ["nanomaggy", "nmgy", "nanomaggies"])
def test_colour_polynomial_reads_votable_nanomaggies(tmp_path, spelling):
    """A VOTable (Data Lab, pyvo, astropy's own writer) gives 'nanomaggy' as a VOUnit of its
    own, not astropy's nanomaggy: still nanomaggies, not a SchemaError or a raw astropy
    UnitConversionError."""
    import warnings

    from gpm_astro.io import read_table

    train, table = _colour_tables()
    expected = predict_metallicity(table, estimator="colour_polynomial", fit_table=train,
                                   progress=False)["Z_pred"]
    columns = {f"flux_{band}": np.asarray(table[f"flux_{band}"], float) for band in "grz"}
    path = tmp_path / "fluxes.vot"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        QTable({k: v * u.nanomaggy for k, v in columns.items()}).write(path, format="votable")
    path.write_bytes(path.read_bytes().replace(b'unit="nmgy"', f'unit="{spelling}"'.encode()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = read_table(path)
    got = predict_metallicity(read, estimator="colour_polynomial", fit_table=train,
                              progress=False)
    assert got["Z_pred_flag"].tolist() == ["ok"] * 5
    assert np.allclose(np.asarray(got["Z_pred"]), np.asarray(expected), atol=1e-9)


def test_qtable_cutouts_in_nanomaggies_are_predicted(saved_model):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    table = make_estimator_table(3, seed=1, cutout_size=SIZE)
    expected = predict_metallicity(table, estimator=estimator, progress=False)
    got = predict_metallicity(QTable(table), estimator=estimator, progress=False)
    assert got["Z_pred_flag"].tolist() == expected["Z_pred_flag"].tolist()
    assert np.allclose(np.asarray(got["Z_pred"]), np.asarray(expected["Z_pred"]))


@pytest.mark.parametrize("unit", ["mag", "Jy", "adu"])
def test_cutouts_in_another_unit_are_refused(saved_model, unit):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    table = make_estimator_table(2, seed=1, cutout_size=SIZE)
    table["cutout"].unit = unit
    with pytest.raises(SchemaError, match=f"'cutout' has unit {unit}"):
        predict_metallicity(table, estimator=estimator, progress=False)
    with pytest.raises(SchemaError, match=f"'cutout' has unit {unit}"):
        preprocess_cutouts(table, progress=False)


# ------------------------------------------------------------------ estimator parameters

@pytest.mark.parametrize("params", [
    {"estimator": "mass_metallicity", "mass_range": "ab"},
    {"estimator": "mass_metallicity", "mass_range": [9.0]},
    {"estimator": "mass_metallicity", "mass_range": (np.nan, 11.5)},
    {"estimator": "mass_metallicity", "intrinsic_scatter": "x"},
    {"estimator": "mass_metallicity", "intrinsic_scatter": np.inf},
    {"estimator": "colour_polynomial", "order": 2.0},
    {"estimator": "colour_polynomial", "flux_columns": 3},
    {"estimator": "colour_polynomial", "flux_columns": "grz"},
    {"estimator": "mass_metallicity", "suffix": 2},
])
def test_bad_estimator_parameters_are_parameter_errors(params):
    train, table = _colour_tables()
    fit = train if params["estimator"] == "colour_polynomial" else None
    with pytest.raises(ParameterError, match=r"mass_range|intrinsic_scatter|order|flux_columns"
                                             r"|suffix"):
        predict_metallicity(table, fit_table=fit, progress=False, **params)


@pytest.mark.parametrize("param", ["order=2.0", 'mass_range="ab"', "intrinsic_scatter=1e999"])
def test_cli_bad_estimator_parameter_is_one_line(tmp_path, capsys, param):
    from gpm_astro.cli import main
    from gpm_astro.io import write_table

    train, table = _colour_tables()
    write_table(train, tmp_path / "train.ecsv")
    estimator = "colour_polynomial" if param.startswith("order") else "mass_metallicity"
    code = main(["predict", str(tmp_path / "train.ecsv"), str(tmp_path / "out.ecsv"),
                 "--no-progress", "--estimator", estimator, "--fit-table",
                 str(tmp_path / "train.ecsv"), "--param", param])
    message = capsys.readouterr().err
    assert code == 1 and message.startswith("gpm-astro: error: ") and "internal" not in message


def test_keep_columns_as_one_name():
    table = make_estimator_table(3, seed=1, cutout_size=SIZE)
    out = predict_metallicity(table, estimator="mass_metallicity", keep_columns="ra",
                              progress=False)
    assert out.colnames == ["ra", "Z_pred", "Z_pred_err", "Z_pred_flag"]


@pytest.mark.parametrize("bands", [["g", "r", "z"], ("g", "r", "z"), b"grz"])
def test_gpm_resnet_reads_bands_as_preprocess_cutouts_keeps_them(saved_model, bands):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    table = make_estimator_table(2, seed=1, cutout_size=SIZE)
    expected = estimator.predict(table)["Z_pred"]
    table.meta["bands"] = bands
    assert np.allclose(np.asarray(estimator.predict(table)["Z_pred"]), np.asarray(expected))


def test_gpm_resnet_bands_of_another_type_is_a_schema_error(saved_model):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    table = make_estimator_table(2, seed=1, cutout_size=SIZE)
    table.meta["bands"] = 3
    with pytest.raises(SchemaError, match="meta\\['bands'\\]"):
        estimator.predict(table)


def test_preprocess_cutouts_replaces_an_earlier_result_spelt_in_upper_case():
    table = _upper_case_preprocess()  # PREPROCESS_OK of an earlier run, with failures
    table["TARGET_X"] = -1.0
    out = preprocess_cutouts(table, progress=False)
    assert "PREPROCESS_OK" not in out.colnames and "TARGET_X" not in out.colnames
    again = predict_metallicity(out, estimator="mass_metallicity", progress=False)
    ok = np.asarray(out["preprocess_ok"])
    assert (again["Z_pred_flag"] == "ok").tolist() == ok.tolist()


def test_masked_preprocess_ok_never_flagged_preprocess_ok(saved_model):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    table = make_estimator_table(3, seed=1, cutout_size=SIZE)
    table["preprocess_ok"] = MaskedColumn([True, True, True], mask=[False, True, False])
    table["preprocess_flag"] = ["ok", "ok", "ok"]
    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    for out in (predict_metallicity(table, estimator="mass_metallicity", progress=False),
                estimator.predict(table)):
        assert out["Z_pred_flag"].tolist()[1] == "preprocess:failed"


# ------------------------------------------------------------------ stellar-mass units and errors

@pytest.mark.parametrize("unit, values", [
    (None, [10.0, 9.5]), ("dex", [10.0, 9.5]), (u.dex(u.Msun), [10.0, 9.5]),
    (u.Msun, [1e10, 10 ** 9.5]), (u.kg, [1e10 * 1.98841e30, 10 ** 9.5 * 1.98841e30])])
def test_mass_column_is_read_as_log_mass_whatever_its_unit(unit, values):
    from astropy.table import Table

    table = Table({"lgm_tot_p50": values})
    table["lgm_tot_p50"].unit = unit
    out = predict_metallicity(table, estimator="mass_metallicity", progress=False)
    reference = predict_metallicity(Table({"lgm_tot_p50": [10.0, 9.5]}),
                                    estimator="mass_metallicity", progress=False)
    np.testing.assert_allclose(out["Z_pred"], reference["Z_pred"], atol=1e-6)
    assert list(out["Z_pred_flag"]) == ["ok", "ok"]


def test_mass_column_in_another_unit_is_refused():
    from astropy.table import Table

    table = Table({"lgm_tot_p50": [10.0]})
    table["lgm_tot_p50"].unit = "mag"
    with pytest.raises(SchemaError, match="'lgm_tot_p50' has unit mag"):
        predict_metallicity(table, estimator="mass_metallicity", progress=False)


def test_linear_mass_of_zero_and_negative_mass_error_are_flagged():
    from astropy.table import Table

    table = Table({"mass": [1e10, 0.0, 1e10], "mass_err": [0.1, 0.1, -0.1]})
    table["mass"].unit = u.Msun
    out = predict_metallicity(table, estimator="mass_metallicity", mass_column="mass",
                              mass_err_column="mass_err", progress=False)
    assert list(out["Z_pred_flag"]) == ["ok", "missing_mass", "bad_mass_err"]
    assert list(out["Z_pred"].mask) == [False, True, True]


@pytest.mark.parametrize("unit", ["log(M_sun)", "log(M/Msun)", "logMsun", "[Msol]"])
def test_log_mass_spelt_as_astropy_does_not_know_is_read_as_log(unit):
    from astropy.table import Table

    table = Table({"lgm_tot_p50": [10.0]})
    table["lgm_tot_p50"].unit = u.Unit(unit, parse_strict="silent")
    out = predict_metallicity(table, estimator="mass_metallicity", progress=False)
    assert out["Z_pred_flag"][0] == "ok" and abs(out["Z_pred"][0] - 8.952) < 1e-3


def test_log_masses_labelled_solmass_are_refused_not_flagged_out_of_range():
    from astropy.table import Table

    table = Table({"lgm_tot_p50": [10.2, 9.8]})
    table["lgm_tot_p50"].unit = u.Msun
    with pytest.raises(SchemaError, match="largest value is 10.2: log masses labelled"):
        predict_metallicity(table, estimator="mass_metallicity", progress=False)
