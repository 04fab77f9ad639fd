"""Each ablation study at toy size: its table's numbers, the resume, figures and report."""

import json

import numpy as np
import pytest

from gpm_astro.ablation import STUDY_NAMES, band_composite, load_settings, run_ablations
from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.io import read_table
from gpm_astro.metrics import summarize
from gpm_astro.survey_constants import tremonti_metallicity

from .conftest import toy_settings


def reference_predictions(out):
    return read_table(out / "models/gpm_resnet/predictions.ecsv")


def test_architectures_table(ablated):
    out, _, result = ablated
    table = result["tables"]["architectures"]
    assert list(table["model"]) == ["mobilenet_v2", "gpm_resnet"]
    assert list(table["name"]) == ["MobileNetV2", "GPM-ResNet"]
    assert np.all(table["n_parameters"] > 1000) and np.all(table["train_seconds"] > 0)
    assert np.all(table["n_train"] == 24) and np.all(table["n"] == 12)
    predictions = reference_predictions(out)
    stats = summarize(predictions["Z_pred"], predictions["oh_p50"])
    row = table[table["model"] == "gpm_resnet"][0]
    assert row["sigma"] == pytest.approx(stats["sigma"]) and row["mu"] == pytest.approx(
        stats["mu"])
    assert table["sigma"].unit == "dex" and (out / "architectures.ecsv").is_file()


def test_size_table_bins_the_reference_test_errors(ablated):
    out, _, result = ablated
    table = result["tables"]["size"]
    assert list(table["radius_low"]) == [0, 1, 2, 3, 4, 5]
    assert str(table["radius_low"].unit) == "arcsec"
    predictions = reference_predictions(out)
    assert table["n"].sum() == len(predictions)
    radius = np.asarray(predictions["enclosing_radius"])
    inside = (radius >= 2) & (radius < 3)
    row = table[table["radius_low"] == 2][0]
    assert row["n"] == inside.sum()
    if inside.sum() > 1:
        expected = summarize(predictions["Z_pred"][inside], predictions["oh_p50"][inside])
        assert row["sigma"] == pytest.approx(expected["sigma"])


def test_resolution_table_retrains_per_size(ablated):
    out, _, result = ablated
    table = result["tables"]["resolution"]
    assert list(table["input_size"]) == [16, 32]
    # 32 px is the toy cutouts' own size: the reference model, not a new one
    assert list(table["model"]) == ["gpm_resnet_size16", "gpm_resnet"]
    card = json.loads((out / "models/gpm_resnet_size16/result.json").read_text())
    assert card["params"]["config"]["input_size"] == 16
    assert np.all(table["n"] == 12) and np.all(np.isfinite(table["sigma"]))


def test_band_table_uses_flux_composites(ablated):
    out, _, result = ablated
    table = result["tables"]["bands"]
    assert list(table["bands"]) == ["g", "gz", "grz"]
    assert list(table["channels"]) == ["g | g | g", "g | (g+z)/2 | z", "g | r | z"]
    assert list(table["model"]) == ["gpm_resnet_bands_g", "gpm_resnet_bands_gz", "gpm_resnet"]
    card = json.loads((out / "models/gpm_resnet_bands_gz/result.json").read_text())
    assert card["bands"] == "gz" and card["params"]["config"]["bands"] == "BGR"


def test_mzr_table_against_tremonti_and_labels(ablated):
    out, settings, result = ablated
    table = result["tables"]["mzr"]
    predictions = reference_predictions(out)
    mass = np.asarray(predictions["lgm_tot_p50"])
    assert table["n"].sum() == np.sum((mass >= 8.5) & (mass <= 11.5))
    row = table[np.argmax(table["n"])]
    inside = (mass >= row["logm_low"]) & (mass < row["logm_high"])
    assert row["Z_pred_median"] == pytest.approx(np.median(predictions["Z_pred"][inside]))
    assert row["Z_true_median"] == pytest.approx(np.median(predictions["oh_p50"][inside]))
    assert row["Z_tremonti"] == pytest.approx(tremonti_metallicity(row["logm_median"]))
    assert row["pred_minus_true"] == pytest.approx(row["Z_pred_median"] - row["Z_true_median"])
    assert table.meta["summary"]["mass_column"] == "lgm_tot_p50"
    assert str(table["logm_low"].unit) == "dex(solMass)"


