"""The ssl-legacysurvey HDF5 image archive: its layout and a chunked writer (the lazy reader,
`iter_archive`, lives in `gpm_astro_plugins.legacysurvey.archive_reader` and is re-exported here).

The archive of DESI Legacy Survey DR9 cutouts used by the GPM-ResNet application
(METHOD.md §11, §13) stores 1,000,000 galaxies per file, named
``images_npix152_{start:09d}_{end:09d}.h5`` (``end`` exclusive; the last file is shorter),
under ``images/south`` and ``images/north``. Each file holds the dataset ``images``
(N, 3, 152, 152) of g, r, z cutouts in nanomaggies and one dataset per catalogue column.

The public layout does not document dtypes. The ones written here (`ARCHIVE_LAYOUT`) follow the
Legacy Survey DR9 Tractor and photo-z catalogues from which the columns come:

============== ============ ========= ====================================================
dataset        shape        dtype     meaning
============== ============ ========= ====================================================
images         (N,3,152,152) float32  g, r, z cutouts, nanomaggies, 0.262 arcsec / pixel
brickid        (N,)         int32     Tractor brick id
dec            (N,)         float64   degrees
ebv            (N,)         float32   Galactic E(B-V), mag (SFD98)
fiberflux      (N,3)        float32   g, r, z flux in a 1.5 arcsec diameter fibre, nanomaggies
flux           (N,3)        float32   g, r, z model flux, nanomaggies
fracin         (N,3)        float32   fraction of the model flux inside the blob
inds           (N,)         int64     row number of the galaxy in the parent catalogue
maskbits       (N,)         int16     Legacy Survey mask bits
nobs           (N,3)        int16     number of exposures per band
objid          (N,)         int32     Tractor object id within the brick
psfdepth       (N,3)        float32   5-sigma PSF depth as inverse variance, nanomaggy^-2
psfsize        (N,3)        float32   PSF FWHM, arcsec
ra             (N,)         float64   degrees
release        (N,)         int16     9010 (south) or 9011 (north)
source_type    (N,)         |S3       Tractor type: b"PSF", b"REX", b"EXP", b"DEV", b"SER"
transmission   (N,3)        float32   Milky Way transmission per band
z_phot_l68 ... (N,)         float32   photometric-redshift percentiles, mean, std
z_spec         (N,)         float32   spectroscopic redshift, -99 when missing
z_training     (N,)         bool      whether the galaxy trained the photo-z
============== ============ ========= ====================================================

The reader accepts other dtypes where a real file may differ: ``source_type`` as bytes, str or
integer codes (`SOURCE_TYPE_CODES`, overridable by a ``codes`` attribute on the dataset holding
a JSON object ``{"0": "PSF", ...}``).

Read back (`iter_archive`), each chunk is an astropy Table with the image-catalogue names of
``docs/dev/interfaces.md``: ``cutout`` (n, 3, 152, 152), ``flux`` split into
``flux_g, flux_r, flux_z`` with ``mag_g, mag_r, mag_z = 22.5 - 2.5 log10(flux)`` (masked where
the flux is not positive), ``source_type`` as str, and every other dataset under its own name
(per-band datasets as (n, 3) columns). `ArchiveWriter` accepts tables in either form.
"""

import os
from pathlib import Path

import h5py
import numpy as np

from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.io import new_file_mode, partial_file, writable_directory

from .archive_layout import (ARCHIVE_LAYOUT, BANDS, NPIX, PIXEL_SCALE, ROWS_PER_FILE,
                             SOURCE_TYPE_CODES, archive_filename,
                             source_type_strings)
from .archive_reader import archive_files, archive_length, iter_archive

__all__ = [
    "ARCHIVE_LAYOUT",
    "BANDS",
    "NPIX",
    "PIXEL_SCALE",
    "ROWS_PER_FILE",
    "SOURCE_TYPE_CODES",
    "ArchiveWriter",
    "archive_filename",
    "archive_files",
    "archive_length",
    "iter_archive",
    "table_to_archive_columns",
    "write_archive",
]


