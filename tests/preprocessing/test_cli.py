"""``gpm-astro preprocess IN OUT``."""

import numpy as np
from astropy.table import Table

from gpm_astro.cli import main
from gpm_astro.io import read_table, write_table

from . import constructed as C


def test_cli_preprocess_writes_flags_and_counts(tmp_path, capsys):
    table = Table({"objid": [1, 2, 3],
                   "cutout": C.stack(C.isolated(seed=1), C.nan_block(seed=2),
                                     C.empty_centre(seed=3))},
                  meta={"bands": "grz", "pixel_scale": 0.262})
    source, target = tmp_path / "in.fits", tmp_path / "out.fits"
    write_table(table, source)
    assert main(["preprocess", str(source), str(target), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "invalid_pixels" in printed and "wrote 3 rows" in printed
    out = read_table(target)
    assert out["objid"].tolist() == [1, 2, 3]
    assert out["preprocess_flag"].tolist() == ["ok", "invalid_pixels", "no_central_source"]
    assert out.meta["gpm_astro"]["steps"][-1]["step"] == "preprocess_cutouts"
    assert np.all(np.asarray(out["cutout"])[0, :, 0, 0] == 0)


def test_cli_paper_config_and_bad_input(tmp_path, capsys):
    table = Table({"cutout": C.stack(C.isolated(seed=4, r_mag=18.0))})
    source, target = tmp_path / "in.fits", tmp_path / "out.fits"
    write_table(table, source)
    assert main(["preprocess", str(source), str(target), "--config", "paper", "--quiet"]) == 0
    assert read_table(target)["preprocess_flag"].tolist() == ["ok"]
    bad = tmp_path / "bad.fits"
    write_table(Table({"cutout": np.zeros((1, 4, 20, 20), np.float32)}), bad)
    assert main(["preprocess", str(bad), str(tmp_path / "x.fits"), "--quiet"]) == 1
    assert "(1, 4, 20, 20)" in capsys.readouterr().err
