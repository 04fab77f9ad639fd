"""The ssl-legacysurvey HDF5 image archive: a chunked writer and a lazy chunked reader.

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

import json
import os
import re
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
from astropy.table import MaskedColumn, Table

from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.io import new_file_mode, partial_file, writable_directory
from gpm_astro.survey_constants import BANDS as SURVEY_BANDS
from gpm_astro.survey_constants import CUTOUT_SIZE, PIXEL_SCALE_ARCSEC, flux_to_magnitude
from gpm_astro.tables import record_step
from gpm_astro.units import nanomaggy

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

BANDS = SURVEY_BANDS
NPIX = CUTOUT_SIZE
PIXEL_SCALE = PIXEL_SCALE_ARCSEC
ROWS_PER_FILE = 1_000_000
FILENAME_PATTERN = re.compile(r"images_npix(\d+)_(\d{9})_(\d{9})\.h5$")

#: dataset name -> (dtype, per-row shape). Images first, then columns in alphabetical order.
ARCHIVE_LAYOUT = {
    "images": (np.dtype("float32"), (3, NPIX, NPIX)),
    "brickid": (np.dtype("int32"), ()),
    "dec": (np.dtype("float64"), ()),
    "ebv": (np.dtype("float32"), ()),
    "fiberflux": (np.dtype("float32"), (3,)),
    "flux": (np.dtype("float32"), (3,)),
    "fracin": (np.dtype("float32"), (3,)),
    "inds": (np.dtype("int64"), ()),
    "maskbits": (np.dtype("int16"), ()),
    "nobs": (np.dtype("int16"), (3,)),
    "objid": (np.dtype("int32"), ()),
    "psfdepth": (np.dtype("float32"), (3,)),
    "psfsize": (np.dtype("float32"), (3,)),
    "ra": (np.dtype("float64"), ()),
    "release": (np.dtype("int16"), ()),
    "source_type": (np.dtype("S3"), ()),
    "transmission": (np.dtype("float32"), (3,)),
    "z_phot_l68": (np.dtype("float32"), ()),
    "z_phot_l95": (np.dtype("float32"), ()),
    "z_phot_mean": (np.dtype("float32"), ()),
    "z_phot_median": (np.dtype("float32"), ()),
    "z_phot_std": (np.dtype("float32"), ()),
    "z_phot_u68": (np.dtype("float32"), ()),
    "z_phot_u95": (np.dtype("float32"), ()),
    "z_spec": (np.dtype("float32"), ()),
    "z_training": (np.dtype("bool"), ()),
}

#: integer code -> Tractor type, used when ``source_type`` is stored as integers
SOURCE_TYPE_CODES = {0: "PSF", 1: "REX", 2: "EXP", 3: "DEV", 4: "SER", 5: "DUP"}

_UNITS = {
    "ra": u.deg, "dec": u.deg, "ebv": u.mag, "fiberflux": nanomaggy, "psfsize": u.arcsec,
    "psfdepth": nanomaggy ** -2,
}
_DESCRIPTIONS = {
    "cutout": f"g, r, z cutout in nanomaggies, {PIXEL_SCALE_ARCSEC} arcsec / pixel",
    "source_type": "Tractor morphological type",
    "z_spec": "spectroscopic redshift, -99 when missing",
}


def archive_filename(start, end, *, npix=NPIX):
    """Return the archive's name of the file holding rows ``start`` to ``end`` (exclusive).

    Examples
    --------
    >>> archive_filename(0, 1_000_000)
    'images_npix152_000000000_001000000.h5'
    """
    return f"images_npix{npix}_{start:09d}_{end:09d}.h5"


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
            values = np.char.encode(np.char.strip(_source_type_strings(
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


def archive_files(path):
    """Return the archive files at ``path`` (a file, or a directory searched recursively).

    Files are sorted by directory then by their ``start`` row.

    Raises
    ------
    ParameterError
        If ``path`` does not exist or a directory holds no archive file.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        msg = f"no archive file or directory at {str(path)!r}"
        raise ParameterError(msg)
    found = [p for p in path.rglob("images_npix*_*_*.h5") if FILENAME_PATTERN.search(p.name)]
    if not found:
        msg = f"no images_npix*_*_*.h5 archive file under {str(path)!r}"
        raise ParameterError(msg)
    return sorted(found, key=lambda p: (str(p.parent), int(FILENAME_PATTERN.search(p.name)[2])))