def table_to_archive_columns(table):
    """Convert a catalogue Table (either form) into archive datasets, name -> numpy array.

    Parameters
    ----------
    table : astropy.table.Table
        With ``cutout`` or ``images``, ``flux`` or ``flux_g, flux_r, flux_z``, and every other
        dataset of `ARCHIVE_LAYOUT` under its own name. ``mag_*`` columns are ignored (they are
        derived on reading). Extra columns are ignored.

    Returns
    -------
    dict
        Arrays with the dtypes and shapes of `ARCHIVE_LAYOUT`.

    Raises
    ------
    SchemaError
        If a dataset cannot be built from the table's columns or has the wrong shape.
    """
    n_rows = len(table)
    columns = {}
    for name, (dtype, shape) in ARCHIVE_LAYOUT.items():
        if name == "images":
            source = "cutout" if "cutout" in table.colnames else "images"
            values = _column_values(table, source)
        elif name == "flux" and "flux" not in table.colnames:
            values = np.stack([_column_values(table, f"flux_{b}") for b in BANDS], axis=-1)
        elif name == "source_type":
            values = np.char.encode(np.char.strip(source_type_strings(
                _column_values(table, name))), "ascii")
        else:
            values = _column_values(table, name)
        if values.shape != (n_rows,) + shape:
            msg = (f"archive dataset {name!r} needs shape {(n_rows,) + shape}, got "
                   f"{values.shape}")
            raise SchemaError(msg)
        columns[name] = np.ascontiguousarray(values, dtype=dtype)
    return columns


def _column_values(table, name):
    if name not in table.colnames:
        msg = (f"the archive needs column {name!r}, which the table lacks; columns present: "
               f"{table.colnames}")
        raise SchemaError(msg)
    column = table[name]
    values = column.value if hasattr(column, "unit") and column.unit is not None else column
    if isinstance(values, np.ma.MaskedArray):
        fill = np.nan if values.dtype.kind == "f" else -99
        values = values.filled(fill)
    return np.asarray(values)