def test_figures_and_report(ablated):
    out, _, result = ablated
    assert set(result["figures"]) == {"architectures.png", "fig11_size_resolution_bands.png",
                                      "fig13_mzr.png"}
    for name in result["figures"]:
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert page.count("<h3>") == len(STUDY_NAMES) and page.count("data:image/png") == 3


def test_rerun_skips_finished_studies(ablated):
    out, settings, _ = ablated
    before = (out / "models/gpm_resnet/result.json").stat().st_mtime_ns
    (out / "bands.ecsv").unlink()
    again = run_ablations(out, settings, progress=False)
    assert set(again["skipped"]) == set(STUDY_NAMES) - {"bands"}
    # the bands study was redone from the cached models: nothing trained again
    assert (out / "models/gpm_resnet/result.json").stat().st_mtime_ns == before
    assert again["seconds"]["bands"] < 30


def test_cli_resumes_the_same_folder(ablated, capsys):
    from gpm_astro.cli import main

    out, settings, _ = ablated
    config = out / "settings_again.json"
    config.write_text(json.dumps(settings))
    assert main(["ablate", "--out", str(out), "--config", str(config), "--studies",
                 "size,mzr", "--quiet"]) == 0
    assert "report:" in capsys.readouterr().out
    # the same folder with other settings (here the paper-sized defaults) is refused
    other = out / "settings.toml"
    other.write_text(f'[sample]\nrun_dir = "{settings["sample"]["run_dir"]}"\n')
    assert main(["ablate", "--out", str(out), "--config", str(other), "--studies",
                 "size,mzr", "--quiet"]) != 0
    assert "other settings" in capsys.readouterr().err


def test_band_composite_rules():
    from astropy.table import Table

    table = Table({"cutout": np.arange(6.0).reshape(2, 3, 1, 1)})
    table.meta["bands"] = "grz"
    single = band_composite(table, "r")
    assert single["cutout"][:, :, 0, 0].tolist() == [[1, 1, 1], [4, 4, 4]]
    assert single.meta["bands"] == "BGR" and table.meta["bands"] == "grz"
    pair = band_composite(table, "rz")
    assert pair["cutout"][0, :, 0, 0].tolist() == [1.0, 1.5, 2.0]
    for bad in ("gg", "u", "grzg", ""):
        with pytest.raises(ParameterError, match="bands must be 1-3 distinct letters"):
            band_composite(table, bad)
    with pytest.raises(SchemaError, match="'cutout'"):
        band_composite(Table({"x": [1]}), "g")


