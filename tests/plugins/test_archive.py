"""Tests of the ssl-legacysurvey HDF5 archive writer and reader."""

import h5py
import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro_plugins.legacysurvey.archive import (ARCHIVE_LAYOUT, ArchiveWriter,
                                                    archive_filename, archive_files,
                                                    archive_length, iter_archive,
                                                    write_archive)

NPIX = 152


def _catalog(n, seed=0, *, npix=NPIX):
    """A small image catalogue in the read-back form, random but valid."""
    rng = np.random.default_rng(seed)
    table = Table()
    table["cutout"] = rng.normal(0, 0.01, (n, 3, npix, npix)).astype(np.float32)
    table["ra"] = rng.uniform(0, 360, n)
    table["dec"] = rng.uniform(-20, 80, n)
    table["release"] = rng.choice([9010, 9011], n)
    table["brickid"] = rng.integers(1, 600_000, n)
    table["objid"] = np.arange(n)
    table["source_type"] = rng.choice(["EXP", "DEV", "REX", "SER", "PSF"], n)
    for band in "grz":
        table[f"flux_{band}"] = rng.uniform(1, 100, n)
    table["fiberflux"] = rng.uniform(0.1, 10, (n, 3))
    table["ebv"] = rng.uniform(0.01, 0.1, n)
    table["fracin"] = rng.uniform(0.9, 1, (n, 3))
    table["inds"] = np.arange(n) * 7
    table["maskbits"] = np.zeros(n, int)
    table["nobs"] = rng.integers(1, 5, (n, 3))
    table["psfdepth"] = rng.uniform(100, 1000, (n, 3))
    table["psfsize"] = rng.uniform(1.0, 1.6, (n, 3))
    table["transmission"] = rng.uniform(0.8, 1.0, (n, 3))
    for name in ("l68", "l95", "mean", "median", "std", "u68", "u95"):
        table[f"z_phot_{name}"] = rng.uniform(0, 0.5, n)
    table["z_spec"] = np.where(rng.uniform(size=n) < 0.5, rng.uniform(0, 0.3, n), -99.0)
    table["z_training"] = rng.uniform(size=n) < 0.5
    return table


def test_filename():
    assert archive_filename(0, 1_000_000) == "images_npix152_000000000_001000000.h5"
    assert archive_filename(3_000_000, 3_412_345) == "images_npix152_003000000_003412345.h5"


def test_layout_field_by_field(tmp_path):
    paths = write_archive(_catalog(5), tmp_path)
    assert [p.name for p in paths] == ["images_npix152_000000000_000000005.h5"]
    with h5py.File(paths[0], "r") as handle:
        assert sorted(handle.keys()) == sorted(ARCHIVE_LAYOUT)
        for name, (dtype, shape) in ARCHIVE_LAYOUT.items():
            assert handle[name].dtype == dtype, name
            assert handle[name].shape == (5,) + shape, name
        assert handle["images"].shape == (5, 3, 152, 152)
        assert handle["images"].dtype == np.float32
        assert handle["source_type"][0] in (b"EXP", b"DEV", b"REX", b"SER", b"PSF")
        # the archive has flux (N, 3) and no mag_r
        assert "mag_r" not in handle and handle["flux"].shape == (5, 3)


def test_mock_images_match_layout_and_round_trip(tmp_path):
    from gpm_astro_plugins.mock import MockSky

    images = MockSky(n_galaxies=6, seed=1).generate().images
    write_archive(images, tmp_path)
    (chunk,) = list(iter_archive(tmp_path, chunk_size=10))
    assert len(chunk) == 6
    for name in images.colnames:
        assert name in chunk.colnames, name
        expected = np.asarray(images[name])
        got = np.asarray(chunk[name])
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)
    assert chunk["source_type"].dtype.kind == "U"


def test_reader_splits_flux_and_derives_magnitudes(tmp_path):
    table = _catalog(4)
    table["flux_r"][1] = -0.5  # a non-positive flux gives no magnitude
    write_archive(table, tmp_path)
    (chunk,) = list(iter_archive(tmp_path, chunk_size=4))
    assert "flux" not in chunk.colnames
    np.testing.assert_allclose(chunk["flux_g"], table["flux_g"], rtol=1e-6)
    expected = 22.5 - 2.5 * np.log10(np.asarray(table["flux_z"], dtype=np.float32))
    np.testing.assert_allclose(chunk["mag_z"], expected, rtol=1e-6)
    assert chunk["mag_r"].mask[1] and not chunk["mag_r"].mask[0]
    assert chunk["cutout"].shape == (4, 3, 152, 152)
    assert chunk["psfsize"].shape == (4, 3)
    assert chunk.meta["bands"] == "grz" and chunk.meta["pixel_scale"] == 0.262
    assert str(chunk["flux_g"].unit) == "nmgy"


