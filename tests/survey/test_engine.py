"""The catalogue engine: exactly-once rows, resume, corrupt data, merge, schema."""

import json
import shutil
from pathlib import Path
import warnings

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.exceptions import ParameterError
from gpm_astro.io import read_table
from gpm_astro.plugins import get_source
from gpm_astro.survey import merge_catalogue, read_catalogue, run_catalogue
from gpm_astro.survey.parquet import partition_files

from .conftest import PARTITION_SIZE, corrupt_image_chunk, run_options


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _checksums(out):
    return {k: v["sha256"] for k, v in _manifest(out)["partitions"].items()}


def _exp_rows(archive):
    return get_source("legacysurvey_archive")(path=archive).select_rows(source_type="EXP")


def test_every_selected_row_appears_exactly_once_flagged_rows_included(reference_run,
                                                                       mock_archive):
    out, summary = reference_run
    expected = _exp_rows(mock_archive)
    catalogue = read_catalogue(out)
    rows = np.asarray(catalogue["archive_row"])
    assert rows.tolist() == expected.tolist()  # each selected row once, in input order
    flags = np.asarray(catalogue["Z_pred_flag"], dtype=str)
    assert (flags != "ok").any() and (flags == "ok").any()  # flagged rows are kept
    assert np.all(catalogue["Z_pred"].mask == (flags != "ok"))
    # the manifest's accounting agrees with the files, partition by partition
    manifest = _manifest(out)
    n_partitions = -(-len(expected) // PARTITION_SIZE)
    assert sorted(manifest["partitions"]) == [f"{i:06d}" for i in range(n_partitions)]
    assert sum(p["n_rows"] for p in manifest["partitions"].values()) == len(expected)
    assert summary["n_rows"] == len(expected) and summary["n_failed"] == 0
    assert sum(summary["flags"].values()) == len(expected)
    assert summary["flags"]["ok"] == int((flags == "ok").sum())
    assert manifest["sessions"][0]["scheduler"].startswith("inproc://")
    assert manifest["recipe"]["model"]["weights_sha256"]
    assert {"gpm-astro", "dask", "pyarrow", "torch"} <= set(manifest["versions"])


# dask's own parquet reader calls a pandas keyword that pandas 3.1 deprecates
@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_partitions_carry_units_and_descriptions_for_every_reader(reference_run):
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    out, _ = reference_run
    first = partition_files(out)[0]
    schema = pq.read_schema(first)
    z_field = schema.field("Z_pred")
    assert z_field.metadata[b"unit"] == b"dex"
    assert b"metallicity" in z_field.metadata[b"description"]
    assert schema.field("ra").metadata[b"unit"] == b"deg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy finds every string width and unit it needs
        table = Table.read(first, format="parquet")  # astropy's own reader
    assert table["Z_pred"].unit == "dex" and table["ra"].unit == "deg"
    frame = dd.read_parquet(str(out / "partitions")).compute()
    assert len(frame) == len(read_catalogue(out))
    assert frame["archive_row"].is_monotonic_increasing


def test_rerun_computes_only_missing_or_damaged_partitions_with_identical_bytes(
        reference_run, mock_archive, tiny_model, dask_client, tmp_path):
    reference, _ = reference_run
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    files = partition_files(out)
    files[1].unlink()  # lost
    files[3].write_bytes(b"not parquet")  # damaged
    summary = run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client,
                            **run_options())
    assert sorted(_manifest(out)["sessions"][-1]["computed"]) == [1, 3]
    assert summary["computed_rows"] == 2 * PARTITION_SIZE
    assert _checksums(out) == _checksums(reference)
    # another recipe is refused, not mixed in; an empty selection is an error, not a catalogue
    with pytest.raises(ParameterError, match="other settings.*input"):
        run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client,
                      **run_options(partition_size=PARTITION_SIZE + 1))
    with pytest.raises(ParameterError, match="no galaxy of source_type 'PSF'"):
        run_catalogue(mock_archive, tmp_path / "psf", weights=tiny_model, client=dask_client,
                      **run_options(source_type="PSF"))


