"""A user's typical mistakes with the engine's options and output folder: each is one error
naming the bad value, raised before anything is written or any task runs."""

import pytest
from astropy.table import Table

from gpm_astro.exceptions import ParameterError
from gpm_astro.survey import run_catalogue, run_preprocess

from .conftest import run_options


@pytest.mark.parametrize(("option", "error", "named"), [
    ({"preprocess": "defualt"}, ParameterError, "'defualt'"),
    ({"preprocess_jobs": 0}, ParameterError, "preprocess_jobs must be a positive integer, got 0"),
    ({"preprocess_jobs": -1}, ParameterError, "preprocess_jobs .* got -1"),
    ({"n_workers": 0}, ParameterError, r"n_workers \(local workers\) .* got 0"),
    ({"threads_per_worker": 0}, ParameterError, "threads_per_worker .* got 0"),
])
def test_a_bad_run_option_is_refused_before_the_folder_records_it(mock_archive, tmp_path,
                                                                  option, error, named):
    out = tmp_path / "cat"
    with pytest.raises(error, match=named):
        run_catalogue(mock_archive, out, estimator="mass_metallicity", **run_options(**option))
    assert not (out / "manifest.json").exists()  # a corrected rerun is not refused
    labels = Table({"archive_row": [0, 1], "oh_p50": [8.8, 9.0]})
    with pytest.raises(error, match=named):
        run_preprocess(mock_archive, tmp_path / "clean", labels, progress=False, **option)
    assert not (tmp_path / "clean" / "manifest.json").exists()


def test_a_rerun_with_other_settings_names_each_difference(tmp_path):
    from gpm_astro.survey.manifest import Manifest

    recipe = {"input": {"partition_size": 50, "n_rows": 176, "source_type": "EXP",
                        "content": [{"file": "a.h5", "sha256": "aaa"}]},
              "processing": {"preprocess": "default", "chunk_size": 256}}
    Manifest(tmp_path, recipe).open().save()
    other = {"input": {"partition_size": 60, "n_rows": 176, "source_type": "EXP",
                       "content": [{"file": "a.h5", "sha256": "bbb"}]},
             "processing": {"preprocess": "paper", "chunk_size": 256}}
    with pytest.raises(ParameterError) as refused:
        Manifest(tmp_path, other).open()
    message = str(refused.value)
    assert "input.partition_size: 50 in the folder, 60 now" in message
    assert 'input.content[0].sha256: "aaa" in the folder, "bbb" now' in message  # which file
    assert 'processing.preprocess: "default" in the folder, "paper" now' in message
    assert "chunk_size" not in message and "--restart" in message


def test_a_table_file_given_as_the_archive_is_named(tmp_path):
    table = tmp_path / "labels.fits"
    Table({"ra": [1.0], "dec": [2.0]}).write(table)
    with pytest.raises(ParameterError, match=r"labels\.fits' is not an HDF5 archive file"):
        run_catalogue(table, tmp_path / "cat", estimator="mass_metallicity", **run_options())


def test_an_untrained_estimator_is_refused_before_any_task(mock_archive, tmp_path, capsys):
    from gpm_astro.cli import main

    with pytest.raises(ParameterError, match="'colour_polynomial' must be trained"):
        run_catalogue(mock_archive, tmp_path / "cat", estimator="colour_polynomial",
                      **run_options())
    assert not (tmp_path / "cat" / "manifest.json").exists()
    assert main(["catalogue", "--images", str(mock_archive), "--out", str(tmp_path / "cli"),
                 "--no-progress"]) == 1
    assert "give --weights gpm_resnet_lite_mock" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["fits", "parquet"])
def test_labels_without_an_archive_row_are_refused_not_read_as_a_row(mock_archive, tmp_path,
                                                                      fmt):
    from astropy.table import MaskedColumn

    from gpm_astro.exceptions import SchemaError
    from gpm_astro.io import read_table, write_table

    labels = Table({"archive_row": MaskedColumn([0, 1, 2], mask=[False, True, False]),
                    "oh_p50": [8.8, 8.9, 9.0]})
    write_table(labels, tmp_path / f"labels.{fmt}")  # FITS keeps 999999, Parquet the 1
    with pytest.raises(SchemaError, match=r"1 label row\(s\) have no archive_row .* row 1"):
        run_preprocess(mock_archive, tmp_path / "clean", read_table(tmp_path / f"labels.{fmt}"),
                       progress=False)
    with pytest.raises(ParameterError, match=r"archive_row values do not fit the archive"):
        run_preprocess(mock_archive, tmp_path / "clean", Table({"archive_row": [0, 999_999],
                                                                "oh_p50": [8.8, 9.0]}),
                       progress=False)
    assert not (tmp_path / "clean" / "manifest.json").exists()


def test_more_local_workers_than_cores_is_said_out_loud():
    from gpm_astro.survey.cluster import local_cores, oversubscription_note

    cores = local_cores()
    note = oversubscription_note(None, None, cores + 1, 1)
    assert f"{cores + 1} local worker(s) x 1 thread(s) on {cores} core(s)" in note
    assert f"--workers {cores} or fewer" in note
    assert oversubscription_note(None, None, cores, 1) is None
    assert oversubscription_note(None, "tcp://elsewhere:8786", 4 * cores, 1) is None


