"""One named test per case of issue 15 (and issue 16 item 4): each once gave a silently wrong
result or a raw library exception; each must now give a correct result, a flagged row or a
clear package error (a `GPMAstroError` subclass)."""


import json

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Column, MaskedColumn, Table

from gpm_astro import crossmatch, predict_metallicity, select_starforming
from gpm_astro.cli import main
from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.io import read_table, write_table
from gpm_astro.testing import make_estimator_table

FORMATS = ["csv", "ecsv", "fits", "h5", "parquet"]


def _labels(**columns):
    base = {"spectrotype": ["GALAXY"] * 3, "reliable": [1, 1, 1], "z_warning": [0, 0, 0],
            "bptclass": [1, 1, 1], "z": [0.05, 0.1, 0.07], "snmedian_r": [12.0, 9.0, 7.5],
            "oh_p50": [8.9, 8.7, 9.1]}
    base.update(columns)
    return Table(base)


# ------------------------------------------------------------------ silently wrong (issue 15)

@pytest.mark.parametrize("ending", FORMATS)
def test_preprocess_ok_survives_every_format_write_table_writes(tmp_path, ending):
    table = Table({"preprocess_ok": [True, False, True, False],
                   "maybe": MaskedColumn([True, False, True, True], mask=[0, 0, 0, 1]),
                   "word": ["True", "x", "False", "y"]})
    path = tmp_path / f"cleaned.{ending}"
    write_table(table, path)
    back = read_table(path)
    assert back["preprocess_ok"].dtype.kind == "b"
    assert back["preprocess_ok"].tolist() == [True, False, True, False]
    assert back["maybe"].dtype.kind == "b"
    assert np.ma.getmaskarray(back["maybe"]).tolist() == [False, False, False, True]
    assert np.ma.filled(back["maybe"], False).tolist() == [True, False, True, False]
    assert back["word"].dtype.kind in "US"  # a text column stays text


def test_failed_rows_stay_failed_after_a_csv_round_trip(tmp_path):
    table = make_estimator_table(6, seed=2, cutout_size=16)
    table.remove_column("cutout")
    table["preprocess_ok"] = [True, False, True, False, True, False]
    write_table(table, tmp_path / "cleaned.csv")
    back = read_table(tmp_path / "cleaned.csv")
    out = predict_metallicity(back, estimator="mass_metallicity", progress=False)
    assert [f.startswith("preprocess:") for f in out["Z_pred_flag"]] == \
        [False, True, False, True, False, True]


def test_non_boolean_preprocess_ok_is_an_error():
    table = make_estimator_table(3, seed=2, cutout_size=16)
    table["preprocess_ok"] = ["True", "False", "False"]  # what another program's CSV holds
    with pytest.raises(SchemaError, match="preprocess_ok.*must be boolean"):
        predict_metallicity(table, estimator="mass_metallicity", progress=False)
    table["preprocess_ok"] = [1, 0, 0]
    with pytest.raises(SchemaError, match="must be boolean"):
        predict_metallicity(table, estimator="mass_metallicity", progress=False)


@pytest.mark.parametrize("name", ["matched", "separation", "match_flag"])
def test_crossmatch_refuses_label_columns_it_would_overwrite(name):
    labels = Table({"ra": [10.0], "dec": [1.0], name: ["my label"]})
    images = Table({"ra": [10.0], "dec": [1.0]})
    with pytest.raises(SchemaError, match=f"already has column.*{name}.*rename"):
        crossmatch(labels, images)


def test_select_starforming_refuses_redshift_in_km_per_s():
    labels = _labels()
    labels["z"].unit = u.km / u.s
    with pytest.raises(SchemaError, match="velocity in km / s.*z = v / c"):
        select_starforming(labels)


def test_select_starforming_accepts_metallicity_in_dex():
    labels = _labels()
    labels["oh_p50"].unit = u.dex
    assert len(select_starforming(labels)) == 3


@pytest.mark.parametrize("column, cut", [("oh_p50", "metallicity"), ("z", "z")])
def test_select_starforming_removes_and_counts_absurd_values(column, cut):
    labels = _labels()
    labels[column][1] = 1e30
    kept = select_starforming(labels)
    assert len(kept) == 2 and 1e30 not in kept[column].tolist()
    report = {c["cut"]: c for c in kept.meta["gpm_astro"]["select_starforming"]}
    assert report[cut]["removed"] == 1 and report[cut]["implausible"] == 1
    assert "plausible in" in report[cut]["rule"]


