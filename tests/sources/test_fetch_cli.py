"""``gpm-astro fetch`` against the local replay server."""

import h5py
import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.cli import main
from gpm_astro.io import read_table, write_table
from gpm_astro_plugins.datalab.tap import conf as tap_conf
from gpm_astro_plugins.legacysurvey.cutouts import conf as cutout_conf
from gpm_astro_plugins.sdss.mpajhu import conf as sdss_conf

from .conftest import DATA, Reply
from .test_sdss_mpajhu import SQL_PATH, skyserver

FAST = ["--max-retries", "1", "--timeout", "2", "--no-progress"]


@pytest.fixture
def fast_backoff():
    with cutout_conf.set_temp("backoff_factor", 0.01), \
            sdss_conf.set_temp("backoff_factor", 0.01), sdss_conf.set_temp("min_interval", 0.0), \
            tap_conf.set_temp("backoff_factor", 0.01):
        yield


def test_fetch_cutouts_to_hdf5_and_table(fake_service, tmp_path, capsys, fast_backoff):
    fake_service.route("/cutout.fits", Reply(
        (DATA / "legacysurvey_cutout_grz.fits").read_bytes(), content_type="image/fits"))
    targets = tmp_path / "targets.ecsv"
    write_table(Table({"ra": [150.0, 150.1, np.nan], "dec": [2.0, 2.1, 2.2]}), targets)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    with cutout_conf.set_temp("server", fake_service.url):
        assert main(["fetch", "cutouts", str(targets), str(tmp_path / "c.h5"), *FAST,
                     *cache]) == 0
        assert main(["fetch", "cutouts", str(targets), str(tmp_path / "c.fits"), *FAST,
                     *cache]) == 0
    out = capsys.readouterr().out
    assert "ok: 2" in out and "invalid_position: 1" in out
    with h5py.File(tmp_path / "c.h5") as handle:
        assert handle["images"].shape == (3, 3, 152, 152)
    table = read_table(tmp_path / "c.fits")
    assert table["cutout"].shape == (3, 3, 152, 152)
    assert list(table["cutout_flag"]) == ["ok", "ok", "invalid_position"]
    assert len(fake_service.requests) == 2  # the second command was served by the cache


def test_fetch_cutouts_says_which_service_failed_and_the_same_command_resumes(
        fake_service, tmp_path, capsys, fast_backoff):
    cube = Reply((DATA / "legacysurvey_cutout_grz.fits").read_bytes(), content_type="image/fits")
    targets = tmp_path / "targets.ecsv"
    write_table(Table({"ra": [150.0, 150.1], "dec": [2.0, 2.1]}), targets)
    command = ["fetch", "cutouts", str(targets), str(tmp_path / "c.h5"), *FAST, "--no-cache"]
    with cutout_conf.set_temp("server", fake_service.url):
        fake_service.route("/cutout.fits", Reply(b"down", status=503, content_type="text/plain"))
        assert main(command) == 1  # not a success when no cutout came
        err = capsys.readouterr().err
        assert "2 of 2 cutouts could not be fetched from the Legacy Survey viewer" in err
        assert fake_service.url in err and "run the same command again" in err
        fake_service.route("/cutout.fits", cube)
        assert main(command) == 0  # the documented re-run resumes instead of refusing
        assert "ok: 2" in capsys.readouterr().out
        n_requests = len(fake_service.requests)
        assert main(command) == 0  # nothing left to fetch
        assert len(fake_service.requests) == n_requests
        assert main([*command, "--overwrite"]) == 0  # starts over
        assert len(fake_service.requests) == n_requests + 2


def test_fetch_cutouts_fails_when_only_error_pages_came(fake_service, tmp_path, capsys,
                                                        fast_backoff):
    targets = tmp_path / "targets.ecsv"
    write_table(Table({"ra": [150.0], "dec": [2.0]}), targets)
    page = Reply(b"<html><body>Something went wrong</body></html>", content_type="text/html")
    with cutout_conf.set_temp("server", fake_service.url):
        fake_service.route("/cutout.fits", page)
        assert main(["fetch", "cutouts", str(targets), str(tmp_path / "c.h5"), *FAST,
                     "--no-cache"]) == 1
    assert "1 of 1 cutouts could not be fetched" in capsys.readouterr().err


def test_fetch_labels(fake_service, tmp_path, fast_backoff):
    fake_service.route(SQL_PATH, skyserver)
    output = tmp_path / "labels.fits"
    with sdss_conf.set_temp("server", fake_service.url):
        assert main(["fetch", "labels", str(output), "--no-cache", *FAST,
                     "--plates-per-chunk", "400"]) == 0
    labels = read_table(output)
    assert len(labels) == 40 and "snmedian_r" in labels.colnames


def test_fetch_catalog_and_injection(fake_service, tmp_path, capsys, fast_backoff):
    fake_service.route("/tap/sync", Reply((DATA / "datalab_tap_sync_result.xml").read_bytes(),
                                          content_type="application/x-votable+xml"))
    output = tmp_path / "exp.ecsv"
    with tap_conf.set_temp("server", f"{fake_service.url}/tap"):
        assert main(["fetch", "catalog", str(output), "--type", "EXP", "--brickid-min", "10",
                     "--brickid-max", "20", "--no-cache", *FAST]) == 0
        assert main(["fetch", "catalog", str(output), "--type", "EXP' OR '1'='1",
                     "--overwrite", *FAST]) == 1
    assert "types must be among" in capsys.readouterr().err
    assert len(read_table(output)) == 12
    assert len(fake_service.requests) == 1
