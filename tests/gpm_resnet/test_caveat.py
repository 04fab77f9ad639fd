"""A caveat in a model card (e.g. "mock sky: not for real galaxies") reaches every prediction."""

import json
import re

import numpy as np
import pytest

from gpm_astro import predict_metallicity
from gpm_astro.cli import main
from gpm_astro.weights import register_weights, unregister_weights
from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator
from gpm_astro_plugins.gpm_resnet.estimator import CARD_FILE

from .conftest import make_galaxies

CAVEAT = "mock sky: not for real galaxies"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_config_module):
    folder = tmp_path_factory.mktemp("caveat")
    estimator = GPMResNetEstimator(config=tiny_config_module, mc_passes=2, progress=False)
    estimator.fit(make_galaxies(40, seed=4))
    estimator.save(folder / "plain")
    estimator.caveat = CAVEAT
    estimator.save(folder / "mock")
    return folder


@pytest.fixture(scope="module")
def tiny_config_module():
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    return GPMResNetConfig(name="test", width=0.125, blocks=(1, 1, 1, 1), input_size=None,
                           input_scaling="asinh", drop_prob=0.1, drop_block_size=3, epochs=2,
                           batch_size=16, lr=2e-3, standardize_target=True, head_hidden=16)


def test_the_caveat_is_in_the_card_and_in_every_prediction(saved):
    card = json.loads((saved / "mock" / CARD_FILE).read_text())
    assert card["caveat"] == CAVEAT
    table = make_galaxies(5, seed=8)
    table["preprocess_ok"] = [True, True, False, True, True]
    out = predict_metallicity(table, estimator="gpm_resnet", weights=saved / "mock",
                              progress=False)
    assert list(out["Z_pred_caveat"]) == [CAVEAT] * 5  # the unpredicted row too
    assert out.meta["caveat"] == CAVEAT
    assert out.meta["gpm_astro"]["steps"][-1]["params"]["caveat"] == CAVEAT
    assert np.isfinite(out["Z_pred"][0]) and out["Z_pred_flag"][2].startswith("preprocess:")


def test_a_model_without_caveat_adds_no_column(saved):
    assert json.loads((saved / "plain" / CARD_FILE).read_text())["caveat"] is None
    out = predict_metallicity(make_galaxies(2, seed=8), estimator="gpm_resnet",
                              weights=saved / "plain", progress=False)
    assert "Z_pred_caveat" not in out.colnames and "caveat" not in out.meta


def test_predict_without_weights_names_the_command_line_options(tmp_path, capsys):
    register_weights("caveat_test_model", url=str(tmp_path / "w.safetensors"),
                     sha256="0" * 64, description=f"{CAVEAT}; a test entry")
    try:
        code = main(["predict", str(tmp_path / "in.fits"), str(tmp_path / "out.fits")])
    finally:
        unregister_weights("caveat_test_model")
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(rf"--weights caveat_test_model \({CAVEAT}; a test entry\)", err)
    assert "--weights DIR" in err and "--fit-table TABLE" in err
    assert ".load(" not in err  # no Python advice in a shell
    code = main(["predict", str(tmp_path / "in.fits"), str(tmp_path / "out.fits"),
                 "--estimator", "colour_polynomial"])
    err = capsys.readouterr().err
    assert code == 1 and "--fit-table TABLE" in err and "caveat_test_model" not in err