def test_select_starforming_bool_bptclass_is_an_error():
    labels = _labels(bptclass=[True, True, False])
    with pytest.raises(SchemaError, match="boolean column 'bptclass'"):
        select_starforming(labels)


# ------------------------------------------------------------------ crashes (issue 15)

def test_crossmatch_masked_coordinate_column_with_a_unit(tmp_path):
    labels = Table({"ra": MaskedColumn([10.0, 20.0], mask=[False, True], unit=u.deg),
                    "dec": MaskedColumn([1.0, 2.0], mask=[False, True], unit=u.deg)})
    write_table(labels, tmp_path / "labels.fits")  # what a FITS file with masked RA/Dec gives
    images = Table({"ra": [10.0], "dec": [1.0]})
    for table in (labels, read_table(tmp_path / "labels.fits")):
        assert crossmatch(table, images)["match_flag"].tolist() == ["ok", "invalid_coordinates"]


@pytest.mark.parametrize("bad", [["a", "b", "c"], np.ones((3, 2))])
def test_colour_polynomial_non_numeric_or_2d_flux_column(bad):
    train = make_estimator_table(30, seed=1, cutout_size=16)
    table = make_estimator_table(3, seed=2, cutout_size=16)
    table.replace_column("flux_g", Column(bad))
    with pytest.raises(SchemaError, match="colour_polynomial: column 'flux_g'"):
        predict_metallicity(table, estimator="colour_polynomial", fit_table=train,
                            progress=False)


@pytest.mark.parametrize("bad", [["a", "b", "c"], np.ones((3, 2))])
def test_mass_metallicity_non_numeric_or_2d_mass_column(bad):
    table = make_estimator_table(3, seed=2, cutout_size=16)
    table.replace_column("lgm_tot_p50", Column(bad))
    with pytest.raises(SchemaError, match="mass_metallicity: column 'lgm_tot_p50'"):
        predict_metallicity(table, estimator="mass_metallicity", progress=False)


def test_two_dimensional_preprocess_ok():
    table = make_estimator_table(3, seed=2, cutout_size=16)
    table.replace_column("preprocess_ok", Column(np.ones((3, 2), dtype=bool)))
    with pytest.raises(SchemaError, match="preprocess_ok.*one-dimensional"):
        predict_metallicity(table, estimator="mass_metallicity", progress=False)


def test_legacysurvey_cutouts_string_ra():
    from gpm_astro.plugins import get_source

    source = get_source("legacysurvey_cutouts")()
    targets = Table({"ra": ["ten", "eleven"], "dec": [1.0, 2.0]})
    with pytest.raises(SchemaError, match="column 'ra' must hold real numbers"):
        source.query(targets)


def test_select_starforming_two_dimensional_column():
    labels = _labels()
    labels.replace_column("z", Column(np.ones((3, 2))))
    with pytest.raises(SchemaError, match="one-dimensional.*shape"):
        select_starforming(labels)


@pytest.mark.parametrize("provenance", ["a string", ["a", "list"], {"steps": "not a list"}])
def test_select_starforming_non_dict_provenance(provenance):
    labels = _labels()
    labels.meta["gpm_astro"] = provenance
    with pytest.raises(SchemaError, match=r"meta\['gpm_astro'\]"):
        select_starforming(labels)


def test_crossmatch_non_dict_provenance_of_images():
    images = Table({"ra": [10.0], "dec": [1.0]}, meta={"gpm_astro": "oops"})
    with pytest.raises(SchemaError, match=r"meta\['gpm_astro'\]"):
        crossmatch(Table({"ra": [10.0], "dec": [1.0]}), images)