@pytest.mark.parametrize("settings, message", [
    ({"studies": ["colour"]}, "studies must be a non-empty list"),
    ({"resolution": {"sizes": [0, 32]}}, "resolution.sizes"),
    ({"size": {"edges": [0, 2, 1]}}, "size.edges"),
    ({"bands": {"sets": ["gg"]}}, "bands.sets"),
    ({"reference": {"params": {"config": "lite"}}}, "reference.params.config"),
    ({"architectures": {"nmaes": []}}, "unknown ablation setting 'architectures.nmaes'"),
    ({"sample": {"pipeline": 5}}, "pipeline run configuration: a mapping or a file"),
    # these passed the settings and failed only after the sample was made
    ({"bands": {"sets": ["gx"]}}, r"bands\.sets .* g, r, z each, got \['gx'\]"),
    ({"reference": {"estimator": "gpm_resnt"}}, "reference: no estimator named 'gpm_resnt'"),
    ({"architectures": {"names": ["resnet51"]}},
     r"architectures\.names\[0\]: no estimator named 'resnet51'"),
    ({"architectures": {"params": {"no_such_parameter": 1}}},
     r"architectures\.names\[0\]: .*no parameter\(s\) \['no_such_parameter'\]"),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ParameterError, match=message):
        load_settings(settings)


def test_sample_from_a_run_configuration_file():
    settings = load_settings({"sample": {"pipeline": "run.toml"}}, quick=True)
    assert settings["sample"] == {"run_dir": None, "pipeline": "run.toml"}
    assert settings["architectures"]["params"]["width"] == 0.25


def test_missing_sample_is_named(tmp_path):
    with pytest.raises(ParameterError, match="holds no sample/sample.fits"):
        run_ablations(tmp_path / "out", toy_settings(sample={"run_dir": str(tmp_path)}),
                      progress=False)


def test_paper_sized_defaults_are_valid():
    from gpm_astro.ablation.studies import reference_params
    from gpm_astro.pipeline import load_config
    from gpm_astro.plugins import get_estimator
    from gpm_astro_plugins.gpm_resnet.model import get_config

    settings = load_settings()
    config = get_config(reference_params(settings, input_size=64)["config"])
    assert config.blocks == (3, 4, 6, 3) and config.input_size == 64 and config.epochs == 50
    assert get_config(reference_params(settings, bands="BGR")["config"]).bands == "BGR"
    pipeline = load_config(settings["sample"]["pipeline"])
    assert pipeline["sample"]["n_galaxies"] == 25000 and pipeline["sample"]["fractions"] == [
        5, 3, 2]
    for name in settings["architectures"]["names"]:
        estimator = get_estimator(name)(**settings["architectures"]["params"])
        assert estimator._resolved_recipe().epochs == 50 and estimator.width == 1.0


def test_cli_prints_every_setting(capsys):
    from gpm_astro.cli import main

    assert main(["ablate", "--example-config", "--quick"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["studies"] == list(STUDY_NAMES)
    assert printed["reference"]["params"]["config"]["width"] == 0.25


def test_pipeline_report_gets_the_ablation_section(ablated, tmp_path):
    import shutil

    from astropy.table import Table

    from gpm_astro.report import write_report

    out, _, _ = ablated
    (tmp_path / "evaluate").mkdir()
    Table({"estimator": ["gpm_resnet"], "method": ["GPM-ResNet"], "n": [10], "mu": [0.01],
           "sigma": [0.1], "nmad": [0.09], "coverage": [0.68]}).write(
        tmp_path / "evaluate/metrics.ecsv")
    page = write_report(tmp_path).read_text()
    assert "Ablation studies" not in page
    shutil.copytree(out, tmp_path / "ablation", ignore=shutil.ignore_patterns("models"))
    page = write_report(tmp_path).read_text()
    assert "Ablation studies" in page and "Mass-metallicity relation recovered" in page


def test_columns_found_whatever_their_case(tmp_path):
    from gpm_astro.ablation.models import ModelRunner
    from gpm_astro.io import write_table

    from .conftest import make_toy_run

    run = make_toy_run(tmp_path / "run", n=8)
    sample = read_table(run / "sample/sample.fits")
    sample.rename_columns(["oh_p50", "enclosing_radius", "lgm_tot_p50"],
                          ["OH_P50", "Enclosing_Radius", "LGM_TOT_P50"])
    write_table(sample, run / "sample/sample.fits", overwrite=True)
    runner = ModelRunner(run, tmp_path / "out", "oh_p50",
                         columns=("enclosing_radius", "lgm_tot_p50"), progress=False)
    test = runner.split("test")
    assert {"oh_p50", "enclosing_radius", "lgm_tot_p50"} <= set(test.colnames)
    assert test["cutout"].shape == (2, 3, 32, 32)
    with pytest.raises(SchemaError, match="'z_true'"):
        ModelRunner(run, tmp_path / "out", "z_true", progress=False).split("train")


def test_size_study_with_one_model_per_bin(ablated, tmp_path):
    from gpm_astro.ablation.models import ModelRunner
    from gpm_astro.ablation.studies import size_study

    out, settings, _ = ablated
    settings = load_settings(dict(settings, size={"edges": [0, 3, 6], "retrain": True}))
    runner = ModelRunner(settings["sample"]["run_dir"], tmp_path, "oh_p50",
                         columns=("enclosing_radius",), progress=False)
    table = size_study(runner, settings)
    assert list(table["radius_low"]) == [0, 3] and table.meta["retrain"] is True
    radius = np.asarray(runner.split("train")["enclosing_radius"])
    assert list(table["n_train"]) == [np.sum(radius < 3), np.sum(radius >= 3)]
    for row in table:
        card = json.loads((tmp_path / "models" / row["model"] / "result.json").read_text())
        assert card["n_train"] == row["n_train"] and card["within"][0] == "enclosing_radius"
    test_radius = np.asarray(runner.split("test")["enclosing_radius"])
    assert table["n"].sum() == len(test_radius)
    with pytest.raises(ParameterError, match="size.retrain"):
        load_settings({"size": {"retrain": "yes"}})


def test_rerun_with_other_settings_is_refused(ablated):
    out, settings, _ = ablated
    before = (out / "settings.json").read_bytes()
    changed = dict(settings, resolution={"sizes": [8, 32]})
    with pytest.raises(ParameterError, match=r"resolution\.ecsv.*other settings.*force"):
        run_ablations(out, changed, studies=["resolution"], progress=False)
    # nothing was rewritten: settings.json still describes the tables in the folder
    assert (out / "settings.json").read_bytes() == before
    assert list(read_table(out / "resolution.ecsv")["input_size"]) == [16, 32]


def test_a_failed_variant_is_a_failed_row(toy_run, tmp_path, monkeypatch):
    from gpm_astro.ablation.report_section import ablation_section
    from gpm_astro.plugins import get_estimator

    def diverges(self, table, **kwargs):  # a bad parameter is refused with the settings now
        raise RuntimeError("no finite validation loss")

    monkeypatch.setattr(get_estimator("mobilenet_v2"), "fit", diverges)
    settings = toy_settings(sample={"run_dir": str(toy_run)}, studies=["architectures"])
    result = run_ablations(tmp_path, settings, progress=False)
    table = result["tables"]["architectures"]
    assert list(table["model"]) == ["mobilenet_v2", "gpm_resnet"]
    failed, reference = table
    assert failed["status"] == "failed: RuntimeError: no finite validation loss"
    assert failed["n"] == 0 and failed["n_test"] == 12 and np.isnan(failed["sigma"])
    assert reference["status"] == "ok" and np.isfinite(reference["sigma"])
    assert not (tmp_path / "models/mobilenet_v2/result.json").exists()  # tried again next time
    assert "failed: " in ablation_section(tmp_path)
    assert (tmp_path / "figures/architectures.png").is_file()
    from gpm_astro.ablation.figures import _failed

    assert list(_failed(table)) == [True, False]  # FAILED under its tick, no point drawn


def test_fig13_leaves_a_gap_at_a_sparse_bin(ablated, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from gpm_astro.ablation.figures import plot_fig13

    table = read_table(ablated[0] / "mzr.ecsv")[:3]
    table["n"] = [5, 0, 5]  # the middle bin empty: the lines break there, no bridge over it
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot_fig13(table, tmp_path / "fig13.png")
    median = figures[0].axes[0].lines[0]
    assert np.isnan(median.get_ydata()[1]) and len(median.get_xdata()) == 3


def test_a_partial_rerun_keeps_the_folder_consistent(ablated, monkeypatch):
    import matplotlib.pyplot as plt

    out, settings, _ = ablated
    # a table of a study this run does not redo, made with other settings, is refused too
    changed = dict(settings, resolution={"sizes": [8, 32]})
    with pytest.raises(ParameterError, match=r"resolution\.ecsv.*other settings"):
        run_ablations(out, changed, studies=["size"], force=True, progress=False)
    # the figures show every table of the folder, not only the studies run now
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    run_ablations(out, settings, studies=["size"], progress=False)
    titles = [ax.get_title(loc="left") for fig in figures for ax in fig.axes]
    assert {"(a) size", "(b) resolution", "(c) bands"} <= set(titles)


def test_report_counts_the_galaxies_outside_the_size_bins(ablated, tmp_path):
    from gpm_astro.ablation.report_section import ablation_section
    from gpm_astro.io import write_table

    table = read_table(ablated[0] / "size.ecsv")
    table.meta.update(n_outside=3, n_no_radius=1)
    write_table(table, tmp_path / "size.ecsv")
    page = ablation_section(tmp_path)
    assert "3 test galaxies outside" in page and "1 without" in page