@pytest.mark.parametrize("merge, named", [
    ("catalogue.txt", r"merge: cannot tell the table format of .*catalogue\.txt"),
    ("/nonexistent-folder/catalogue.fits", r"merge: the folder of .*nonexistent-folder"),
])
def test_a_merge_target_that_cannot_be_written_is_refused_before_any_task(mock_archive,
                                                                           tmp_path, merge,
                                                                           named):
    with pytest.raises(ParameterError, match=named):
        run_catalogue(mock_archive, tmp_path / "cat", estimator="mass_metallicity",
                      merge=merge, **run_options())
    assert not (tmp_path / "cat" / "manifest.json").exists()


def test_the_cleaned_sample_summary_does_not_claim_predictions():
    from gpm_astro.survey import format_summary

    summary = {"n_rows": 5, "n_finished": 1, "n_partitions": 1, "flags": {"ok": 3, "blended": 2},
               "computed_rows": 5, "seconds": 1.0, "rows_per_second": 5.0,
               "rows_per_second_per_worker": 5.0, "n_workers": 1, "failed": []}
    text = format_summary(summary, what="cleaned sample", ok_label="clean")
    assert text.startswith("cleaned sample: 5 rows") and "  clean: 3" in text
    assert "predicted" not in text
    assert "  predicted: 3" in format_summary(summary)


def test_an_unreachable_scheduler_is_named_not_an_internal_error(mock_archive, tmp_path):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}), \
            pytest.raises(ParameterError, match=r"cannot reach the Dask scheduler at "
                                                r"'tcp://127\.0\.0\.1:1'"):
        run_catalogue(mock_archive, tmp_path / "cat", estimator="mass_metallicity",
                      estimator_params={"mass_column": "z_phot_median"},  # any column will do
                      scheduler="tcp://127.0.0.1:1", **run_options())


def test_a_merged_catalogue_does_not_outlive_the_partitions_it_was_made_of(reference_run,
                                                                            mock_archive,
                                                                            tiny_model,
                                                                            dask_client,
                                                                            tmp_path):
    import json
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference_run[0], out)
    messages = []
    options = run_options(log=messages.append)
    run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client, merge="all.ecsv",
                  **options)  # nothing to compute: only the merge
    assert (out / "all.ecsv").is_file()
    assert json.loads((out / "manifest.json").read_text())["merged"] == \
        [str((out / "all.ecsv").resolve())]
    # a restart with another partition size, without --merge: the old merge must not stay
    run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client, restart=True,
                  **{**options, "partition_size": 6})
    assert not (out / "all.ecsv").exists()
    assert any("removed the merged catalogue" in m for m in messages)


def test_an_archive_file_cut_short_is_named_not_an_internal_error(mock_archive, tmp_path):
    from gpm_astro.exceptions import TableIOError
    from gpm_astro_plugins.legacysurvey.archive import archive_files

    source = archive_files(mock_archive)[0]
    cut = tmp_path / "archive" / source.name
    cut.parent.mkdir()
    cut.write_bytes(source.read_bytes()[:source.stat().st_size // 2])  # an interrupted copy
    with pytest.raises(TableIOError, match=rf"cannot open the archive file .*{cut.name}.*"
                                           r"truncated"):
        run_catalogue(cut.parent, tmp_path / "cat", estimator="mass_metallicity",
                      **run_options())


def test_a_column_the_estimator_needs_is_looked_for_before_any_task(mock_archive, tmp_path):
    from gpm_astro.exceptions import SchemaError

    with pytest.raises(SchemaError, match=r"estimator 'mass_metallicity' .* needs column\(s\) "
                                          r"\['lgm_tot_p50'\]"):
        run_catalogue(mock_archive, tmp_path / "cat", estimator="mass_metallicity",
                      **run_options())
    assert not (tmp_path / "cat" / "manifest.json").exists()


def test_a_cleaned_sample_inside_the_archive_is_refused(mock_archive):
    labels = Table({"archive_row": [0, 1], "oh_p50": [8.8, 9.0]})
    with pytest.raises(ParameterError, match="lies inside the image archive"):
        run_preprocess(mock_archive, mock_archive / "clean", labels, progress=False)
    assert not (mock_archive / "clean").exists()


def test_a_damaged_manifest_says_how_to_go_on(tmp_path):
    from gpm_astro.survey.manifest import Manifest

    (tmp_path / "manifest.json").write_text('{"format": "gpm_astro.catalogue/1", "reci')
    with pytest.raises(ParameterError, match=r"cannot read the manifest .*--restart"):
        Manifest(tmp_path, {"input": {}}).open()


def test_the_estimator_checks_one_row_of_cutouts_before_any_task(mock_archive):
    import numpy as np

    from gpm_astro.exceptions import SchemaError
    from gpm_astro.plugins import get_source
    from gpm_astro.survey.engine import _check_source_columns

    class TrainedOnOtherCutouts:
        required_columns = ("cutout",)

        def check_table(self, table):
            raise SchemaError(f"trained on 64 px, got {table['cutout'].shape}")

    reader = get_source("legacysurvey_archive")(path=mock_archive)
    with pytest.raises(SchemaError, match=r"got \(1, 3, 152, 152\)"):
        _check_source_columns(reader, np.array([4]), TrainedOnOtherCutouts(), "net")


def test_a_prediction_setting_out_of_range_is_refused_before_any_task(mock_archive, tiny_model,
                                                                      tmp_path):
    with pytest.raises(ParameterError, match="mc_passes must be a positive integer, got 0"):
        run_catalogue(mock_archive, tmp_path / "cat", weights=tiny_model,
                      estimator_params={"mc_passes": 0}, **run_options())
    assert not (tmp_path / "cat" / "manifest.json").exists()