def archive_length(path):
    """Return the number of galaxies in the archive file(s) at ``path``."""
    total = 0
    for file_path in archive_files(path):
        with h5py.File(file_path, "r") as handle:
            total += handle["images"].shape[0] if "images" in handle else _first_length(handle)
    return total


def _first_length(handle):
    for dataset in handle.values():
        return dataset.shape[0]
    return 0


def iter_archive(path, *, chunk_size=1000, rows=None, columns=None, cutouts=True,
                 progress=False):
    """Read archive files lazily, ``chunk_size`` rows at a time.

    Only the rows of one chunk are ever in memory; whole files are never loaded.

    Parameters
    ----------
    path : str or path-like
        One archive file, or a directory searched recursively (files in order of their start
        row, so rows are numbered across files as the archive numbers them).
    chunk_size : int, optional
        Rows per yielded Table.
    rows : slice or sequence of int, optional
        Which rows to read, numbered from 0 across all files at ``path``: a slice (step 1), or
        increasing indices. None reads everything.
    columns : sequence of str, optional
        Datasets to read (archive names, e.g. ``["ra", "dec", "flux"]``); default all. ``images``
        is controlled by ``cutouts``.
    cutouts : bool, optional
        Whether to read the ``images`` dataset into a ``cutout`` column.
    progress : bool, optional
        Show a tqdm progress bar over the rows.

    Yields
    ------
    astropy.table.Table
        ``cutout`` (n, 3, 152, 152) float32, ``flux_g, flux_r, flux_z``, ``mag_g, mag_r, mag_z``
        (masked where the flux is not positive), ``source_type`` (str) and the other datasets.
        ``meta`` holds ``bands``, ``pixel_scale``, ``archive_file`` and ``archive_start`` (the
        first row of the chunk within that file).

    Raises
    ------
    ParameterError
        If ``chunk_size`` is not positive, ``rows`` is not increasing or out of range, or a
        requested column is not in the file.

    Examples
    --------
    >>> import tempfile
    >>> from gpm_astro_plugins.mock import MockSky
    >>> data = MockSky(n_galaxies=5, seed=2).generate()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_archive(data.images, tmp)
    ...     chunks = list(iter_archive(tmp, chunk_size=2))
    >>> [len(c) for c in chunks]
    [2, 2, 1]
    >>> chunks[0]["cutout"].shape
    (2, 3, 152, 152)
    """
    if int(chunk_size) != chunk_size or chunk_size <= 0:
        msg = f"chunk_size must be a positive integer, got {chunk_size!r}"
        raise ParameterError(msg)
    files = archive_files(path)
    lengths = []
    for file_path in files:
        with h5py.File(file_path, "r") as handle:
            lengths.append(handle["images"].shape[0] if "images" in handle
                           else _first_length(handle))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    wanted = _row_selection(rows, int(offsets[-1]))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(offsets[-1]) if wanted is None else len(wanted),
                   desc="reading archive", unit="galaxy")
    try:
        for index, file_path in enumerate(files):
            first, last = offsets[index], offsets[index + 1]
            if wanted is None:
                local = None
                n_local = int(last - first)
            else:
                in_file = wanted[(wanted >= first) & (wanted < last)] - first
                if len(in_file) == 0:
                    continue
                local = in_file
                n_local = len(in_file)
            with h5py.File(file_path, "r") as handle:
                names = _dataset_names(handle, columns, cutouts)
                for begin in range(0, n_local, int(chunk_size)):
                    stop = min(begin + int(chunk_size), n_local)
                    selection = (slice(begin, stop) if local is None else local[begin:stop])
                    chunk = {name: _read_rows(handle[name], selection) for name in names}
                    start_row = begin if local is None else int(local[begin])
                    table = _chunk_to_table(chunk, handle)
                    table.meta["archive_file"] = str(file_path)
                    table.meta["archive_start"] = start_row
                    record_step(table, "iter_archive", path=str(path), chunk_size=chunk_size,
                                cutouts=cutouts)
                    if bar is not None:
                        bar.update(len(table))
                    yield table
    finally:
        if bar is not None:
            bar.close()


def _row_selection(rows, n_total):
    if rows is None:
        return None
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n_total)
        if step != 1:
            msg = f"rows as a slice must have step 1, got {rows!r}"
            raise ParameterError(msg)
        return np.arange(start, stop, dtype=np.int64)
    wanted = np.asarray(rows)
    if wanted.ndim != 1 or (wanted.size and wanted.dtype.kind not in "iu"):
        msg = f"rows must be a slice or a 1-D sequence of integers, got {rows!r}"
        raise ParameterError(msg)
    wanted = wanted.astype(np.int64)
    if wanted.size and (np.any(np.diff(wanted) <= 0) or wanted[0] < 0
                        or wanted[-1] >= n_total):
        msg = (f"rows must be strictly increasing indices in [0, {n_total}), got "
               f"{rows!r}")
        raise ParameterError(msg)
    return wanted


