"""evaluate(), the figures, and the predict / evaluate command-line tools."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.cli import main
from gpm_astro.evaluation import (evaluate, plot_catalogue_distributions, plot_colour_colour,
                                  plot_mzr_recovery, plot_residual_density,
                                  plot_z_distributions)
from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.testing import make_estimator_table


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    n = 600
    z = rng.uniform(8.4, 9.3, n)
    pred = np.ma.array(z + 0.02 + rng.normal(0, 0.1, n), mask=np.zeros(n, bool))
    pred.mask[:10] = True
    table = Table({"oh_p50": z, "Z_pred": pred, "Z_pred_err": np.full(n, 0.1),
                   "lgm_tot_p50": rng.uniform(8.5, 11.5, n)})
    table["Z_pred_flag"] = np.where(pred.mask, "blended", "ok")
    return table


def test_evaluate_overall_and_binned(predictions):
    metrics = evaluate(predictions, mass="lgm_tot_p50", z_bins=[8.4, 8.7, 9.0, 9.3])
    overall = metrics[0]
    assert overall["quantity"] == "all" and overall["n"] == 590
    delta = (np.ma.filled(predictions["Z_pred"], np.nan) - predictions["oh_p50"])[10:]
    assert overall["mu"] == pytest.approx(delta.mean())
    assert overall["sigma"] == pytest.approx(delta.std())
    assert 0.6 < overall["coverage"] < 0.76
    z_rows = metrics[metrics["quantity"] == "oh_p50"]
    mass_rows = metrics[metrics["quantity"] == "lgm_tot_p50"]
    assert len(z_rows) == 3 and z_rows["n"].sum() == 590
    assert len(mass_rows) == 6 and mass_rows["n"].sum() == 590
    assert metrics.meta["flag_counts"] == {"blended": 10, "ok": 590}
    assert metrics["mu"].unit == "dex"


def test_evaluate_errors(predictions):
    with pytest.raises(SchemaError, match="nope"):
        evaluate(predictions, true="nope")
    metrics = evaluate(predictions, err=None)
    assert "coverage" not in metrics.colnames


def test_figures_are_written(predictions, tmp_path):
    fig = plot_residual_density(predictions, title="test", path=tmp_path / "fig9.png")
    assert len(fig.axes) == 3 and (tmp_path / "fig9.png").stat().st_size > 5000
    plot_mzr_recovery(predictions, true="oh_p50", path=tmp_path / "fig13.png")
    parts = {"train": predictions[:300], "validation": predictions[300:480],
             "test": predictions[480:]}
    plot_z_distributions(parts, path=tmp_path / "fig8.png")
    table = make_estimator_table(40, cutout_size=4)
    plot_colour_colour(table, path=tmp_path / "fig10.png")
    table["Z_pred"] = table["oh_p50"] - 0.1
    table.remove_column("mag_r")  # computed from flux_r
    plot_catalogue_distributions(table, reference=predictions["oh_p50"],
                                 path=tmp_path / "fig16.png")
    for name in ("fig13", "fig8", "fig10", "fig16"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
    with pytest.raises(ParameterError, match="nothing to plot"):
        plot_residual_density(Table({"Z_pred": [np.nan], "oh_p50": [9.0]}))


def test_cli_predict_then_evaluate(tmp_path, capsys):
    train = make_estimator_table(60, seed=1, cutout_size=4)
    test = make_estimator_table(30, seed=2, cutout_size=4)
    train.remove_column("cutout")
    train.write(tmp_path / "train.ecsv")
    test.write(tmp_path / "test.ecsv")
    code = main(["predict", str(tmp_path / "test.ecsv"), str(tmp_path / "pred.ecsv"),
                 "--estimator", "colour_polynomial", "--param", "order=3",
                 "--fit-table", str(tmp_path / "train.ecsv"), "--drop-cutouts", "--no-progress"])
    assert code == 0
    from gpm_astro.io import read_table

    pred = read_table(tmp_path / "pred.ecsv")
    assert "cutout" not in pred.colnames and len(pred) == 30
    assert pred.meta["gpm_astro"]["steps"][-1]["params"]["estimator_params"]["order"] == 3
    code = main(["evaluate", str(tmp_path / "pred.ecsv"), "--out", str(tmp_path / "eval"),
                 "--mass", "lgm_tot_p50"])
    assert code == 0
    assert "sigma" in capsys.readouterr().out
    metrics = read_table(tmp_path / "eval" / "metrics.ecsv")
    assert metrics["quantity"][0] == "all"
    assert (tmp_path / "eval" / "residual_density.png").exists()
    # an unknown estimator is a clean error, not a traceback
    code = main(["predict", str(tmp_path / "test.ecsv"), str(tmp_path / "x.ecsv"),
                 "--estimator", "nope", "--no-progress"])
    assert code == 1 and "known:" in capsys.readouterr().err
