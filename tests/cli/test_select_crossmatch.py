"""``gpm-astro select`` and ``gpm-astro crossmatch`` end to end on small files."""

import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.cli import main
from gpm_astro.io import read_table, write_table


@pytest.fixture
def label_file(tmp_path):
    labels = Table({
        "specobjid": [1, 2, 3, 4, 5],
        "ra": [10.0, 20.0, 30.0, 40.0, 50.0], "dec": [0.0, 1.0, 2.0, 3.0, 4.0],
        "spectrotype": ["GALAXY ", "QSO", "GALAXY", "GALAXY", "GALAXY"],
        "reliable": [1, 1, 1, 1, 1], "z_warning": [0, 0, 0, 0, 0],
        "bptclass": [1, 1, 4, 1, 2], "z": [0.05, 0.5, 0.1, 0.001, 0.08],
        "snmedian_r": [10.0, 10.0, 10.0, 10.0, 3.0], "oh_p50": [8.9, 8.8, 9.0, 8.7, 8.6]})
    path = tmp_path / "labels.fits"
    write_table(labels, path)
    return path


def test_select_prints_counts_and_writes(label_file, tmp_path, capsys):
    out = tmp_path / "kept.ecsv"
    assert main(["select", str(label_file), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "spectrotype  removed          1  remaining          4" in printed
    assert "bptclass     removed          2  remaining          2" in printed
    assert "wrote 1 rows" in printed
    kept = read_table(out)
    assert list(kept["specobjid"]) == [1]
    assert [c["removed"] for c in kept.meta["gpm_astro"]["select_starforming"]] == [
        1, 0, 0, 2, 1, 0, 0]


def test_select_options(label_file, tmp_path, capsys):
    out = tmp_path / "kept.fits"
    code = main(["select", str(label_file), str(out), "--bptclass", "1", "--bptclass", "2",
                 "--z-min", "0.0005", "--skip", "snr"])
    assert code == 0
    assert list(read_table(out)["specobjid"]) == [1, 4, 5]
    assert "snr          removed          0" in capsys.readouterr().out
    # OUT exists now: refused without --overwrite, with a clear message
    assert main(["select", str(label_file), str(out)]) == 1
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert main(["select", str(label_file), str(out), "--overwrite",
                 "--snr-column", "nope"]) == 1
    assert "'nope'" in capsys.readouterr().err


def test_crossmatch_cli(label_file, tmp_path, capsys):
    images = Table({"objid": [7, 8, 9], "ra": [10.0, 30.0 + 0.5 / 3600, 77.0],
                    "dec": [0.0, 2.0, 0.0],
                    "cutout": np.ones((3, 3, 8, 8), dtype=np.float32)})
    image_file = tmp_path / "images.h5"
    write_table(images, image_file)
    out = tmp_path / "matched.h5"
    assert main(["crossmatch", str(label_file), str(image_file), str(out),
                 "--radius", "1.0", "--label-id", "specobjid", "--image-id", "objid"]) == 0
    printed = capsys.readouterr().out
    assert "ok                            2" in printed
    assert "no_match                      3" in printed
    matched = read_table(out)
    assert list(matched["objid"].filled(-1)) == [7, -1, 8, -1, -1]
    assert matched["cutout"].shape == (5, 3, 8, 8)
    assert main(["crossmatch", str(label_file), str(image_file), str(out), "--overwrite",
                 "--radius", "-1"]) == 1
    assert "radius must be a positive finite angle" in capsys.readouterr().err


def test_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "gpm_astro", "select", "--help"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "--z-min" in done.stdout
