"""Column names as the archives spell them: found ignoring case, kept as given.

SkyServer and CasJobs return the names the query wrote (``specObjID``, ``snMedian_r``,
``BPTCLASS``); every public function finds its columns whatever their case, refuses a table
where two columns differ only in case, and keeps the table's own names in its output.
"""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro import crossmatch, predict_metallicity, preprocess_cutouts, select_starforming
from gpm_astro.exceptions import SchemaError
from gpm_astro.tables import resolve_columns, with_column_names


def skyserver_like():
    """Eight MPA-JHU rows named as a SkyServer query writes them, one cut failing per row."""
    return Table({
        "specObjID": np.arange(1, 9, dtype=np.uint64) << np.uint64(50),
        "RA": [150.0, 150.01, 150.02, 150.03, 150.04, 150.05, 150.06, 150.07],
        "DEC": np.full(8, 2.2),
        "spectroType": ["GALAXY", "QSO", "GALAXY", "GALAXY", "GALAXY", "GALAXY", "GALAXY",
                        "GALAXY"],
        "Reliable": [1, 1, 0, 1, 1, 1, 1, 1],
        "Z_WARNING": [0, 0, 0, 4, 0, 0, 0, 0],
        "BPTCLASS": [1, 1, 1, 1, 4, 1, 1, 1],
        "Z": [0.05, 0.05, 0.05, 0.05, 0.05, 0.001, 0.05, 0.05],
        "snMedian_r": [12.0, 12.0, 12.0, 12.0, 12.0, 12.0, 3.0, 9.0],
        "OH_P50": [8.9, 8.9, 8.9, 8.9, 8.9, 8.9, 8.9, 9.0],
    })


def test_select_starforming_on_skyserver_names():
    table = skyserver_like()
    kept = select_starforming(table)
    assert kept.colnames == table.colnames  # the archive's names are kept
    assert kept["specObjID"].tolist() == [1 << 50, 8 << 50]
    report = kept.meta["gpm_astro"]["select_starforming"]
    assert [(c["cut"], c["column"], c["removed"]) for c in report] == [
        ("spectrotype", "spectroType", 1), ("reliable", "Reliable", 1),
        ("z_warning", "Z_WARNING", 1), ("bptclass", "BPTCLASS", 1), ("z", "Z", 1),
        ("snr", "snMedian_r", 1), ("metallicity", "OH_P50", 0)]
    # a column the user names explicitly is found the same way
    assert len(select_starforming(table, snr_column="SNMEDIAN_R", snr_min=10.0)) == 1


def test_crossmatch_on_skyserver_names():
    labels = select_starforming(skyserver_like())
    images = Table({"ls_id": [7, 8, 9], "ra": [150.0, 150.07, 151.0], "dec": [2.2, 2.2, 2.2],
                    "FLUX_R": [1.0, 2.0, 3.0]})
    out = crossmatch(labels, images, label_id="SPECOBJID", image_id="LS_ID")
    assert out["match_flag"].tolist() == ["ok", "ok"]
    assert out["ls_id"].tolist() == [7, 8]
    # the label names stay; the image ra/dec clash with RA/DEC ignoring case and are suffixed
    assert out.colnames[:len(labels.colnames)] == labels.colnames
    assert {"ra_image", "dec_image", "FLUX_R"} <= set(out.colnames)
    assert "ra" not in out.colnames and "dec" not in out.colnames
    doubled = labels.copy()
    doubled["ra"] = doubled["RA"]
    with pytest.raises(SchemaError, match=r"\['RA', 'ra'\], which differ only in case"):
        crossmatch(doubled, images)


def test_ambiguous_and_missing_columns_are_errors():
    table = Table({"bptclass": [1], "BPTCLASS": [4], "z": [0.1]})
    with pytest.raises(SchemaError, match=r"\['bptclass', 'BPTCLASS'\].*differ only in case"):
        select_starforming(table, spectrotype=None, reliable=None, z_warning=None,
                           snr_min=None, require_metallicity=False)
    with pytest.raises(SchemaError, match=r"needs column\(s\) \['snmedian_r'\], which"):
        resolve_columns(table, ["z", "snmedian_r"], "select_starforming")
    assert with_column_names(table, ["z"]) is table  # nothing to rename: no copy


def test_predict_and_preprocess_find_their_columns():
    table = Table({"ID": [1, 2], "LGM_TOT_P50": [9.0, 10.0]})
    out = predict_metallicity(table, estimator="mass_metallicity", progress=False,
                              keep_columns=["id"])
    assert out.colnames[:1] == ["ID"] and out["Z_pred_flag"].tolist() == ["ok", "ok"]
    expected = predict_metallicity(Table({"lgm_tot_p50": [9.0, 10.0]}),
                                   estimator="mass_metallicity", progress=False)
    np.testing.assert_allclose(out["Z_pred"], expected["Z_pred"])

    y, x = np.mgrid[:32, :32]
    galaxy = 0.3 * np.exp(-((x - 15.5) ** 2 + (y - 15.5) ** 2) / 8.0)
    cutouts = (galaxy + np.random.default_rng(1).normal(0, 0.005, (1, 3, 32, 32)))
    cleaned = preprocess_cutouts(Table({"Cutout": cutouts.astype("f4")}), progress=False)
    assert "Cutout" in cleaned.colnames and "cutout" not in cleaned.colnames
    assert cleaned["preprocess_flag"].tolist() == ["ok"]


def test_colour_polynomial_fits_and_predicts_on_upper_case_fluxes():
    rng = np.random.default_rng(3)
    fluxes = {band: rng.lognormal(1.0, 0.3, 40) for band in "grz"}
    lower = Table({f"flux_{b}": v for b, v in fluxes.items()})
    lower["oh_p50"] = 8.8 + 0.1 * np.log10(fluxes["g"] / fluxes["r"])
    upper = Table({name.upper(): lower[name] for name in lower.colnames})
    a = predict_metallicity(lower, estimator="colour_polynomial", fit_table=lower,
                            progress=False)
    b = predict_metallicity(upper, estimator="colour_polynomial", fit_table=upper,
                            progress=False)
    np.testing.assert_allclose(a["Z_pred"], b["Z_pred"])
    assert b.colnames[:4] == upper.colnames
