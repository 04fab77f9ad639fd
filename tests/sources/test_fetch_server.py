"""``gpm-astro fetch ... --server URL`` points a source at a mirror for one command."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.cli import main
from gpm_astro.io import read_table, write_table
from gpm_astro_plugins.legacysurvey.cutouts import conf as cutout_conf

from .conftest import DATA, Reply
from .test_fetch_cli import FAST


@pytest.fixture
def quick_retries():
    with cutout_conf.set_temp("backoff_factor", 0.01):
        yield


def test_server_option_points_the_source_at_a_mirror(fake_service, tmp_path, quick_retries):
    fake_service.route("/cutout.fits", Reply(
        (DATA / "legacysurvey_cutout_grz.fits").read_bytes(), content_type="image/fits"))
    targets = tmp_path / "targets.ecsv"
    write_table(Table({"ra": [150.0], "dec": [2.0]}), targets)
    default = cutout_conf.server
    assert main(["fetch", "cutouts", str(targets), str(tmp_path / "c.fits"), "--no-cache",
                 "--server", fake_service.url + "/", *FAST]) == 0
    assert len(fake_service.requests) == 1  # the mirror answered
    assert list(read_table(tmp_path / "c.fits")["cutout_flag"]) == ["ok"]
    assert cutout_conf.server == default  # for this command only
    assert np.isfinite(read_table(tmp_path / "c.fits")["cutout"]).all()


def test_server_option_must_be_a_url(tmp_path, capsys):
    targets = tmp_path / "targets.ecsv"
    write_table(Table({"ra": [150.0], "dec": [2.0]}), targets)
    assert main(["fetch", "cutouts", str(targets), str(tmp_path / "c.fits"),
                 "--server", "mirror.example.org"]) == 1
    assert "--server must be an http(s) URL" in capsys.readouterr().err
