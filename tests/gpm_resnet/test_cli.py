"""``gpm-astro train``."""

import json

from gpm_astro.cli import main
from gpm_astro.io import write_table
from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

from .conftest import make_galaxies


def test_train_command_writes_a_loadable_model(tmp_path, capsys):
    table_path = tmp_path / "train.fits"
    write_table(make_galaxies(24, seed=4), str(table_path))
    out_dir = tmp_path / "model"
    code = main(["train", str(table_path), "--out", str(out_dir), "--config", "lite",
                 "--epochs", "1", "--batch-size", "8", "--mc-passes", "2", "--quiet"])
    assert code == 0
    assert "validation" in capsys.readouterr().out
    card = json.loads((out_dir / "model_card.json").read_text())
    assert card["architecture"]["name"] == "lite" and card["architecture"]["epochs"] == 1
    loaded = GPMResNetEstimator.load(out_dir, progress=False)
    assert len(loaded.predict(make_galaxies(3, seed=5))) == 3


def test_train_command_reports_a_missing_target(tmp_path, capsys):
    table_path = tmp_path / "train.fits"
    write_table(make_galaxies(8, seed=4), str(table_path))
    code = main(["train", str(table_path), "--out", str(tmp_path / "m"), "--target", "nope",
                 "--quiet"])
    assert code == 1
    assert "nope" in capsys.readouterr().err
