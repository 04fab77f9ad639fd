"""The catalogue from cutouts fetched from the Legacy Survey service (replayed offline)."""

import numpy as np
from astropy.io.votable import parse_single_table

from gpm_astro.plugins import get_source
from gpm_astro.survey import read_catalogue, run_catalogue
from gpm_astro_plugins.legacysurvey.cutouts import conf as cutout_conf

from sources.conftest import DATA, Reply, fake_service  # noqa: F401 (a fixture)
from .conftest import run_options


def test_cutouts_fetched_into_the_archive_layout_are_catalogued(
        fake_service, tiny_model, dask_client, tmp_path):  # noqa: F811
    fake_service.route("/cutout.fits", Reply((DATA / "legacysurvey_cutout_grz.fits")
                                             .read_bytes(), content_type="image/fits"))
    targets = parse_single_table(DATA / "datalab_tap_sync_result.xml").to_table()
    targets.rename_column("type", "source_type")
    fetched = tmp_path / "cutouts.h5"
    with cutout_conf.set_temp("server", fake_service.url):
        get_source("legacysurvey_cutouts")(cache=False, progress=False).query(
            targets, output=fetched)
    # the file keeps no source_type: the catalogue query chose the type (EXP) already
    summary = run_catalogue(fetched, tmp_path / "run", weights=tiny_model, client=dask_client,
                            **run_options(source_type=None))
    catalogue = read_catalogue(tmp_path / "run")
    assert summary["n_rows"] == len(targets) == len(catalogue)
    assert catalogue["objid"].tolist() == np.asarray(targets["objid"]).tolist()
    assert (np.asarray(catalogue["Z_pred_flag"]) == "ok").any()
