"""The pipeline: configuration, stage order, atomic outputs, resuming, and the catalogue."""

import json

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro import hookimpl
from gpm_astro.base import Estimator
from gpm_astro.cli import main
from gpm_astro.exceptions import GPMAstroError, ParameterError, SchemaError
from gpm_astro.io import read_table
from gpm_astro.pipeline import (CATALOGUE_COLUMNS, DEFAULT_CONFIG, Pipeline, config_to_toml,
                                load_config, make_catalogue, read_cutouts, run_pipeline,
                                write_cutouts)
from pipeline_fakes import write_fake_sky

FAST_ESTIMATORS = {
    "colour_polynomial_2": {"estimator": "colour_polynomial", "params": {"order": 2}},
    "mzr": {"estimator": "mass_metallicity", "params": {"mass_column": "lgm_tot_p50"}},
}


def _config(source, **changes):
    config = {"source": source, "estimators": FAST_ESTIMATORS,
              "application": {"estimator": "colour_polynomial_2"},
              "sample": {"n_bins": 5}}
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """One pipeline run on a small fake sky, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("pipeline")
    source = write_fake_sky(folder)
    out = folder / "out"
    result = run_pipeline(_config(source), output_dir=out, progress=False)
    return folder, source, out, result


# -- configuration ---------------------------------------------------------------------------

def test_load_config_fills_defaults_and_keeps_user_values():
    config = load_config({"crossmatch": {"radius_arcsec": 2.5}}, output_dir="x")
    assert config["crossmatch"]["radius_arcsec"] == 2.5
    assert config["crossmatch"]["one_to_one"] is DEFAULT_CONFIG["crossmatch"]["one_to_one"]
    assert config["sample"]["fractions"] == [5, 3, 2]
    assert config["output_dir"] == "x"
    # a user's estimator list replaces the default one instead of merging into it
    config = load_config({"estimators": FAST_ESTIMATORS,
                          "application": {"estimator": "mzr"}})
    assert sorted(config["estimators"]) == ["colour_polynomial_2", "mzr"]


@pytest.mark.parametrize("bad, fragment", [
    ({"crossmatch": {"radius": 1.0}}, "'crossmatch.radius'"),
    ({"sampel": {}}, "'sampel'"),
    ({"crossmatch": {"radius_arcsec": -1}}, "-1"),
    ({"sample": {"fractions": [5, 3]}}, "[5, 3]"),
    ({"sample": {"max_fraction": 1.5}}, "1.5"),
    ({"source": {"name": "sdss"}}, "'sdss'"),
    ({"source": {"name": "files"}}, "labels=None"),
    ({"application": {"estimator": "nope"}}, "'nope'"),
    ({"estimators": {}}, "no estimators"),
    ({"estimators": {"a": {"params": {}}}}, "estimators.a"),
    ({"estimators": {"a": {"estimator": "x", "prams": {}}}}, "prams"),
    # a value of the wrong type fails here, not in a later stage (or, silently, never)
    ({"evaluate": {"figures": "no"}}, "evaluate.figures must be true or false"),
    ({"application": {"unlabelled_only": "yes"}}, "application.unlabelled_only"),
    ({"crossmatch": {"one_to_one": 1}}, "crossmatch.one_to_one"),
    ({"sample": {"seed": "a"}}, "sample.seed must be an integer"),
    ({"sample": {"n_bins": 2.5}}, "sample.n_bins"),
    ({"sample": {"n_bins": 0}}, "sample.n_bins must be a positive integer"),
    ({"sample": {"column": 5}}, "sample.column must be a string"),
    ({"report": {"title": 3}}, "report.title"),
    ({"source": {"params": [1]}}, "source.params must be a mapping"),
    ({"output_dir": 5}, "output_dir must be a path"),
    ({"application": {"source_type": "exp"}}, "'exp'"),
    ({"estimators": {"a": {"estimator": "x", "target": 3}}}, "estimators.a.target"),
    ({"estimators": {"a": {"estimator": "x", "params": []}}}, "estimators.a.params"),
])
def test_load_config_rejects_bad_values_naming_them(bad, fragment):
    with pytest.raises(ParameterError) as info:
        load_config(bad)
    assert fragment in str(info.value)


def test_load_config_takes_path_objects_for_paths(tmp_path):
    """A pathlib.Path is a path (the files source documents str or path-like) as it was
    before the type checks, not 'must be a path (a string)'."""
    from pathlib import Path

    labels, images = Path(tmp_path / "labels.fits"), Path(tmp_path / "images.fits")
    config = load_config({"source": {"name": "files", "labels": labels, "images": images}},
                         output_dir=Path(tmp_path / "run"))
    assert config["source"]["labels"] == labels
    assert config["output_dir"] == Path(tmp_path / "run")


def test_config_files_in_every_format_read_back_the_same(tmp_path):
    import yaml

    user = {"crossmatch": {"radius_arcsec": 1.5}, "sample": {"n_galaxies": 100}}
    (tmp_path / "c.json").write_text(json.dumps(user))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(user))
    (tmp_path / "c.toml").write_text("[crossmatch]\nradius_arcsec = 1.5\n[sample]\n"
                                     "n_galaxies = 100\n")
    expected = load_config(user)
    for name in ("c.json", "c.yaml", "c.toml"):
        assert load_config(tmp_path / name) == expected
    # the example configuration printed by the command line reads back as the defaults
    (tmp_path / "full.toml").write_text(config_to_toml(DEFAULT_CONFIG))
    assert load_config(tmp_path / "full.toml") == load_config()


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ParameterError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[crossmatch\nradius_arcsec = 1")
    with pytest.raises(ParameterError, match="bad.toml"):
        load_config(bad)
    other = tmp_path / "c.ini"
    other.write_text("x")
    with pytest.raises(ParameterError, match="c.ini"):
        load_config(other)


def test_pipeline_needs_a_usable_output_folder(tmp_path):
    with pytest.raises(ParameterError, match="--out"):
        Pipeline({})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ParameterError, match="cannot create the output folder"):
        Pipeline({}, output_dir=blocker / "out").run()


# -- files -----------------------------------------------------------------------------------

def test_cutout_store_reads_rows_in_any_order(tmp_path):
    cutouts = np.arange(5 * 3 * 4 * 4, dtype=np.float32).reshape(5, 3, 4, 4)
    write_cutouts(tmp_path / "c.h5", cutouts)
    rows = [3, 0, 3, 4]
    np.testing.assert_array_equal(read_cutouts(tmp_path / "c.h5", rows), cutouts[rows])
    np.testing.assert_array_equal(read_cutouts(tmp_path / "c.h5"), cutouts)
    assert read_cutouts(tmp_path / "c.h5", []).shape == (0, 3, 4, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]  # no temporary file left


# -- a whole run -----------------------------------------------------------------------------

def test_run_writes_every_stage_output(fake_run):
    _, _, out, result = fake_run
    for name in ("sky/labels.fits", "sky/images.fits", "sky/cutouts.h5", "sky/truth.fits",
                 "select/labels_starforming.fits", "crossmatch/matched.fits",
                 "preprocess/labelled.fits", "preprocess/labelled_cutouts.h5",
                 "preprocess/application.fits", "sample/sample.fits",
                 "estimate/colour_polynomial_2_test.ecsv", "estimate/mzr_test.ecsv",
                 "estimate/colour_polynomial_2_application.ecsv", "evaluate/metrics.ecsv",
                 "catalogue/catalogue.fits", "catalogue/catalogue.ecsv", "report.html",
                 "config.json", "pipeline_state.json"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.part")), "a temporary file was left behind"
    assert result["skipped"] == []
    assert set(result["timings"]) >= {"sky", "evaluate", "report"}


def test_stage_counts_follow_the_data(fake_run):
    _, _, out, _ = fake_run
    selected = read_table(out / "select/labels_starforming.fits")
    assert len(selected) == 40  # 4 of the 44 fake labels are AGN
    labelled = read_table(out / "preprocess/labelled.fits")
    assert len(labelled) == 40  # every label is matched within 1 arcsec
    flags = list(labelled["preprocess_flag"])
    assert flags[0] == "invalid_pixels"  # image 0 is all NaN
    sample = read_table(out / "sample/sample.fits")
    assert np.all(sample["preprocess_ok"])
    counts = {s: int(np.sum(sample["split"] == s)) for s in ("train", "validation", "test")}
    assert sum(counts.values()) == flags.count("ok")
    assert counts["train"] > counts["validation"] > counts["test"] > 0
    # no galaxy is in two splits
    assert len(set(sample["specobjid"])) == len(sample)


def test_metrics_table_holds_each_estimator_and_the_noise_floor(fake_run):
    _, _, out, result = fake_run
    metrics = result["metrics"]
    assert list(metrics["estimator"]) == ["colour_polynomial_2", "mzr", "noise_floor"]
    row = metrics[0]
    predictions = read_table(out / "estimate/colour_polynomial_2_test.ecsv")
    good = predictions["Z_pred_flag"] == "ok"
    delta = np.asarray(predictions["Z_pred"][good]) - np.asarray(predictions["oh_p50"][good])
    assert row["n"] == good.sum()
    assert row["mu"] == pytest.approx(delta.mean())
    assert row["sigma"] == pytest.approx(delta.std())
    # the fake sky's Z follows g - r closely; the mass relation knows nothing of it
    assert row["sigma"] < metrics["sigma"][1]
    assert np.all(np.isfinite(metrics["sigma"]))


def test_catalogue_has_the_paper_columns_and_every_application_galaxy(fake_run):
    _, _, out, _ = fake_run
    from gpm_astro.io import read_table

    catalogue = read_table(out / "catalogue/catalogue.fits")
    # the fake run's estimator has no domain model: the two domain columns are left out
    assert tuple(catalogue.colnames) == tuple(
        c for c in CATALOGUE_COLUMNS if c not in ("Z_pred_domain", "Z_pred_domain_flag"))
    assert "outside_training_domain" not in catalogue.meta
    images = read_table(out / "sky/images.fits")
    matched = read_table(out / "crossmatch/matched.fits")
    labelled_rows = set(np.asarray(matched["image_row"][matched["matched"]]))
    exp_unlabelled = [i for i, t in enumerate(images["source_type"])
                      if t == "EXP" and i not in labelled_rows]
    assert list(catalogue["objid"]) == list(images["objid"][exp_unlabelled])
    ok = catalogue["Z_pred_flag"] == "ok"
    assert ok.any()
    z = np.asarray(catalogue["Z_pred"][ok])
    assert np.all((z > 7.5) & (z < 10))
    assert catalogue["Z_pred"].unit == "dex"
    ecsv = read_table(out / "catalogue/catalogue.ecsv")
    assert ecsv.colnames == catalogue.colnames and len(ecsv) == len(catalogue)
    steps = [s["step"] for s in ecsv.meta["gpm_astro"]["steps"]]
    assert "predict_metallicity" in steps and "pipeline.catalogue" in steps


def test_rerun_skips_done_stages_and_reruns_what_changed(fake_run, tmp_path):
    folder, source, out, _ = fake_run
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    again = run_pipeline(_config(source), output_dir=copy, progress=False)
    assert set(again["skipped"]) == {name for name in again["timings"]}
    # how fast a stage runs is not what it makes: other n_jobs, nothing to redo
    faster = run_pipeline(_config(source, preprocess={"n_jobs": 2}), output_dir=copy,
                          progress=False)
    assert set(faster["skipped"]) == set(faster["timings"])
    changed = dict(FAST_ESTIMATORS, mzr={"estimator": "mass_metallicity",
                                         "params": {"mass_column": "lgm_fib_p50"}})
    before = (copy / "sample/sample.fits").stat().st_mtime_ns
    third = run_pipeline(_config(source, estimators=changed), output_dir=copy,
                         progress=False)
    rerun = set(third["timings"]) - set(third["skipped"])
    assert rerun == {"estimate:mzr", "evaluate", "catalogue", "report"}
    assert (copy / "sample/sample.fits").stat().st_mtime_ns == before
    forced = run_pipeline(_config(source, estimators=changed), output_dir=copy,
                          progress=False, force=True, until="select")
    assert forced["skipped"] == [] and list(forced["timings"]) == ["sky", "select"]


def test_a_target_the_configuration_names_is_checked_and_its_change_retrains(fake_run,
                                                                             tmp_path):
    import shutil

    _, source, out, _ = fake_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    # a column that is not there: a ParameterError naming the key, before any training
    for changes, key in (({"evaluate": {"target": "oh_p5O"}}, "evaluate.target = 'oh_p5O'"),
                         ({"sample": {"column": "oh"}}, "sample.column = 'oh'")):
        with pytest.raises(ParameterError, match=key):
            run_pipeline(_config(source, **changes), output_dir=copy, progress=False)
    # the estimators without a target of their own learn evaluate.target: a new one retrains
    result = run_pipeline(_config(source, evaluate={"target": "lgm_tot_p50"}),
                          output_dir=copy, progress=False)
    assert {"estimate:colour_polynomial_2", "estimate:mzr"}.isdisjoint(result["skipped"])
    assert set(result["metrics"]["target"]) == {"lgm_tot_p50"}


class _BrokenEstimator(Estimator):
    name = "pipeline_test_broken"
    required_columns = ()

    def __init__(self, *, fail=True):
        self.fail = fail

    def fit(self, table, *, target="oh_p50"):
        if self.fail:
            raise GPMAstroError("the test estimator failed on purpose")
        self.fitted_ = True
        return self

    def predict(self, table):
        from astropy.table import MaskedColumn

        n = len(table)
        return Table({"Z_pred": MaskedColumn(np.full(n, 9.0), unit="dex"),
                      "Z_pred_err": MaskedColumn(np.full(n, 0.1), unit="dex"),
                      "Z_pred_flag": np.full(n, "ok")})


class _BrokenPlugin:
    @hookimpl
    def gpm_astro_register_estimators(self, register):
        register(_BrokenEstimator, name="pipeline_test_broken")


def test_a_failing_stage_keeps_earlier_outputs_and_a_rerun_resumes(fake_run, tmp_path,
                                                                   fresh_plugins):
    _, source, _, _ = fake_run
    fresh_plugins.register_plugin(_BrokenPlugin(), name="pipeline_test_broken")
    estimators = {"broken": {"estimator": "pipeline_test_broken", "params": {"fail": True}}}
    config = _config(source, estimators=estimators, application={"estimator": None})
    out = tmp_path / "out"
    with pytest.raises(GPMAstroError, match="on purpose"):
        run_pipeline(config, output_dir=out, progress=False)
    assert (out / "sample/sample.fits").is_file()
    assert not (out / "estimate/broken_test.ecsv").exists()
    state = json.loads((out / "pipeline_state.json").read_text())
    assert "sample" in state and "estimate:broken" not in state
    estimators["broken"]["params"]["fail"] = False
    result = run_pipeline(config, output_dir=out, progress=False)
    assert {"sky", "select", "crossmatch", "preprocess", "sample"} <= set(result["skipped"])
    assert list(result["metrics"]["estimator"]) == ["broken", "noise_floor"]
    assert not (out / "catalogue").exists()  # application.estimator = null: no catalogue


def test_files_source_needs_a_cutout_column(tmp_path):
    from pipeline_fakes import make_fake_sky

    labels, images, _ = make_fake_sky(n_images=8, n_labelled=4)
    images.remove_column("cutout")
    labels.write(tmp_path / "labels.ecsv")
    images.write(tmp_path / "images.ecsv")
    source = {"name": "files", "labels": str(tmp_path / "labels.ecsv"),
              "images": str(tmp_path / "images.ecsv")}
    with pytest.raises(SchemaError, match="'cutout'"):
        run_pipeline(_config(source), output_dir=tmp_path / "out", progress=False)


# -- the catalogue builder -------------------------------------------------------------------

def test_a_missing_relative_input_file_says_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = {"name": "files", "labels": "data/labels.fits", "images": "data/images.fits"}
    with pytest.raises(ParameterError, match="source.labels") as info:
        Pipeline(_config(source), output_dir="out")
    assert "current folder" in str(info.value) and str(tmp_path) in str(info.value)


def test_make_catalogue_derives_mag_r_and_keeps_row_order():
    from astropy.table import MaskedColumn

    predictions = Table({
        "ra": [10.0, 11.0, 12.0], "dec": [-1.0, 0.0, 1.0], "release": [9010] * 3,
        "brickid": [1, 2, 3], "objid": [5, 6, 7], "z_phot_median": [0.1, 0.2, 0.3],
        "flux_r": [100.0, 0.0, -1.0],
        "Z_pred": MaskedColumn([8.8, 0.0, 0.0], mask=[False, True, True]),
        "Z_pred_err": MaskedColumn([0.1, 0.0, 0.0], mask=[False, True, True]),
        "Z_pred_flag": ["ok", "preprocess:blended", "preprocess:invalid_pixels"],
        "preprocess_flag": ["ok", "blended", "invalid_pixels"], "extra": [1, 2, 3],
        "Z_pred_domain": MaskedColumn([1.7, 0.0, 0.0], mask=[False, True, True]),
        "Z_pred_domain_flag": ["out:mag_r", "", ""]})
    catalogue = make_catalogue(predictions)
    assert tuple(catalogue.colnames) == CATALOGUE_COLUMNS
    assert catalogue.meta["outside_training_domain"] == {"n_predicted": 1, "n_outside": 1,
                                                         "fraction": 1.0}
    assert catalogue["mag_r"][0] == pytest.approx(17.5)
    assert list(catalogue["mag_r"].mask) == [False, True, True]
    assert list(catalogue["objid"]) == [5, 6, 7]
    assert "extra" not in catalogue.colnames and "extra" in predictions.colnames
    predictions.remove_column("flux_r")
    with pytest.raises(SchemaError, match="flux_r"):
        make_catalogue(predictions)


# -- command line ----------------------------------------------------------------------------

def test_cli_run_exit_codes_and_messages(fake_run, tmp_path, capsys):
    import tomllib

    _, source, _, _ = fake_run
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    assert "configuration file" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.toml")]) == 1
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[crossmatch]\nradius = 2\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "crossmatch.radius" in capsys.readouterr().err
    assert main(["run", "--example-config"]) == 0
    assert load_config(tomllib.loads(capsys.readouterr().out)) == load_config()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_config(source)))
    assert main(["run", str(good), "--out", str(tmp_path / "o"), "--quiet",
                 "--until", "select"]) == 0
    assert (tmp_path / "o/select/labels_starforming.fits").is_file()
    assert not (tmp_path / "o/crossmatch").exists()


def test_keep_cutouts_false_removes_the_stores_and_a_rerun_remakes_them(fake_run, tmp_path):
    _, source, kept_out, _ = fake_run
    import shutil

    out = tmp_path / "out"
    shutil.copytree(kept_out, out)
    config = _config(source, keep_cutouts=False)
    first = run_pipeline(config, output_dir=out, progress=False)  # how it is kept: not stale
    assert set(first["skipped"]) == set(first["timings"])
    stores = ("sky/cutouts.h5", "preprocess/labelled_cutouts.h5",
              "preprocess/application_cutouts.h5")
    assert not any((out / store).exists() for store in stores)
    assert (out / "report.html").is_file() and "metrics" in first
    state = json.loads((out / "pipeline_state.json").read_text())
    assert sorted(state["_removed_cutouts"]) == sorted(stores)
    # the removed stores do not make a stage stale
    again = run_pipeline(config, output_dir=out, progress=False)
    assert set(again["skipped"]) == set(again["timings"])
    # a changed estimator that reads no cutouts reruns without them
    changed = dict(FAST_ESTIMATORS, mzr={"estimator": "mass_metallicity",
                                         "params": {"mass_column": "lgm_fib_p50"}})
    third = run_pipeline(_config(source, keep_cutouts=False, estimators=changed),
                         output_dir=out, progress=False)
    assert set(third["timings"]) - set(third["skipped"]) == {"estimate:mzr", "evaluate",
                                                              "catalogue", "report"}
    assert not any((out / store).exists() for store in stores)
    # a stage that reads a store gets it made again, its input first, the same bytes
    pipe = Pipeline(config, output_dir=out, progress=False)
    remade = pipe.cutout_store("preprocess/labelled_cutouts.h5")
    np.testing.assert_array_equal(read_cutouts(remade),
                                  read_cutouts(kept_out / "preprocess/labelled_cutouts.h5"))
    assert (out / "sky/cutouts.h5").is_file()
    state = json.loads((out / "pipeline_state.json").read_text())
    assert state["_removed_cutouts"] == []
    with pytest.raises(ParameterError, match="keep_cutouts must be true or false, got 'no'"):
        load_config({"keep_cutouts": "no"})


def test_application_galaxies_are_chosen_by_source_type_or_tractor_type_in_any_case():
    from gpm_astro.pipeline.data_stages import DataStages

    stages = DataStages.__new__(DataStages)
    stages.config = {"application": {"source_type": "EXP", "unlabelled_only": True,
                                     "max_galaxies": None}}
    matched = Table({"image_row": [1, -1], "matched": [True, False]})
    for name, values in (("source_type", ["EXP", "EXP", "REX", "EXP"]),
                         ("TYPE", ["EXP", "EXP ", "REX", "exp"]),
                         ("type", [b"EXP", b"EXP", b"REX", b"EXP"])):
        images = Table({name: values})
        assert stages._application_rows(images, matched).tolist() == [0, 3]
    with pytest.raises(SchemaError, match="'source_type' \\(or Tractor's 'TYPE'\\)"):
        stages._application_rows(Table({"morphology": ["EXP"] * 4}), matched)
