"""The labelled side out of core: the engine cleans labelled cutouts into the archive layout,
and GPM-ResNet trains from that folder batch by batch, as it would from memory."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro import preprocess_cutouts
from gpm_astro.plugins import get_estimator, get_source
from gpm_astro.survey import run_preprocess

from .conftest import run_options


@pytest.fixture(scope="module")
def labelled(mock_archive):
    """Every other archive row carries a label (unordered, as a crossmatch gives them)."""
    rows = np.arange(0, 24, 2)[::-1]
    oh = np.linspace(8.5, 9.2, len(rows))
    oh[3] = -9999.0  # a missing label stays missing
    return Table({"archive_row": rows, "oh_p50": oh})


@pytest.fixture(scope="module")
def cleaned_sample(tmp_path_factory, mock_archive, labelled, dask_client):
    out = tmp_path_factory.mktemp("cleaned")
    options = {k: v for k, v in run_options(partition_size=5).items()
               if k not in ("source_type",)}
    summary = run_preprocess(mock_archive, out, labelled, client=dask_client, **options)
    return out, summary


def test_labelled_cutouts_are_cleaned_into_an_archive_folder(cleaned_sample, mock_archive,
                                                            labelled):
    out, summary = cleaned_sample
    rows = np.sort(np.asarray(labelled["archive_row"]))
    assert len(list(out.glob("images_npix152_*.h5"))) == summary["n_partitions"] == 3
    written = get_source("legacysurvey_archive")(path=out).query()
    assert written["input_row"].tolist() == rows.tolist()  # each labelled row once, in order
    assert written["archive_row"].tolist() == list(range(len(rows)))
    direct = preprocess_cutouts(get_source("legacysurvey_archive")(path=mock_archive)
                                .query(rows=rows), progress=False)
    assert written["preprocess_flag"].tolist() == direct["preprocess_flag"].tolist()
    assert np.array_equal(written["cutout"], direct["cutout"])
    by_row = dict(zip(labelled["archive_row"].tolist(), labelled["oh_p50"].tolist()))
    assert written["oh_p50"].tolist() == [by_row[r] for r in rows.tolist()]
    assert sum(summary["flags"].values()) == len(rows)


@pytest.mark.parametrize("apertures", [(), (3.0, 8.0)], ids=["images", "with_photometry"])
def test_training_from_disk_equals_training_from_memory(cleaned_sample, mock_archive,
                                                        labelled, apertures, monkeypatch):
    """Also with the aperture photometry side input, measured on the batches read from disk,
    and the seeing correction, fitted on the validation rows' psfsize."""
    from gpm_astro_plugins.gpm_resnet import seeing
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    monkeypatch.setattr(seeing, "MIN_SEEING_ROWS", 2)  # the few validation rows fit one

    out, _ = cleaned_sample
    rows = np.sort(np.asarray(labelled["archive_row"]))
    in_memory = preprocess_cutouts(get_source("legacysurvey_archive")(path=mock_archive)
                                   .query(rows=rows), progress=False)
    by_row = dict(zip(labelled["archive_row"].tolist(), labelled["oh_p50"].tolist()))
    in_memory["oh_p50"] = [by_row[r] for r in rows.tolist()]
    config = GPMResNetConfig(name="tiny", width=0.125, blocks=(1, 1, 1, 1), input_size=32,
                             epochs=2, batch_size=4, head_hidden=8, standardize_target=True,
                             photometry_apertures=apertures)
    make = get_estimator("gpm_resnet")
    from_memory = make(config=config, mc_passes=2, progress=False).fit(in_memory)
    from_disk = make(config=config, mc_passes=2, progress=False).fit_archive(out,
                                                                             num_workers=1)
    assert from_disk.training_summary_["n_train"] == from_memory.training_summary_["n_train"]
    assert from_disk.history_["train_loss"].tolist() == from_memory.history_["train_loss"].tolist()
    assert from_memory.seeing_correction_ is not None
    assert from_disk.seeing_correction_ == from_memory.seeing_correction_
    probe = get_source("legacysurvey_archive")(path=mock_archive).query(rows=slice(24, 30))
    expected = from_memory.predict(probe)["Z_pred"]
    assert np.array_equal(np.ma.getdata(from_disk.predict(probe)["Z_pred"]),
                          np.ma.getdata(expected), equal_nan=True)
