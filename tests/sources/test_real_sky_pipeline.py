"""The real-sky configuration (docs/configs/real_sky.toml) run end to end, offline.

SkyServer, Data Lab TAP and the Legacy Survey cutout service are the local replay server of
``conftest.py`` answering with the stored responses of tests/data. Only two things differ from
the real sky: the TAP answer's first sources are moved onto the positions of the stored labels
that pass the paper's cuts (the stored files were drawn independently, so nothing would match),
and every cutout request gets the one stored cutout.
"""

import io
import re
from pathlib import Path

import numpy as np
from astropy.io.votable import from_table, parse_single_table, writeto
from astropy.table import Table

from gpm_astro import select_starforming
from gpm_astro.io import read_table
from gpm_astro.pipeline import run_pipeline
from gpm_astro.pipeline.config import _read_config_file
from gpm_astro_plugins.datalab.tap import conf as tap_conf
from gpm_astro_plugins.legacysurvey.cutouts import conf as cutout_conf
from gpm_astro_plugins.sdss.mpajhu import conf as sdss_conf

from .conftest import DATA, Reply
from .test_sdss_mpajhu import SQL_PATH, skyserver

CONFIG = Path(__file__).parents[2] / "docs" / "configs" / "real_sky.toml"
N_UNMATCHED = 3  # TAP sources at least left where they are: the application galaxies


def _starforming_labels():
    table = Table.read((DATA / "skyserver_dr8_mpajhu.csv").read_text(), format="ascii.csv",
                       comment="#")
    return select_starforming(table)


def _tap_answer_on(labels):
    """The stored TAP answer with sources of positive g, r, z flux (colours) moved 0.1 arcsec
    from the labels."""
    catalogue = parse_single_table(DATA / "datalab_tap_sync_result.xml").to_table()
    n = min(len(labels), len(catalogue) - N_UNMATCHED)
    fluxes = np.column_stack([np.ma.filled(catalogue[f"flux_{b}"], -1.0) for b in "grz"])
    moved = np.flatnonzero((fluxes > 0).all(axis=1))[:n]
    catalogue["ra"][moved] = np.asarray(labels["ra"][:n]) + 0.1 / 3600
    catalogue["dec"][moved] = np.asarray(labels["dec"][:n])
    votable = from_table(catalogue)
    votable.resources[0].type = "results"
    buffer = io.BytesIO()
    writeto(votable, buffer)
    text = buffer.getvalue().decode()
    text = re.sub(r"(<RESOURCE[^>]*>)", r'\1<INFO name="QUERY_STATUS" value="OK"/>', text, 1)
    return text.encode(), n, len(catalogue)


def _run_config(tmp_path):
    """The shipped file, with the caches in tmp_path and settings sized for 40 stored rows."""
    config = _read_config_file(CONFIG)
    quiet = {"cache_dir": str(tmp_path / "cache"), "progress": False, "max_retries": 1,
             "timeout": 5.0}
    source = config["source"]["params"]
    source["labels"]["params"].update(quiet, plates_per_chunk=400)
    source["images"]["params"].update({k: v for k, v in quiet.items() if k != "progress"})
    source["images"]["catalog"]["params"].update(quiet, mode="sync")
    config["preprocess"]["n_jobs"] = 1
    config["sample"].update(n_bins=2, fractions=[6, 2, 2])
    config["estimators"] = {  # the stored answer holds a handful of galaxies
        "colour_polynomial_1": {"estimator": "colour_polynomial", "params": {"order": 1}},
        "mass_metallicity": {"estimator": "mass_metallicity",
                             "params": {"mass_column": "lgm_tot_p50"}}}
    config["application"]["estimator"] = "colour_polynomial_1"
    config["evaluate"] = {"figures": False}
    return config


def test_the_real_sky_configuration_runs_on_replayed_services(fake_service, tmp_path):
    labels = _starforming_labels()
    answer, n_matched, n_sources = _tap_answer_on(labels)
    cutout = (DATA / "legacysurvey_cutout_grz.fits").read_bytes()
    fake_service.route(SQL_PATH, skyserver)
    fake_service.route("/tap/sync", Reply(answer, content_type="application/x-votable+xml"))
    fake_service.route("/cutout.fits", Reply(cutout, content_type="image/fits"))
    out = tmp_path / "run"
    with sdss_conf.set_temp("server", fake_service.url), \
            sdss_conf.set_temp("min_interval", 0.0), \
            tap_conf.set_temp("server", f"{fake_service.url}/tap"), \
            cutout_conf.set_temp("server", fake_service.url):
        run_pipeline(_run_config(tmp_path), output_dir=out, progress=False)

    sky = read_table(out / "sky" / "images.fits")
    assert len(sky) == n_sources  # the whole TAP answer, one cutout each
    assert len(fake_service.requests_to("/cutout.fits")) == len(sky)
    assert len(fake_service.requests_to("/tap/sync")) == 1
    assert len(read_table(out / "sky" / "labels.fits")) == 40  # every stored SkyServer row
    sample = read_table(out / "sample" / "sample.fits")
    assert len(sample) == n_matched == len(labels)
    catalogue = read_table(out / "catalogue" / "catalogue.fits")
    assert len(catalogue) == n_sources - n_matched  # the unlabelled EXP galaxies
    assert (catalogue["Z_pred_flag"] == "ok").sum() >= 1
    assert (out / "report.html").is_file()
