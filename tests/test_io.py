"""read_table / write_table: round trips, atomic writes, clear errors."""

import doctest
import importlib.util
import os
import re

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

import gpm_astro.io
from gpm_astro.exceptions import TableIOError
from gpm_astro.io import read_table, write_table
from gpm_astro.tables import record_step


def sample_table():
    rng = np.random.default_rng(3)
    table = Table({
        "specobjid": np.array([101, 102, 103], dtype=np.int64),
        "ra": [10.0, 20.0, 30.0] * u.deg,
        "source_type": ["EXP", "REX", "EXP"],
        "flux_r": MaskedColumn([1.5, 2.5, 3.5], mask=[False, True, False],
                               unit=u.nanomaggy),
        "cutout": rng.normal(size=(3, 3, 152, 152)).astype(np.float32),
    }, meta={"bands": "grz", "pixel_scale": 0.262})
    table["flux_r"].description = "r-band flux"
    record_step(table, "crossmatch", radius=1 * u.arcsec, counts={"ok": 2})
    return table


def test_doctests_in_io_module():
    result = doctest.testmod(gpm_astro.io)
    assert result.attempted > 0 and result.failed == 0


ROUND_TRIP = ["t.fits", "t.fits.gz", "t.h5", "t.hdf5", "t.ecsv"]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_round_trip_keeps_cutouts_units_masks_meta(tmp_path, name):
    table = sample_table()
    path = tmp_path / name
    write_table(table, path)
    back = read_table(path)
    assert back.colnames == table.colnames
    assert back["cutout"].shape == (3, 3, 152, 152)
    assert back["cutout"].dtype == np.float32
    assert np.array_equal(np.asarray(back["cutout"]), table["cutout"])
    assert list(back["specobjid"]) == [101, 102, 103]
    assert [s.strip() for s in back["source_type"]] == ["EXP", "REX", "EXP"]
    assert back["ra"].unit == u.deg and back["flux_r"].unit == u.nanomaggy
    assert list(back["flux_r"].mask) == [False, True, False]
    assert back["flux_r"][2] == 3.5
    assert back.meta["bands"] == "grz" and back.meta["pixel_scale"] == 0.262
    step = back.meta["gpm_astro"]["steps"][0]
    assert step["step"] == "crossmatch" and step["params"]["counts"] == {"ok": 2}
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # really gzip-compressed


def test_parquet_round_trip_or_clear_error(tmp_path):
    table = sample_table()
    table.remove_column("cutout")
    path = tmp_path / "t.parquet"
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(TableIOError,
                           match=r"writing .*t\.parquet. as parquet needs a package that is "
                                 r"missing"):
            write_table(table, path)
        assert not path.exists() and list(tmp_path.iterdir()) == []
    else:
        write_table(table, path)
        assert list(read_table(path)["specobjid"]) == [101, 102, 103]


def test_parquet_keeps_the_shape_of_cutouts_and_their_masks(tmp_path):
    pytest.importorskip("pyarrow")
    cutouts = np.arange(2 * 3 * 16 * 16, dtype="f4").reshape(2, 3, 16, 16)
    table = Table({"cutout": MaskedColumn(cutouts, unit="nmgy"), "objid": [1, 2]})
    table["cutout"].mask[1, 2, 5, 7] = True
    write_table(table, tmp_path / "cutouts.parquet")
    back = read_table(tmp_path / "cutouts.parquet")
    assert back["cutout"].shape == (2, 3, 16, 16)  # astropy alone gives (2, 768)
    assert back["cutout"].unit == "nmgy"
    assert np.array_equal(back["cutout"].mask, table["cutout"].mask)
    assert np.array_equal(back["cutout"].data, cutouts)


