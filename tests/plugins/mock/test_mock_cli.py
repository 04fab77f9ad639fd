"""Tests of ``gpm-astro mock``."""

import numpy as np
from astropy.table import Table

from gpm_astro.cli import main
from gpm_astro_plugins.legacysurvey.archive import iter_archive


def test_cli_writes_a_readable_sky(tmp_path, capsys):
    out = tmp_path / "sky"
    code = main(["mock", "--n", "5", "--seed", "1", "--out", str(out), "--no-progress",
                 "--rows-per-file", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "labels.fits" in printed and "images_npix152_000000000_000000003.h5" in printed
    chunks = list(iter_archive(out, chunk_size=10))
    assert sum(len(c) for c in chunks) == 5
    truth = Table.read(out / "truth.fits")
    np.testing.assert_array_equal(np.concatenate([c["objid"] for c in chunks]), truth["objid"])
    assert len(Table.read(out / "labels.fits")) > 0


def test_cli_reports_bad_values(tmp_path, capsys):
    assert main(["mock", "--n", "-2", "--out", str(tmp_path / "x")]) == 1
    assert "n_galaxies" in capsys.readouterr().err
    assert main(["mock", "--n", "3", "--blend-rate", "1.5", "--out", str(tmp_path / "y")]) == 1
    assert "blend_rate" in capsys.readouterr().err
