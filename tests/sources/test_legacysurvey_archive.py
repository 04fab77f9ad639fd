"""legacysurvey_archive: lazy selection by type, rows and cone from archive HDF5 files."""

import json

import astropy.units as u
import h5py
import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.exceptions import EmptyResultWarning, ParameterError
from gpm_astro.plugins import get_source
from gpm_astro_plugins.legacysurvey.archive import ARCHIVE_LAYOUT, write_archive
from gpm_astro_plugins.legacysurvey.archive_source import LegacySurveyArchive

TYPES = np.array(["EXP", "PSF", "REX", "DEV", "EXP", "SER"])
N_ROWS = 24


def archive_table(n_rows=N_ROWS, seed=0):
    rng = np.random.default_rng(seed)
    table = Table()
    for name, (dtype, shape) in ARCHIVE_LAYOUT.items():
        if name == "source_type":
            table[name] = np.resize(TYPES, n_rows).astype("S3")
        elif dtype.kind == "f":
            table[name] = rng.normal(1, 0.1, (n_rows,) + shape).astype(dtype)
        elif dtype.kind == "b":
            table[name] = np.zeros(n_rows, bool)
        else:
            table[name] = np.arange(n_rows).astype(dtype) if not shape else \
                np.ones((n_rows,) + shape, dtype)
    table["ra"] = 180.0 + 0.001 * np.arange(n_rows)  # 3.6 arcsec apart along ra
    table["dec"] = np.zeros(n_rows)
    table["images"] = (np.arange(n_rows, dtype=np.float32)[:, None, None, None]
                       * np.ones((1, 3, 152, 152), np.float32))  # image k is filled with k
    return table


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("archive") / "images" / "south"
    write_archive(archive_table(), directory, rows_per_file=10)  # three files: 10, 10, 4
    return directory.parent


def rows_of(tables):
    return np.concatenate([t["archive_row"] for t in tables]).tolist()


def test_registered():
    assert get_source("legacysurvey_archive") is LegacySurveyArchive


@pytest.mark.parametrize("wanted", ["EXP", b"EXP", 2, ["EXP"], [b"EXP", 2]])
def test_select_by_source_type_in_any_form(archive_dir, wanted):
    source = LegacySurveyArchive(path=archive_dir, chunk_size=5)
    chunks = list(source.iter_query(source_type=wanted))
    expected = [k for k in range(N_ROWS) if TYPES[k % 6] == "EXP"]
    assert rows_of(chunks) == expected
    assert all(len(c) <= 5 for c in chunks)
    for chunk in chunks:
        assert set(chunk["source_type"]) == {"EXP"}
        # the image read is the image of that row
        assert np.all(chunk["cutout"][:, 0, 0, 0] == chunk["archive_row"])
        assert {"flux_g", "flux_r", "flux_z", "mag_r"} <= set(chunk.colnames)


def test_select_several_types_and_rows(archive_dir):
    source = LegacySurveyArchive(path=archive_dir)
    table = source.query(source_type=["PSF", "DEV"], rows=slice(0, 12))
    assert list(table["archive_row"]) == [1, 3, 7, 9]
    table = source.query(rows=[2, 11, 23])
    assert list(table["archive_row"]) == [2, 11, 23]
    assert table["cutout"].shape == (3, 3, 152, 152)


def test_select_by_cone(archive_dir):
    source = LegacySurveyArchive(path=archive_dir)
    # rows are 3.6 arcsec apart in ra on the equator: 8 arcsec around row 10 holds rows 8-12
    table = source.query(ra=180.010, dec=0.0, radius=8 * u.arcsec)
    assert list(table["archive_row"]) == [8, 9, 10, 11, 12]
    table = source.query(ra=180.010, dec=0.0, radius=8 / 3600, source_type="EXP")
    assert list(table["archive_row"]) == [10, 12]  # rows 10 and 12 are EXP