def _dataset_names(handle, columns, cutouts):
    available = list(handle.keys())
    if columns is None:
        names = [n for n in available if n != "images"]
    else:
        missing = [n for n in columns if n not in available]
        if missing:
            msg = f"column(s) {missing} are not in the archive; it holds {available}"
            raise ParameterError(msg)
        names = [n for n in columns if n != "images"]
    if cutouts:
        if "images" not in available:
            msg = f"the archive holds no 'images' dataset; it holds {available}"
            raise ParameterError(msg)
        names = ["images"] + names
    return names


def _read_rows(dataset, selection):
    if isinstance(selection, slice):
        return dataset[selection]
    # h5py reads a run of consecutive rows as one hyperslab, many times faster than a point
    # selection, so read each run of consecutive indices as a slice
    indices = np.asarray(selection, dtype=np.int64)
    if len(indices) == 0:
        return dataset[0:0]
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(indices)]])
    if len(starts) == 1:
        return dataset[int(indices[0]):int(indices[-1]) + 1]
    out = np.empty((len(indices),) + dataset.shape[1:], dtype=dataset.dtype)
    for begin, end in zip(starts, ends):
        out[begin:end] = dataset[int(indices[begin]):int(indices[end - 1]) + 1]
    return out


def _source_type_strings(values, codes=None):
    values = np.asarray(values)
    if values.dtype.kind == "S":
        return np.char.strip(np.char.decode(values, "ascii"))
    if values.dtype.kind == "U":
        return np.char.strip(values)
    if values.dtype.kind == "O":
        return np.array([v.decode("ascii").strip() if isinstance(v, bytes) else str(v).strip()
                         for v in values], dtype="U3")
    if values.dtype.kind in "iu":
        codes = SOURCE_TYPE_CODES if codes is None else codes
        unknown = sorted(set(np.unique(values).tolist()) - set(codes))
        if unknown:
            msg = f"source_type integer code(s) {unknown} are not in the code table {codes}"
            raise SchemaError(msg)
        lookup = np.array([codes.get(i, "") for i in range(max(codes) + 1)])
        return lookup[values]
    msg = f"source_type must be bytes, str or integer codes, got dtype {values.dtype}"
    raise SchemaError(msg)


def _chunk_to_table(chunk, handle):
    table = Table()
    table.meta["bands"] = BANDS
    table.meta["pixel_scale"] = PIXEL_SCALE
    for name, values in chunk.items():
        if name == "images":
            # the array was just read for this table: no second copy of the biggest column
            table.add_column(values.astype(np.float32, copy=False), name="cutout", copy=False)
            table["cutout"].unit = nanomaggy
            table["cutout"].description = _DESCRIPTIONS["cutout"]
        elif name == "flux":
            for k, band in enumerate(BANDS):
                flux = values[:, k].astype(np.float32, copy=False)
                table[f"flux_{band}"] = flux
                table[f"flux_{band}"].unit = nanomaggy
                table[f"flux_{band}"].description = f"{band}-band model flux"
            for k, band in enumerate(BANDS):
                mag = flux_to_magnitude(values[:, k])
                table[f"mag_{band}"] = MaskedColumn(mag, mask=~np.isfinite(mag), unit=u.mag,
                                                    description=f"{band}-band AB magnitude, "
                                                    "22.5 - 2.5 log10(flux)")
        elif name == "source_type":
            codes = None
            if "codes" in handle[name].attrs:
                stored = json.loads(handle[name].attrs["codes"])
                codes = {int(k): str(v) for k, v in stored.items()}
            table[name] = _source_type_strings(values, codes)
            table[name].description = _DESCRIPTIONS[name]
        else:
            if values.dtype.kind == "O":  # variable-length strings of extra columns
                values = np.array([v.decode() if isinstance(v, bytes) else str(v)
                                   for v in values.ravel()]).reshape(values.shape)
            table[name] = values
            if name in _UNITS:
                table[name].unit = _UNITS[name]
            if name in _DESCRIPTIONS:
                table[name].description = _DESCRIPTIONS[name]
    return table
