"""The lazy chunked reader of the ssl-legacysurvey HDF5 archive (`iter_archive`).

The layout is described in `gpm_astro_plugins.legacysurvey.archive`, which also re-exports
these functions.
"""

import json
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
from astropy.table import MaskedColumn, Table

from gpm_astro.exceptions import ParameterError, TableIOError
from gpm_astro.survey_constants import flux_to_magnitude
from gpm_astro.tables import record_step
from gpm_astro.units import nanomaggy

from .archive_layout import (BANDS, COLUMN_DESCRIPTIONS, COLUMN_UNITS, FILENAME_PATTERN,
                             PIXEL_SCALE, source_type_strings)

__all__ = ["archive_files", "archive_length", "iter_archive", "open_archive_file"]


def open_archive_file(file_path):
    """The archive file as a read-only `h5py.File`.

    Raises
    ------
    TableIOError
        Naming the file when HDF5 cannot open it (cut short by an interrupted copy, damaged).
        It is an `OSError`, so a catalogue task flags the rows it cannot read as it does for
        a damaged chunk, and the command line exits with status 1 (not an internal error).
    """
    try:
        return h5py.File(file_path, "r")
    except OSError as exc:
        msg = f"cannot open the archive file {str(file_path)!r}: {exc}"
        raise TableIOError(msg) from exc


def archive_files(path):
    """Return the archive files at ``path`` (a file, or a directory searched recursively).

    Files are sorted by directory then by their ``start`` row.

    Raises
    ------
    ParameterError
        If ``path`` does not exist, is a file but not an HDF5 file (a FITS or Parquet table
        given where the archive is expected), or is a directory holding no archive file.
    """
    path = Path(path)
    if path.is_file():
        if not h5py.is_hdf5(path):
            msg = (f"{str(path)!r} is not an HDF5 archive file: an image archive is a "
                   f"directory of images_npix152_*.h5 files or one such file")
            raise ParameterError(msg)
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
        with open_archive_file(file_path) as handle:
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
    >>> from gpm_astro_plugins.legacysurvey.archive import write_archive
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
        with open_archive_file(file_path) as handle:
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
            with open_archive_file(file_path) as handle:
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



def _chunk_to_table(chunk, handle):
    table = Table()
    table.meta["bands"] = BANDS
    table.meta["pixel_scale"] = PIXEL_SCALE
    for name, values in chunk.items():
        if name == "images":
            # the array was just read for this table: no second copy of the biggest column
            table.add_column(values.astype(np.float32, copy=False), name="cutout", copy=False)
            table["cutout"].unit = nanomaggy
            table["cutout"].description = COLUMN_DESCRIPTIONS["cutout"]
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
            table[name] = source_type_strings(values, codes)
            table[name].description = COLUMN_DESCRIPTIONS[name]
        else:
            if values.dtype.kind == "O":  # variable-length strings of extra columns
                values = np.array([v.decode() if isinstance(v, bytes) else str(v)
                                   for v in values.ravel()]).reshape(values.shape)
            table[name] = values
            if name in COLUMN_UNITS:
                table[name].unit = COLUMN_UNITS[name]
            if name in COLUMN_DESCRIPTIONS:
                table[name].description = COLUMN_DESCRIPTIONS[name]
    return table