def test_parquet_nulls_read_back_masked_with_integers_exact(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    big = 2**62 + 1  # float64 cannot hold it
    # nulls as pyarrow, pandas or the catalogue engine write them (astropy's writer differs)
    pq.write_table(pa.table({"objid": pa.array([big, None, 3], pa.int64()),
                             "Z_pred": pa.array([8.9, 9.1, None])}), tmp_path / "nulls.parquet")
    back = read_table(tmp_path / "nulls.parquet")
    assert back["objid"].dtype == np.int64 and back["objid"][0] == big  # not float64
    assert back["objid"].mask.tolist() == [False, True, False]
    assert back["Z_pred"].mask.tolist() == [False, False, True]  # not a bare NaN


def test_overwrite_and_atomic_replacement(tmp_path):
    path = tmp_path / "labels.fits"
    write_table(Table({"a": [1, 2]}), path)
    with pytest.raises(TableIOError, match="exists; pass overwrite=True"):
        write_table(Table({"a": [3]}), path)
    assert list(read_table(path)["a"]) == [1, 2]
    write_table(Table({"a": [3]}), path, overwrite=True)
    assert list(read_table(path)["a"]) == [3]
    # a write that fails half-way leaves the old file and no temporary file behind
    unwritable = Table({"a": [1]})
    unwritable.meta["bad"] = object()
    with pytest.raises(TableIOError, match="meta cannot be stored"):
        write_table(unwritable, path, overwrite=True)
    with pytest.raises(TableIOError, match="cannot write .*dimension > 1"):
        write_table(Table({"m": np.zeros((2, 3))}), tmp_path / "x.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.fits"]
    assert list(read_table(path)["a"]) == [3]
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)


def test_input_table_not_modified(tmp_path):
    table = sample_table()
    before_meta = dict(table.meta)
    write_table(table, tmp_path / "t.fits")
    assert table.meta == before_meta and "GPMMETA" not in table.meta


@pytest.mark.parametrize("name", ["t.txt", "t", "t.fits.bz3"])
def test_unknown_extension(tmp_path, name):
    with pytest.raises(TableIOError, match=f"cannot tell the table format of .*{name}"):
        write_table(Table({"a": [1]}), tmp_path / name)
    (tmp_path / name).write_text("a\n1\n")
    with pytest.raises(TableIOError, match="endings"):
        read_table(tmp_path / name)
    assert list(read_table(tmp_path / name, format="ascii.csv")["a"]) == [1]


def test_clear_errors(tmp_path):
    with pytest.raises(TableIOError, match="does not exist"):
        read_table(tmp_path / "missing.fits")
    (tmp_path / "sub.fits").mkdir()
    with pytest.raises(TableIOError, match="a folder"):
        read_table(tmp_path / "sub.fits")
    with pytest.raises(TableIOError, match="it is a folder"):
        write_table(Table({"a": [1]}), tmp_path / "sub.fits", overwrite=True)
    with pytest.raises(TableIOError, match="folder .*nowhere.* does not exist"):
        write_table(Table({"a": [1]}), tmp_path / "nowhere" / "t.fits")
    (tmp_path / "plain").write_text("x")
    with pytest.raises(TableIOError, match="is a file, not a folder"):
        write_table(Table({"a": [1]}), tmp_path / "plain" / "t.fits")
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"not a fits file at all" * 10)
    with pytest.raises(TableIOError, match="cannot read .*garbage.fits"):
        read_table(garbage)
    with pytest.raises(TypeError, match="astropy.table.Table, got dict"):
        write_table({"a": [1]}, tmp_path / "t.fits")
    with pytest.raises(TypeError, match="path must be a str"):
        read_table(3)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(TableIOError, match="cannot write in folder"):
            write_table(Table({"a": [1]}), folder / "t.fits")
    finally:
        folder.chmod(0o700)


def test_a_file_in_place_of_the_folder_is_a_clear_error(tmp_path):
    # unwritable even for root: the "folder" is a regular file
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(TableIOError, match="blocker"):
        write_table(Table({"a": [1]}), blocker / "t.fits")
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "4", None])
def test_require_positive_int_names_the_bad_value(value):
    from gpm_astro.exceptions import ParameterError
    from gpm_astro.tables import require_positive_int

    with pytest.raises(ParameterError, match=rf"chunk_size must be a positive integer, got "
                                             rf"{re.escape(repr(value))}"):
        require_positive_int(value, "chunk_size")


def test_require_positive_int_accepts_python_and_numpy_integers():
    from gpm_astro.tables import require_positive_int

    assert require_positive_int(3, "n") == 3
    assert type(require_positive_int(np.int64(7), "n")) is int


@pytest.mark.parametrize("ending", [".csv", ".vot"])
def test_a_table_file_that_cannot_be_opened_is_a_table_io_error(tmp_path, monkeypatch, ending):
    # what an unreadable file (no read permission) raises; root reads every file, so the
    # refusal is simulated where read_table first opens it: the service-answer checks
    import gpm_astro.answer_checks

    path = tmp_path / f"t{ending}"
    write_table(Table({"a": [1, 2]}), path)

    def refused(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(gpm_astro.answer_checks, "open", refused, raising=False)
    with pytest.raises(TableIOError, match="Permission denied"):
        read_table(path)
