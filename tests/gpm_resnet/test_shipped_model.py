"""The shipped demo model: registered, checksummed, small, and every prediction says mock sky."""

import json
import os
import shutil

import numpy as np
import pytest

from gpm_astro import predict_metallicity
from gpm_astro.cli import main
from gpm_astro.exceptions import WeightsError
from gpm_astro.weights import (fetch_weights, get_weights_entry, register_weights,
                               sha256_of, unregister_weights)

from .conftest import make_galaxies

NAME = "gpm_resnet_lite_mock"
CAVEAT = "mock sky: not for real galaxies"


def test_shipped_model_is_registered_small_and_verified():
    entry = get_weights_entry(NAME)
    assert entry.estimator == "gpm_resnet"
    assert entry.description.startswith(CAVEAT)
    path = fetch_weights(NAME)  # checks the sha256
    assert sha256_of(path) == entry.sha256
    size = os.path.getsize(path)
    assert 100_000 < size < 5_000_000, size


def test_a_tampered_copy_is_refused(tmp_path):
    entry = get_weights_entry(NAME)
    copy = tmp_path / "tampered.safetensors"
    shutil.copyfile(fetch_weights(NAME), copy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    register_weights("shipped_tampered", url=str(copy), sha256=entry.sha256)
    try:
        with pytest.raises(WeightsError, match="refusing a corrupted or tampered file"):
            fetch_weights("shipped_tampered")
    finally:
        unregister_weights("shipped_tampered")


@pytest.fixture(scope="module")
def shipped():
    from gpm_astro.plugins import get_estimator

    return get_estimator("gpm_resnet").load(NAME)


def test_the_documented_call_predicts_with_the_mock_sky_caveat(shipped):
    estimator = shipped
    assert estimator.caveat == CAVEAT
    assert estimator.model_card()["caveat"] == CAVEAT
    cleaned = make_galaxies(4, size=estimator.config_.cutout_size, seed=3, noise=0.01)
    cleaned["preprocess_ok"] = [True, True, True, False]
    cleaned["preprocess_flag"] = ["ok", "ok", "ok", "blended"]
    cleaned["psfsize"] = np.full((4, 3), 1.3, np.float32)  # the seeing correction reads it
    cleaned["z_phot_median"] = np.full(4, 0.1)  # the domain check reads it
    # docs/estimators.rst, "predict_metallicity"
    out = predict_metallicity(cleaned, estimator="gpm_resnet", weights=NAME, progress=False)
    assert list(out["Z_pred_flag"]) == ["ok", "ok", "ok", "preprocess:blended"]
    z = np.asarray(out["Z_pred"][:3], float)
    assert np.all(np.isfinite(z)) and np.all((z > 7.5) & (z < 10.0))
    assert list(out["Z_pred_caveat"]) == [CAVEAT] * 4
    assert out.meta["caveat"] == CAVEAT
    step = out.meta["gpm_astro"]["steps"][-1]["params"]
    assert step["weights"] == NAME and step["caveat"] == CAVEAT


def test_predict_without_weights_gives_command_line_advice(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "in.fits"), str(tmp_path / "out.fits")]) == 1
    err = capsys.readouterr().err
    assert f"--weights gpm_resnet_lite_mock ({CAVEAT})" in err
    assert "--fit-table TABLE" in err and "load(" not in err


def test_the_card_records_the_caveat_and_a_resave_keeps_it(shipped, tmp_path):
    from gpm_astro.plugins import get_estimator

    shipped.save(tmp_path / "again")
    card = json.loads((tmp_path / "again/model_card.json").read_text())
    assert card["caveat"] == CAVEAT
    assert get_estimator("gpm_resnet").load(tmp_path / "again").caveat == CAVEAT
