"""Mistakes of a first-time user of predict_metallicity that no row flag may hide."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro import predict_metallicity
from gpm_astro.exceptions import SchemaError


@pytest.mark.parametrize("shape, preprocess_ok", [
    ((3, 152, 152, 3), None),   # channels-last, every cutout blank: no row reaches the model
    ((3, 2, 152, 152), None),   # two bands
    ((3, 3, 152, 152, 1), False),  # every row already rejected by preprocessing
])
def test_a_cutout_column_of_the_wrong_shape_is_an_error_whatever_the_rows_hold(shape,
                                                                               preprocess_ok):
    table = Table({"cutout": np.zeros(shape, np.float32)})
    if preprocess_ok is not None:
        table["preprocess_ok"] = np.full(len(table), preprocess_ok)
        table["preprocess_flag"] = np.full(len(table), "blended")
    with pytest.raises(SchemaError, match=rf"shape .*got \({shape[0]}, "):
        predict_metallicity(table, estimator="gpm_resnet", weights="gpm_resnet_lite_mock",
                            progress=False)


def test_the_preprocess_progress_bar_knows_how_many_cutouts_there_are(capsys):
    from gpm_astro import preprocess_cutouts

    table = Table({"cutout": np.zeros((4, 3, 32, 32), np.float32)})
    preprocess_cutouts(table, batch_size=2, progress=True)
    assert "4/4" in capsys.readouterr().err  # a fraction and a time left, not a bare count


@pytest.mark.parametrize("passes", [0, -1])
def test_mc_passes_below_one_is_refused_at_prediction(passes):
    from gpm_astro.exceptions import ParameterError

    y, x = np.mgrid[:152, :152]
    galaxy = 0.3 * np.exp(-((x - 75.5) ** 2 + (y - 75.5) ** 2) / 20.0)
    noise = np.random.default_rng(0).normal(0, 0.005, (1, 3, 152, 152))
    table = Table({"cutout": (galaxy + noise).astype(np.float32)})
    with pytest.raises(ParameterError, match=rf"mc_passes must be a positive integer, "
                                             rf"got {passes}"):
        predict_metallicity(table, estimator="gpm_resnet", weights="gpm_resnet_lite_mock",
                            mc_passes=passes, progress=False)


@pytest.mark.parametrize("workers", [-1, 1.5])
def test_fit_archive_names_a_bad_num_workers_before_reading(tmp_path, workers):
    from gpm_astro.exceptions import ParameterError
    from gpm_astro.plugins import get_estimator

    net = get_estimator("gpm_resnet")(config="lite", progress=False)
    with pytest.raises(ParameterError, match=rf"num_workers must be an integer >= 0 .*got "
                                             rf"{workers}"):
        net.fit_archive(tmp_path / "no-archive-needed", num_workers=workers)
