"""The ``combined`` data source: labels and images from two registered sources."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.exceptions import ParameterError
from gpm_astro.io import write_table
from gpm_astro.pipeline import load_config
from gpm_astro.plugins import get_source


def test_labels_from_a_file_and_images_from_the_archive(mock_archive, tmp_path):
    labels = Table({"ra": [1.0, 2.0], "dec": [3.0, 4.0], "oh_p50": [8.7, 8.9]})
    write_table(labels, tmp_path / "labels.fits")
    source = get_source("combined")(labels={"file": str(tmp_path / "labels.fits")},
                                    images={"source": "legacysurvey_archive",
                                            "params": {"path": str(mock_archive)}})
    tables = source.pipeline_tables()
    assert tables.labels["oh_p50"].tolist() == [8.7, 8.9]
    assert "cutout" not in tables.images.colnames and "archive_row" in tables.images.colnames
    chunk = tables.images[[7, 2, 5]]  # any order: cutouts come back in the chunk's order
    chunk["image_row"] = [7, 2, 5]
    cutouts = source.pipeline_cutouts(chunk)
    direct = get_source("legacysurvey_archive")(path=mock_archive).query(rows=[2, 5, 7])
    assert np.array_equal(cutouts, np.asarray(direct["cutout"])[[2, 0, 1]])


@pytest.mark.parametrize("params, match", [
    ({"labels": {"file": "l.fits"}, "images": {"source": "legacysurvey_cutouts"}}, "catalog"),
    ({"labels": {"file": "l.fits", "source": "mock"}, "images": {"file": "i.fits"}},
     "exactly one"),
    ({"labels": {"file": "l.fits"}, "images": {"file": "i.fits", "where": 1}}, "unknown key"),
    ({"labels": {"source": "nowhere"}, "images": {"file": "i.fits"}}, "nowhere"),
])
def test_a_bad_combination_is_refused_when_the_configuration_loads(params, match):
    with pytest.raises((ParameterError, KeyError), match=match):
        load_config({"source": {"name": "combined", "params": params}})