class ArchiveWriter:
    """Append chunks of galaxies to archive files, rolling over every ``rows_per_file`` rows.

    Files are written under a temporary name and renamed to
    ``images_npix152_{start:09d}_{end:09d}.h5`` when complete, so a half-written file is never
    mistaken for a finished one. Datasets are written without timestamps: the same rows give
    byte-identical files.

    Parameters
    ----------
    directory : str or path-like
        Where the files go; created if missing.
    start : int, optional
        Row number of the first galaxy (the first file's ``start``).
    rows_per_file : int, optional
        Galaxies per file; the archive uses 1,000,000.
    compression : str or None, optional
        h5py compression of every dataset (e.g. ``"gzip"``); None (default) as in the archive.
    extra_columns : sequence of str, optional
        More table columns to store as datasets of their own (numbers, booleans, strings),
        e.g. the labels and preprocessing flags of a cleaned training sample.

    Raises
    ------
    ParameterError
        If ``start`` is negative, ``rows_per_file`` not positive, or ``directory`` not writable.

    Examples
    --------
    >>> import tempfile
    >>> from gpm_astro_plugins.mock import MockSky
    >>> data = MockSky(n_galaxies=4, seed=1).generate()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with ArchiveWriter(tmp, rows_per_file=3) as writer:
    ...         _ = writer.append(data.images)
    ...     [p.name for p in writer.paths]
    ['images_npix152_000000000_000000003.h5', 'images_npix152_000000003_000000004.h5']
    """

    def __init__(self, directory, *, start=0, rows_per_file=ROWS_PER_FILE, compression=None,
                 extra_columns=()):
        if int(start) != start or start < 0:
            msg = f"start must be a non-negative integer, got {start!r}"
            raise ParameterError(msg)
        if int(rows_per_file) != rows_per_file or rows_per_file <= 0:
            msg = f"rows_per_file must be a positive integer, got {rows_per_file!r}"
            raise ParameterError(msg)
        self.directory = writable_directory(directory, "archive directory")
        self.start = int(start)
        self.rows_per_file = int(rows_per_file)
        self.compression = compression
        self.extra_columns = tuple(extra_columns)
        clash = sorted(set(self.extra_columns) & (set(ARCHIVE_LAYOUT) | {"cutout"}))
        if clash:
            msg = f"extra_columns {clash} are archive datasets already"
            raise ParameterError(msg)
        self._extra_types = None
        self.paths = []
        self._file = None
        self._file_start = self.start
        self._file_rows = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # leave no half-written file behind
            self._abort()

    def append(self, table):
        """Write the rows of ``table`` (see `table_to_archive_columns`); returns self."""
        columns = table_to_archive_columns(table)
        columns.update(self._extra_values(table))
        n_rows = len(table)
        done = 0
        while done < n_rows:
            if self._file is None:
                self._open()
            take = min(n_rows - done, self.rows_per_file - self._file_rows)
            for name, values in columns.items():
                dataset = self._file[name]
                dataset.resize(self._file_rows + take, axis=0)
                dataset[self._file_rows:self._file_rows + take] = values[done:done + take]
            self._file_rows += take
            done += take
            if self._file_rows == self.rows_per_file:
                self._finish_file()
        return self

    def _extra_values(self, table):
        values = {}
        for name in self.extra_columns:
            array = _column_values(table, name)
            if array.dtype.kind in "USO":
                array = np.array([v.decode() if isinstance(v, bytes) else str(v)
                                  for v in array.ravel()], dtype=object).reshape(array.shape)
            values[name] = array
        if self._extra_types is None:
            self._extra_types = {
                name: (h5py.string_dtype() if v.dtype.kind == "O" else v.dtype, v.shape[1:])
                for name, v in values.items()}
        return values

    def close(self):
        """Finish the current file. Returns the list of paths written."""
        if self._file is not None:
            self._finish_file()
        return self.paths

    def _temporary_path(self):
        return self._partial

    def _open(self):
        # a hidden partial with this process's id: a run killed half-way leaves one, and the
        # next writer of the same rows removes it (gpm_astro.io.remove_stale_partials)
        handle, partial = partial_file(self.directory / f"images_npix{NPIX}_"
                                                        f"{self._file_start:09d}.h5",
                                       suffix=".h5")
        os.close(handle)
        self._partial = Path(partial)
        self._file = h5py.File(self._partial, "w", track_order=True)
        for name, (dtype, shape) in {**ARCHIVE_LAYOUT, **(self._extra_types or {})}.items():
            chunks = (1,) + shape if name == "images" else (min(self.rows_per_file, 4096),) + shape
            self._file.create_dataset(name, shape=(0,) + shape, maxshape=(None,) + shape,
                                      dtype=dtype, chunks=chunks, compression=self.compression,
                                      track_times=False)
        self._file_rows = 0

    def _finish_file(self):
        self._file.close()
        self._file = None
        end = self._file_start + self._file_rows
        final = self.directory / archive_filename(self._file_start, end)
        os.chmod(self._temporary_path(), new_file_mode())
        os.replace(self._temporary_path(), final)
        self.paths.append(final)
        self._file_start = end
        self._file_rows = 0

    def _abort(self):
        if self._file is not None:
            self._file.close()
            self._file = None
            self._temporary_path().unlink(missing_ok=True)


def write_archive(table, directory, *, start=0, rows_per_file=ROWS_PER_FILE, compression=None,
                  extra_columns=()):
    """Write a Table to archive files in one call. Returns the list of paths.

    Parameters
    ----------
    table : astropy.table.Table
        Catalogue with cutouts (see `table_to_archive_columns`).
    directory, start, rows_per_file, compression, extra_columns
        As for `ArchiveWriter`.

    Returns
    -------
    list of pathlib.Path
    """
    with ArchiveWriter(directory, start=start, rows_per_file=rows_per_file,
                       compression=compression, extra_columns=extra_columns) as writer:
        writer.append(table)
    return writer.paths