def test_unreadable_chunk_gives_flagged_rows_and_the_run_goes_on(reference_run, mock_archive,
                                                                tiny_model, dask_client,
                                                                tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(mock_archive, archive)
    (archive_file,) = archive.glob("images_npix152_*.h5")
    bad_row = int(_exp_rows(archive)[4])
    corrupt_image_chunk(archive_file, bad_row)
    out = tmp_path / "run"
    summary = run_catalogue(archive, out, weights=tiny_model, client=dask_client,
                            **run_options())
    assert summary["n_failed"] == 0 and summary["flags"]["preprocess:unreadable"] == 1
    catalogue = read_catalogue(out)
    reference = read_catalogue(reference_run[0])
    assert catalogue["archive_row"].tolist() == reference["archive_row"].tolist()
    bad = np.flatnonzero(np.asarray(catalogue["archive_row"]) == bad_row)[0]
    assert catalogue["preprocess_flag"][bad] == "unreadable"
    assert catalogue["Z_pred_flag"][bad] == "preprocess:unreadable"
    assert catalogue["Z_pred"].mask[bad]
    assert catalogue["ra"][bad] == reference["ra"][bad]  # its catalogue columns were read
    errors = [e for p in _manifest(out)["partitions"].values() for e in p["read_errors"]]
    assert [e["row"] for e in errors] == [bad_row] and "OSError" in errors[0]["error"]
    others = np.arange(len(catalogue)) != bad
    # the bad row's partition runs the network on one row less: float32 convolutions on
    # another batch size may differ in the last bits (4e-10 dex seen), nothing more
    np.testing.assert_allclose(np.ma.getdata(catalogue["Z_pred"])[others],
                               np.ma.getdata(reference["Z_pred"])[others], rtol=0, atol=1e-8,
                               equal_nan=True)
    # the file repaired (or the I/O error passed): a rerun reads the row again
    shutil.copy(next(Path(mock_archive).glob(archive_file.name)), archive_file)
    said = []
    again = run_catalogue(archive, out, weights=tiny_model, client=dask_client,
                          **run_options(log=said.append))
    assert again["n_failed"] == 0 and "preprocess:unreadable" not in again["flags"]
    assert any("could not be read: computing them again" in m for m in said)
    repaired = read_catalogue(out)
    assert repaired["preprocess_flag"].tolist() == reference["preprocess_flag"].tolist()
    np.testing.assert_allclose(np.ma.getdata(repaired["Z_pred"]),
                               np.ma.getdata(reference["Z_pred"]), rtol=0, atol=1e-8,
                               equal_nan=True)


def test_merge_writes_one_fits_or_ecsv_catalogue(reference_run, tmp_path):
    out, _ = reference_run
    catalogue = read_catalogue(out)
    for name in ("catalogue.fits", "catalogue.ecsv"):
        merged = read_table(merge_catalogue(out, tmp_path / name))
        assert merged["archive_row"].tolist() == catalogue["archive_row"].tolist()
        assert merged["Z_pred"].unit == "dex"
        assert np.array_equal(np.ma.filled(merged["Z_pred"], np.nan),
                              np.ma.filled(catalogue["Z_pred"], np.nan), equal_nan=True)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(out, unfinished)
    partition_files(unfinished)[0].unlink()
    with pytest.raises(ParameterError, match="not finished: 1 of"):
        merge_catalogue(unfinished, tmp_path / "never.fits")


def test_gpu_workers_get_one_partition_task_per_gpu():
    from gpm_astro.survey.cluster import gpu_resources

    class FakeClient:
        def __init__(self, resources):
            self.resources = resources

        def scheduler_info(self, n_workers=-1):
            return {"workers": {"tcp://a:1": {"resources": self.resources}}}

    assert gpu_resources(FakeClient({"GPU": 1})) == {"GPU": 1}
    assert gpu_resources(FakeClient({})) is None


def test_an_estimator_fitted_in_seconds_on_each_worker(mock_archive, dask_client, tmp_path):
    from gpm_astro.io import write_table

    train = get_source("legacysurvey_archive")(path=mock_archive).query(cutouts=False)
    colour = np.asarray(train["mag_g"] - train["mag_r"])
    train["oh_p50"] = 8.9 - 0.3 * np.nan_to_num(colour)  # a relation the fit can find
    write_table(train, tmp_path / "train.fits")
    summary = run_catalogue(mock_archive, tmp_path / "run", estimator="colour_polynomial",
                            fit_table=tmp_path / "train.fits", estimator_params={"order": 1},
                            client=dask_client, **run_options())
    catalogue = read_catalogue(tmp_path / "run")
    assert summary["n_rows"] == len(_exp_rows(mock_archive)) == len(catalogue)
    assert set(catalogue["preprocess_flag"]) == {"not_run"}  # no cutout was read or cleaned
    good = np.asarray(catalogue["Z_pred_flag"]) == "ok"
    assert good.sum() >= len(catalogue) - 2
    manifest = _manifest(tmp_path / "run")
    assert manifest["recipe"]["model"]["fit_table_sha256"]
    assert manifest["recipe"]["processing"]["reads_cutouts"] is False


def test_a_running_scheduler_is_used_by_its_address(reference_run, mock_archive, tiny_model,
                                                    tmp_path):
    from distributed import LocalCluster

    out = tmp_path / "run"
    shutil.copytree(reference_run[0], out)
    partition_files(out)[0].unlink()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=":0") as cluster:
        summary = run_catalogue(mock_archive, out, weights=tiny_model,
                                scheduler=cluster.scheduler_address, **run_options())
    session = _manifest(out)["sessions"][-1]
    assert session["scheduler"] == cluster.scheduler_address
    assert session["computed"] == [0] and summary["scheduler"].startswith("tcp://")
    assert _checksums(out) == _checksums(reference_run[0])


def test_a_scheduler_without_workers_is_waited_for_out_loud(reference_run, mock_archive,
                                                             tiny_model, tmp_path):
    from distributed import LocalCluster

    out = tmp_path / "run"
    shutil.copytree(reference_run[0], out)
    partition_files(out)[0].unlink()
    import threading

    said = []
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=":0") as cluster:
        def log(message):
            said.append(message)
            if message.startswith("waiting for the first worker"):
                cluster.scale(1)  # the batch queue's worker arrives

        late = threading.Timer(30, cluster.scale, (1,))  # never a hang, even if unsaid
        late.start()
        try:
            summary = run_catalogue(mock_archive, out, weights=tiny_model,
                                    scheduler=cluster.scheduler_address,
                                    **run_options(log=log))
        finally:
            late.cancel()
    assert any(m.startswith("waiting for the first worker") for m in said)
    assert summary["n_finished"] == len(partition_files(out))