def test_integer_coded_archive(tmp_path):
    table = archive_table(6)
    codes = {"PSF": 0, "REX": 1, "EXP": 2, "DEV": 3, "SER": 4}
    paths = write_archive(table, tmp_path)
    with h5py.File(paths[0], "r+") as handle:
        del handle["source_type"]
        handle["source_type"] = np.array([codes[t] for t in TYPES], np.int8)
    source = LegacySurveyArchive(path=paths[0])
    assert list(source.query(source_type="EXP")["archive_row"]) == [0, 4]
    assert list(source.query(source_type=2)["archive_row"]) == [0, 4]
    with h5py.File(paths[0], "r+") as handle:  # the file's own code table wins
        handle["source_type"].attrs["codes"] = json.dumps({"0": "EXP", "1": "PSF", "2": "REX",
                                                           "3": "DEV", "4": "SER"})
    assert list(source.query(source_type="EXP")["archive_row"]) == [1]


def test_a_type_asked_of_an_archive_without_source_type_names_the_way_out(tmp_path):
    paths = write_archive(archive_table(6), tmp_path)
    with h5py.File(paths[0], "r+") as handle:  # as the cutout service's files are
        del handle["source_type"]
    source = LegacySurveyArchive(path=paths[0])
    with pytest.raises(ParameterError, match="no 'source_type' column.*--source-type all"):
        source.select_rows(source_type="EXP")
    assert len(source.query()) == 6


def test_selection_scans_without_images_then_reads_cheaply(tmp_path, monkeypatch):
    import gpm_astro_plugins.legacysurvey.archive_source as module

    path = write_archive(archive_table(40), tmp_path)[0]
    seen = []
    original = module.iter_archive

    def spy(path, **kwargs):
        rows = kwargs.get("rows")
        rows = rows if rows is None or isinstance(rows, slice) else list(rows)
        seen.append((kwargs.get("cutouts", True), rows))
        return original(path, **kwargs)

    monkeypatch.setattr(module, "iter_archive", spy)
    source = LegacySurveyArchive(path=path, chunk_size=8)
    # dense (one row in six): the scan reads no image, then the file is streamed once, from
    # the first to the last selected row
    table = source.query(source_type="SER")
    assert seen == [(False, None), (True, slice(5, 36))]
    assert list(table["archive_row"]) == [5, 11, 17, 23, 29, 35]
    assert np.all(table["cutout"][:, 1, 7, 7] == table["archive_row"])
    # one late row: only that row is read, not the 38 before it
    seen.clear()
    table = source.query(rows=[38])
    assert seen == [(True, slice(38, 39))]
    assert list(table["archive_row"]) == [38] and table["cutout"][0, 0, 0, 0] == 38
    # sparse (two rows far apart for the cost of a scattered read): read scattered
    seen.clear()
    monkeypatch.setattr(module, "SCATTER_COST", 1)
    table = source.query(rows=[3, 38])
    assert seen == [(True, [3, 38])]
    assert list(table["archive_row"]) == [3, 38] and list(table["cutout"][:, 0, 0, 0]) == [3, 38]


def test_empty_selection_keeps_schema(archive_dir):
    source = LegacySurveyArchive(path=archive_dir)
    with pytest.warns(EmptyResultWarning):
        table = source.query(source_type="DUP")
    assert len(table) == 0 and "cutout" in table.colnames and "archive_row" in table.colnames


@pytest.mark.parametrize("criteria, match", [
    ({"source_type": "GALAXY"}, "source_type"),
    ({"source_type": 42}, "code"),
    ({"source_type": True}, "source_type"),
    ({"ra": 10.0, "dec": 5.0}, "cone"),
    ({"ra": 10.0, "dec": 95.0, "radius": 1.0}, "dec"),
    ({"ra": 10.0, "dec": 5.0, "radius": -1.0}, "radius"),
    ({"rows": [5, 2]}, "increasing"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_bad_criteria(archive_dir, criteria, match):
    with pytest.raises(ParameterError, match=match):
        LegacySurveyArchive(path=archive_dir).query(**criteria)


def test_missing_path():
    with pytest.raises(ParameterError, match="path"):
        LegacySurveyArchive().query()
