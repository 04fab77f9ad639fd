"""Shared, small fixtures of the catalogue engine: a mock archive, a tiny saved network, one
in-process Dask cluster, and one uninterrupted reference run that other tests compare to."""

import h5py
import numpy as np
import pytest

#: galaxies in the mock archive; partitions of 3 rows, chunks of 2 rows
N_GALAXIES = 36
PARTITION_SIZE = 3
CHUNK_SIZE = 2


def write_mock_archive(directory, n_galaxies=N_GALAXIES, seed=11):
    """A gzip-compressed archive (so a damaged chunk fails to read instead of reading junk)."""
    from gpm_astro_plugins.legacysurvey.archive import write_archive
    from gpm_astro_plugins.mock import MockSky

    data = MockSky(n_galaxies=n_galaxies, seed=seed, progress=False).generate()
    write_archive(data.images, directory, compression="gzip")
    return directory


def corrupt_image_chunk(archive_file, row):
    """Overwrite the stored (compressed) bytes of one row's image chunk with junk."""
    with h5py.File(archive_file, "r") as handle:
        info = handle["images"].id.get_chunk_info_by_coord((row, 0, 0, 0))
    with open(archive_file, "r+b") as raw:
        raw.seek(info.byte_offset + 8)
        raw.write(b"\xde\xad\xbe\xef" * 16)


def save_tiny_model(archive, directory):
    """A one-epoch GPM-ResNet of width 1/8 on 32 px inputs: fast to load and to run."""
    from gpm_astro.plugins import get_estimator, get_source
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    table = get_source("legacysurvey_archive")(path=archive).query(rows=slice(0, 8))
    table["oh_p50"] = np.linspace(8.6, 9.2, len(table))
    config = GPMResNetConfig(name="tiny", width=0.125, blocks=(1, 1, 1, 1), input_size=32,
                             epochs=1, batch_size=8, head_hidden=8, standardize_target=True)
    estimator = get_estimator("gpm_resnet")(config=config, mc_passes=2, progress=False)
    estimator.fit(table).save(directory)
    return directory


@pytest.fixture(scope="session")
def mock_archive(tmp_path_factory):
    return write_mock_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, mock_archive):
    return save_tiny_model(mock_archive, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def dask_client():
    """One in-process cluster (one worker, two task threads) shared by the engine tests."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


def run_options(**changes):
    """The engine options every test shares (a rerun must repeat them to resume)."""
    options = dict(source_type="EXP", partition_size=PARTITION_SIZE, chunk_size=CHUNK_SIZE,
                   progress=False, log=lambda message: None)
    options.update(changes)
    return options


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, mock_archive, tiny_model, dask_client):
    """An uninterrupted run of the whole mock archive: (output folder, summary)."""
    from gpm_astro.survey import run_catalogue

    out = tmp_path_factory.mktemp("reference")
    summary = run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client,
                            **run_options())
    return out, summary
