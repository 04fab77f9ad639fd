"""Integrity of a run's output folder: only recorded partitions are read back, an unfinished
run is not returned as complete, a failed partition is named, the labels are in the recipe."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy.table import Table

from gpm_astro import hookimpl
from gpm_astro.exceptions import GPMAstroWarning, ParameterError
from gpm_astro.io import read_table
from gpm_astro.plugins import get_source
from gpm_astro.survey import (CatalogueRunError, merge_catalogue, read_catalogue,
                              run_catalogue, run_preprocess)
from gpm_astro.survey.parquet import _to_astropy, partition_files
from gpm_astro_plugins.legacysurvey.archive_source import LegacySurveyArchive

from .conftest import PARTITION_SIZE, run_options


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _exp_rows(archive):
    return get_source("legacysurvey_archive")(path=archive).select_rows(source_type="EXP")


def test_read_catalogue_reads_only_the_recorded_partitions(reference_run, mock_archive,
                                                           tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference_run[0], out)
    files = partition_files(out)
    # a file no manifest records (left by an earlier plan of more partitions) is not read
    shutil.copy(files[0], out / "partitions" / f"part-{len(files) + 5:06d}.parquet")
    catalogue = read_catalogue(out)
    assert catalogue["archive_row"].tolist() == _exp_rows(mock_archive).tolist()
    assert "partition" not in catalogue.meta  # the first partition's numbers are not the whole's
    merged = merge_catalogue(out, tmp_path / "merged.fits")
    assert len(read_table(merged)) == len(catalogue)


def test_read_catalogue_refuses_an_unfinished_run_unless_partial(reference_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference_run[0], out)
    full = read_catalogue(out)
    partition_files(out)[1].write_bytes(b"")  # damaged: zero bytes
    with pytest.raises(ParameterError, match=r"not finished: 1 of .*\[1\]"):
        read_catalogue(out)
    with pytest.warns(GPMAstroWarning, match=r"1 of .* partitions .*\[1\]"):
        partial = read_catalogue(out, partial=True)
    assert len(partial) == len(full) - PARTITION_SIZE
    assert partial.meta["missing_partitions"] == [1]
    assert set(partial["archive_row"]).isdisjoint(full["archive_row"][3:6])
    (out / "manifest.json").unlink()
    with pytest.raises(ParameterError, match="manifest"):
        read_catalogue(out)


def test_partition_files_are_in_partition_order_past_six_digits(tmp_path):
    (tmp_path / "partitions").mkdir()
    for index in (1_000_000, 999_999, 2):
        (tmp_path / "partitions" / f"part-{index:06d}.parquet").touch()
    assert [p.name for p in partition_files(tmp_path)] == [
        "part-000002.parquet", "part-999999.parquet", "part-1000000.parquet"]


def test_a_rerun_leaves_only_recorded_partition_files(reference_run, mock_archive, tiny_model,
                                                      dask_client, tmp_path):
    import pyarrow.dataset as ds

    out = tmp_path / "run"
    shutil.copytree(reference_run[0], out)
    files = partition_files(out)
    stale = out / "partitions" / f"part-{len(files) + 5:06d}.parquet"
    shutil.copy(files[0], stale)
    files[2].write_bytes(b"not parquet")
    run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client, **run_options())
    recorded = {p["file"] for p in _manifest(out)["partitions"].values()}
    assert {f"partitions/{p.name}" for p in partition_files(out)} == recorded
    # the folder is one dataset for any Parquet reader: each row once
    rows = ds.dataset(str(out / "partitions")).to_table(columns=["archive_row"])
    assert sorted(rows["archive_row"].to_pylist()) == _exp_rows(mock_archive).tolist()


def test_partition_files_without_a_manifest_are_refused(reference_run, mock_archive,
                                                        tiny_model, dask_client, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference_run[0], out)
    (out / "manifest.json").unlink()
    with pytest.raises(ParameterError, match=r"partitions.*no manifest.*restart"):
        run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client,
                      **run_options(partition_size=2 * PARTITION_SIZE))


def test_int64_values_next_to_nulls_are_read_back_exactly():
    big = 2**62 + 1
    arrow = pa.table({"objid": pa.array([big, None], type=pa.int64())})
    table = _to_astropy(arrow)
    assert table["objid"].dtype == np.int64 and int(table["objid"][0]) == big
    assert table["objid"].mask.tolist() == [False, True]


class _FailingArchive(LegacySurveyArchive):
    """`legacysurvey_archive` that raises a bug-like error when asked for ``fail_row`` while
    the file ``switch`` exists."""

    name = "failing_archive"

    def __init__(self, *, path=None, fail_row=None, switch=None):
        super().__init__(path=path)
        self.fail_row = fail_row
        self.switch = switch

    def query(self, **criteria):
        rows = criteria.get("rows")
        if rows is not None and not isinstance(rows, slice) and Path(self.switch).exists() \
                and self.fail_row in [int(r) for r in rows]:
            msg = f"broken on row {self.fail_row}"
            raise RuntimeError(msg)
        return super().query(**criteria)


class _FailingPlugin:
    @hookimpl
    def gpm_astro_register_data_sources(self, register):
        register(_FailingArchive, name="failing_archive")


def test_a_failed_partition_is_named_the_others_kept_and_retried_alone(
        reference_run, mock_archive, tiny_model, dask_client, tmp_path, fresh_plugins):
    fresh_plugins.register_plugin(_FailingPlugin(), name="failing_archive_plugin")
    rows = _exp_rows(mock_archive)
    fail_row = int(rows[PARTITION_SIZE * 4 + 1])  # in partition 4
    out = tmp_path / "run"
    switch = tmp_path / "fail"
    switch.touch()
    params = {"fail_row": fail_row, "switch": str(switch)}
    messages = []
    options = run_options(log=messages.append)
    with pytest.raises(CatalogueRunError, match=r"partition\(s\) \[4\] failed.*broken on row"):
        run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client,
                      source="failing_archive", source_params=params, **options)
    assert any("failed partitions: [4]" in m for m in messages)
    manifest = _manifest(out)
    assert "000004" not in manifest["partitions"]
    assert len(manifest["partitions"]) == reference_run[1]["n_partitions"] - 1
    assert manifest["sessions"][-1]["failed"][0]["index"] == 4
    assert not (out / "partitions" / "part-000004.parquet").exists()
    with pytest.raises(ParameterError, match="not finished"):
        read_catalogue(out)
    switch.unlink()
    summary = run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client,
                            source="failing_archive", source_params=params, **run_options())
    assert _manifest(out)["sessions"][-1]["computed"] == [4]
    assert summary["n_failed"] == 0 and summary["n_rows"] == len(rows)


def test_preprocess_rerun_with_other_label_values_is_refused(mock_archive, dask_client,
                                                             tmp_path):
    labels = Table({"archive_row": [0, 2, 4], "oh_p50": [8.6, 8.8, 9.0]})
    options = {k: v for k, v in run_options(partition_size=2).items() if k != "source_type"}
    run_preprocess(mock_archive, tmp_path, labels, client=dask_client, **options)
    changed = labels.copy()
    changed["oh_p50"][1] = 8.1  # corrected labels must not resume into the old files
    with pytest.raises(ParameterError, match="other settings"):
        run_preprocess(mock_archive, tmp_path, changed, client=dask_client, **options)


def test_preprocess_folder_holds_only_recorded_archive_files(mock_archive, dask_client,
                                                             tmp_path):
    labels = Table({"archive_row": [0, 2, 4], "oh_p50": [8.6, 8.8, 9.0]})
    options = {k: v for k, v in run_options(partition_size=2).items() if k != "source_type"}
    run_preprocess(mock_archive, tmp_path, labels, client=dask_client, **options)
    (tmp_path / "manifest.json").unlink()
    # archive files that no manifest records would be read back as part of the sample
    with pytest.raises(ParameterError, match=r"images_npix.*no manifest.*restart"):
        run_preprocess(mock_archive, tmp_path, labels, client=dask_client,
                       **{**options, "partition_size": 3})
    run_preprocess(mock_archive, tmp_path, labels, client=dask_client, restart=True, **options)
    stale = tmp_path / "images_npix152_000000100_000000101.h5"  # one of another plan
    shutil.copy(next(tmp_path.glob("images_npix152_*.h5")), stale)
    run_preprocess(mock_archive, tmp_path, labels, client=dask_client, **options)
    assert not stale.exists()
    written = get_source("legacysurvey_archive")(path=tmp_path).query(cutouts=False)
    assert written["input_row"].tolist() == [0, 2, 4]


def test_a_preprocess_rerun_reads_again_the_rows_it_could_not_read(mock_archive, dask_client,
                                                                    tmp_path):
    from .conftest import corrupt_image_chunk

    archive = tmp_path / "archive"
    shutil.copytree(mock_archive, archive)
    (archive_file,) = archive.glob("images_npix152_*.h5")
    corrupt_image_chunk(archive_file, 2)
    labels = Table({"archive_row": [0, 2, 4], "oh_p50": [8.6, 8.8, 9.0]})
    options = {k: v for k, v in run_options(partition_size=2).items() if k != "source_type"}
    out = tmp_path / "sample"
    run_preprocess(archive, out, labels, client=dask_client, **options)
    first = get_source("legacysurvey_archive")(path=out).query(cutouts=False)
    assert list(first["preprocess_flag"][first["input_row"] == 2]) == ["unreadable"]
    shutil.copy(next(Path(mock_archive).glob(archive_file.name)), archive_file)  # repaired
    said = []
    run_preprocess(archive, out, labels, client=dask_client,
                   **{**options, "log": said.append})
    assert any("could not be read: computing them again" in m for m in said)
    again = get_source("legacysurvey_archive")(path=out).query(cutouts=False)
    assert again["input_row"].tolist() == [0, 2, 4]
    assert "unreadable" not in list(again["preprocess_flag"])


def test_a_rerun_on_another_archive_at_the_same_path_is_refused(tiny_model, dask_client,
                                                                tmp_path):
    from .conftest import write_mock_archive

    archive = write_mock_archive(tmp_path / "archive", n_galaxies=6, seed=1)
    out = tmp_path / "run"
    options = run_options(source_type=None)
    run_catalogue(archive, out, weights=tiny_model, client=dask_client, **options)
    shutil.rmtree(archive)  # the same path, the same rows, other galaxies
    write_mock_archive(tmp_path / "archive", n_galaxies=6, seed=2)
    with pytest.raises(ParameterError, match="other settings.*input"):
        run_catalogue(archive, out, weights=tiny_model, client=dask_client, **options)


def _one_row():
    return {"n_rows": 1}


def test_a_cancelled_partition_is_reported_as_failed_and_the_others_recorded(dask_client):
    import threading
    import time

    from distributed import Future

    from gpm_astro.survey.engine import compute_partitions
    from gpm_astro.survey.partitions import plan_partitions

    class Recorder:
        def __init__(self):
            self.recorded = []

        def record(self, index, result):
            self.recorded.append(index)

    def cancel_partition_1():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            keys = [k for k in dask_client.futures if "partition-000001" in str(k)]
            if keys:
                dask_client.cancel([Future(k, dask_client) for k in keys])
                return
            time.sleep(0.01)

    canceller = threading.Thread(target=cancel_partition_1, daemon=True)
    canceller.start()
    manifest = Recorder()
    computed, failed = compute_partitions(
        dask_client, plan_partitions(range(3), 1),
        lambda p: (time.sleep, 2) if p.index == 1 else (_one_row,), manifest, progress=False,
        n_partitions=3, n_done=0)
    canceller.join(timeout=5)
    assert [f["index"] for f in failed] == [1] and "cancelled" in failed[0]["error"]
    assert sorted(manifest.recorded) == [0, 2] and computed == 2


def test_the_fingerprint_of_a_large_file_reads_its_start_middle_and_end(mock_archive, tmp_path,
                                                                          monkeypatch):
    import h5py

    from gpm_astro_plugins.legacysurvey import archive_source
    from gpm_astro_plugins.legacysurvey.archive_source import LegacySurveyArchive

    monkeypatch.setattr(archive_source, "FINGERPRINT_BLOCK", 3)  # files of > 9 rows: sampled
    archive = tmp_path / "archive"
    shutil.copytree(mock_archive, archive)
    (path,) = archive.glob("*.h5")
    n = archive_source.archive_length(path)
    assert archive_source._fingerprint_blocks(n) == [(0, 3), ((n - 3) // 2, (n - 3) // 2 + 3),
                                                     (n - 3, n)]
    before = LegacySurveyArchive(path=archive).fingerprint()
    with h5py.File(path, "r+") as handle:
        handle["ra"][(n - 3) // 2 + 1] += 1e-6  # a row of the middle block
    assert LegacySurveyArchive(path=archive).fingerprint() != before