def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("gpm-astro: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_cli_predict_unknown_param(tmp_path, capsys):
    table = make_estimator_table(3, seed=2, cutout_size=16)
    write_table(table, tmp_path / "in.h5")
    code = main(["predict", str(tmp_path / "in.h5"), str(tmp_path / "out.h5"),
                 "--estimator", "mass_metallicity", "--param", "bogus=1", "--no-progress"])
    assert code == 1
    err = _one_line_error(capsys)
    assert "no parameter(s) ['bogus']" in err and "mass_column" in err
    assert not (tmp_path / "out.h5").exists()


def test_cli_evaluate_pred_on_a_string_column(tmp_path, capsys):
    table = Table({"Z_pred": ["a", "b"], "oh_p50": [8.8, 9.0], "Z_pred_err": [0.1, 0.1]})
    write_table(table, tmp_path / "pred.ecsv")
    code = main(["evaluate", str(tmp_path / "pred.ecsv"), "--out", str(tmp_path / "ev")])
    assert code == 1
    assert "column 'Z_pred' must hold real numbers" in _one_line_error(capsys)


@pytest.mark.parametrize("command", ["select", "crossmatch", "predict", "evaluate",
                                     "preprocess", "mock"])
def test_cli_says_overwrite_as_an_option_before_any_work(tmp_path, capsys, command):
    table = make_estimator_table(3, seed=2, cutout_size=16)
    write_table(table, tmp_path / "in.h5")
    (tmp_path / "out.h5").write_text("already here")
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "metrics.ecsv").write_text("already here")
    (tmp_path / "labels.fits").write_text("already here")
    inputs = str(tmp_path / "in.h5")
    argv = {"select": ["select", inputs, str(tmp_path / "out.h5")],
            "crossmatch": ["crossmatch", inputs, inputs, str(tmp_path / "out.h5")],
            # an unknown estimator would fail later: the check on OUT comes first
            "predict": ["predict", inputs, str(tmp_path / "out.h5"), "--estimator", "nope"],
            "evaluate": ["evaluate", inputs, "--out", str(tmp_path / "ev")],
            "preprocess": ["preprocess", inputs, str(tmp_path / "out.h5")],
            "mock": ["mock", "--out", str(tmp_path), "--n", "3"]}[command]
    assert main(argv) == 1
    err = _one_line_error(capsys)
    assert "pass --overwrite" in err and "overwrite=True" not in err
    assert (tmp_path / "out.h5").read_text() == "already here"


def _cutout_table(**meta):
    table = make_estimator_table(2, seed=2, cutout_size=16)
    table.meta.update(meta)
    return table


@pytest.mark.parametrize("meta, error, match", [
    ({"bands": 5}, SchemaError, r"bands 'grz'.*5"),
    ({"pixel_scale": "abc"}, SchemaError, r"meta\['pixel_scale'\].*'abc'"),
    ({"pixel_scale": None}, SchemaError, r"meta\['pixel_scale'\].*None"),
])
def test_preprocess_cutouts_bad_meta(meta, error, match):
    from gpm_astro import preprocess_cutouts

    with pytest.raises(error, match=match):
        preprocess_cutouts(_cutout_table(**meta), progress=False)


def test_preprocess_cutouts_pixel_scale_in_metres():
    from gpm_astro import preprocess_cutouts

    with pytest.raises(ParameterError, match=r"pixel_scale must be.*Quantity 1\. m"):
        preprocess_cutouts(_cutout_table(), pixel_scale=1 * u.m, progress=False)


# ------------------------------------------------------------------ configuration found early

@pytest.mark.parametrize("config, match", [
    ({"estimators": {"z": {"estimator": "gpm_resnt"}}, "application": {"estimator": "z"}},
     r"estimators\.z: no estimator named 'gpm_resnt'; known: .*gpm_resnet"),
    ({"estimators": {"z": {"estimator": "colour_polynomial", "params": {"ordr": 2}}},
      "application": {"estimator": "z"}}, r"estimators\.z: .*no parameter\(s\) \['ordr'\]"),
    ({"preprocess": {"config": "nope"}}, r"preprocess: config must be one of"),
    ({"select": {"zmin": 0.01}}, r"select: unknown key\(s\) \['zmin'\]"),
    # values, not only keys: these failed only after the sky stage had run
    ({"preprocess": {"n_jobs": "2"}}, r"preprocess: n_jobs must be .*got '2'"),
    ({"preprocess": {"batch_size": 0}}, r"preprocess: batch_size must be .*got 0"),
    ({"select": {"snr_min": "5"}}, r"select: snr_min must be a real number.*got '5'"),
])
def test_run_config_mistakes_found_before_the_first_stage(tmp_path, config, match):
    from gpm_astro.pipeline import Pipeline

    with pytest.raises(ParameterError, match=match):
        Pipeline(config, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # no stage ran


def test_cli_run_config_typo_is_one_line(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"estimators": {"z": {"estimator": "gpm_resnt"}},
                                  "application": {"estimator": "z"}}))
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    assert "no estimator named 'gpm_resnt'" in _one_line_error(capsys)