def test_rollover_and_rows_across_files(tmp_path):
    table = _catalog(7, seed=2)
    with ArchiveWriter(tmp_path, rows_per_file=3) as writer:
        writer.append(table[:2])
        writer.append(table[2:])
    assert [p.name for p in writer.paths] == [
        "images_npix152_000000000_000000003.h5", "images_npix152_000000003_000000006.h5",
        "images_npix152_000000006_000000007.h5"]
    assert archive_length(tmp_path) == 7
    chunks = list(iter_archive(tmp_path, chunk_size=2))
    assert [len(c) for c in chunks] == [2, 1, 2, 1, 1]  # chunks never span files
    objid = np.concatenate([c["objid"] for c in chunks])
    np.testing.assert_array_equal(objid, table["objid"])
    picked = list(iter_archive(tmp_path, chunk_size=5, rows=[1, 4, 5, 6]))
    np.testing.assert_array_equal(np.concatenate([c["objid"] for c in picked]), [1, 4, 5, 6])
    np.testing.assert_array_equal(picked[0]["cutout"][0], table["cutout"][1])
    sliced = list(iter_archive(tmp_path, chunk_size=5, rows=slice(2, 5), cutouts=False))
    assert np.concatenate([c["objid"] for c in sliced]).tolist() == [2, 3, 4]
    assert "cutout" not in sliced[0].colnames


def test_no_partial_file_left_after_error(tmp_path):
    table = _catalog(2)
    bad = table.copy()
    bad.remove_column("ebv")
    with pytest.raises(SchemaError, match="ebv"):
        with ArchiveWriter(tmp_path) as writer:
            writer.append(table)
            writer.append(bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["bytes", "str", "int"])
def test_source_type_any_storage(tmp_path, kind):
    path = tmp_path / archive_filename(0, 3)
    values = ["EXP", "DEV", "PSF"]
    with h5py.File(path, "w") as handle:
        handle["images"] = np.zeros((3, 3, 4, 4), np.float32)
        handle["flux"] = np.ones((3, 3), np.float32)
        if kind == "bytes":
            handle["source_type"] = np.array([b"EXP ", b"DEV", b"PSF"], dtype="S4")
        elif kind == "str":
            handle.create_dataset("source_type", data=values,
                                  dtype=h5py.string_dtype("utf-8"))
        else:
            handle["source_type"] = np.array([2, 3, 0], dtype=np.int16)
    (chunk,) = list(iter_archive(path, chunk_size=3))
    assert chunk["source_type"].tolist() == values


def test_integer_codes_from_attribute(tmp_path):
    path = tmp_path / archive_filename(0, 2)
    with h5py.File(path, "w") as handle:
        handle["images"] = np.zeros((2, 3, 4, 4), np.float32)
        handle["source_type"] = np.array([7, 8], dtype=np.int8)
        handle["source_type"].attrs["codes"] = '{"7": "EXP", "8": "SER"}'
    (chunk,) = list(iter_archive(path))
    assert chunk["source_type"].tolist() == ["EXP", "SER"]


def test_reader_does_not_read_more_than_a_chunk(tmp_path, monkeypatch):
    write_archive(_catalog(5, seed=3), tmp_path)
    read_sizes = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        result = original(self, key)
        if self.name == "/images":
            read_sizes.append(result.shape[0])
        return result

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    assert sum(len(c) for c in iter_archive(tmp_path, chunk_size=2)) == 5
    assert max(read_sizes) <= 2


@pytest.mark.parametrize("kwargs, match", [
    ({"chunk_size": 0}, "chunk_size"),
    ({"rows": [3, 1]}, "increasing"),
    ({"rows": [0, 99]}, "increasing"),
    ({"rows": slice(0, 4, 2)}, "step"),
    ({"columns": ["nope"]}, "nope"),
])
def test_reader_bad_parameters(tmp_path, kwargs, match):
    write_archive(_catalog(4), tmp_path)
    with pytest.raises(ParameterError, match=match):
        list(iter_archive(tmp_path, **kwargs))


def test_missing_paths(tmp_path):
    with pytest.raises(ParameterError, match="no archive"):
        archive_files(tmp_path / "missing")
    with pytest.raises(ParameterError, match="images_npix"):
        archive_files(tmp_path)


def test_writer_bad_parameters(tmp_path):
    with pytest.raises(ParameterError, match="rows_per_file"):
        ArchiveWriter(tmp_path, rows_per_file=0)
    with pytest.raises(ParameterError, match="start"):
        ArchiveWriter(tmp_path, start=-1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ParameterError, match="file"):
        ArchiveWriter(blocker / "sub")
    with pytest.raises(SchemaError, match="cutout|images"):
        write_archive(_catalog(2)[["ra", "dec"]], tmp_path / "out")
