"""Reading and writing table files in any format astropy handles, atomically.

`write_table` writes to a temporary file in the destination folder and renames it into place
(`os.replace`), so a crash never leaves a half-written catalogue under the final name.
Multi-dimensional columns (the (n, 3, 152, 152) ``cutout`` column) and the nested provenance in
``meta["gpm_astro"]`` survive FITS, HDF5 and ECSV round trips.
"""

import contextlib
import csv
import os
import re
import tempfile
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Column, MaskedColumn, Table

from .answer_checks import check_answer, check_read_answer, starts_with_table_mark
from .exceptions import GPMAstroWarning, ParameterError, TableIOError
from .io_parquet import restore_array_shapes, restore_nulls
from .process_pool import remove_files_of_dead_processes
from .tables import text_objects_to_str
from .fits_meta import (FITS_MASK_SUFFIX, FITS_META_KEYWORD, nonstandard_fits_units,  # noqa: F401
                        parse_nonstandard_units, restore_fits_meta, with_fits_meta,
                        write_nonstandard_units)
from .units import use_known_units

__all__ = ["read_table", "write_table", "atomic_write_bytes", "atomic_file", "new_file_mode",
           "writable_directory", "partial_file", "remove_stale_partials", "FORMATS"]

#: File-name endings and the astropy format each one means.
FORMATS = {
    ".fits": "fits", ".fit": "fits", ".fts": "fits", ".fits.gz": "fits",
    ".ecsv": "ascii.ecsv",
    ".csv": "ascii.csv",
    ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5",
    ".parquet": "parquet",
    ".vot": "votable", ".votable": "votable", ".xml": "votable",
}

#: Dataset path used for HDF5 tables unless ``path=`` is given.
HDF5_PATH = "data"


def _format_for(path, fmt):
    if fmt is not None:
        if not isinstance(fmt, str):
            msg = f"format must be an astropy format name (str), got {fmt!r}"
            raise TableIOError(msg)
        return fmt
    name = Path(path).name.lower()
    for ending in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(ending):
            return FORMATS[ending]
    msg = (f"cannot tell the table format of {str(path)!r} from its name; use one of the "
           f"endings {sorted(FORMATS)} or pass format=")
    raise TableIOError(msg)


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        msg = f"path must be a str or os.PathLike, got {type(path).__name__}: {path!r}"
        raise TypeError(msg)
    return Path(path)


def read_table(path, *, format=None, attach_cutouts=False, **kwargs):
    """Read a table file into an astropy `~astropy.table.Table`.

    An HDF5 file that holds no astropy table but whose name matches the ``file_patterns`` of a
    registered data source (e.g. the Legacy Survey archive files ``images_npix152_*.h5``
    that ``gpm-astro mock`` writes) is read by that source's ``read_file``.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Its ending picks the format (see `FORMATS`) unless ``format`` is given.
    format : str, optional
        An astropy format name, e.g. ``"fits"``, ``"ascii.ecsv"``, ``"hdf5"``.
    attach_cutouts : bool, optional
        For a table whose cutouts live in a separate store (the pipeline's intermediate
        tables: ``meta["cutout_store"]``, a path relative to the table's folder, and
        ``meta["cutout_rows"]``, the column of store rows), add them as the ``cutout`` column,
        so that a later stage can be rerun on the table alone. Rows with a masked store row
        get NaN cutouts.
    **kwargs
        Passed to `astropy.table.Table.read` (e.g. ``hdu=``, ``path=`` for HDF5, which defaults
        to ``"data"`` when the file holds that dataset).

    Returns
    -------
    `~astropy.table.Table`
        The table, numeric columns in native byte order (FITS is big-endian); a FITS file
        written by `write_table` gets its full ``meta``, non-FITS units (``nmgy``) and the
        masks of boolean columns back; a Parquet file's multi-dimensional columns (cutouts) get
        their shape back, which astropy's reader flattens, and its nulls are masked (integer
        columns stay integers, not float64 with NaN). In CSV and other plain-text formats, a
        column holding only ``True`` and ``False`` (how booleans are written there) is read as
        boolean, empty cells masked, so a ``preprocess_ok`` of ``"False"`` never reads as true;
        a column of whole numbers above 2**63 - 1 (SDSS specObjIDs of plates above 8191) is
        read as uint64, not as text. A CSV that starts with SkyServer's ``#Table1`` line has
        ``#`` lines as comments, so its answer with no data line reads as a 0-row table. A
        column of objects holding only text (a VOTable's ``char(*)``) is read as ``str``; a
        VOTable's columns are named by their FIELD names, not their IDs.

    Raises
    ------
    TableIOError
        If the file does not exist, its format is unknown, a needed package (e.g. pyarrow for
        Parquet) is missing, astropy cannot parse it, or it holds a service's answer that is
        no single table (`gpm_astro.answer_checks`).

    Warns
    -----
    GPMAstroWarning
        For a TAP VOTable cut at the service's row limit (``QUERY_STATUS = OVERFLOW``).

    Examples
    --------
    >>> import tempfile, os
    >>> from astropy.table import Table
    >>> from gpm_astro.io import read_table, write_table
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "labels.fits")
    >>> write_table(Table({"z": [0.05, 0.1]}, meta={"bands": "grz"}), path)
    >>> read_table(path).meta["bands"]
    'grz'
    """
    path = _check_path(path)
    fmt = _format_for(path, format)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "does not exist"
        msg = f"cannot read table {str(path)!r}: it {what}"
        raise TableIOError(msg)
    if fmt == "hdf5" and "path" not in kwargs and _hdf5_has(path, HDF5_PATH):
        kwargs["path"] = HDF5_PATH
    elif fmt == "hdf5" and "path" not in kwargs:
        reader = _registered_file_reader(path)
        if reader is not None:
            table = reader.read_file(path)
            return _attach_cutouts(table, path) if attach_cutouts else table
    with _table_io_errors("read", path, fmt), _large_csv_fields(), warnings.catch_warnings():
        check_answer(path, fmt)  # a service's error page or message saved as a table
        if fmt == "fits":  # TUNIT strings outside the FITS standard ('dex'): see below
            warnings.filterwarnings("ignore", message=".* did not parse as fits unit",
                                    category=u.UnitsWarning)
        if fmt.startswith("ascii.") and fmt != "ascii.ecsv":  # see _restore_unsigned_integers
            warnings.filterwarnings("ignore", message="OverflowError converting to IntType")
        if fmt.startswith("ascii.") and _starts_with_bom(path):
            # a CSV saved by Excel: without this the first column is named '\ufeffra'
            kwargs.setdefault("encoding", "utf-8-sig")
        if fmt == "votable":
            # a FIELD's name is the column's name (pyvo's choice); astropy's default takes the
            # ID, an XML reference key that some services set to 'col0', 'col1' ...
            kwargs.setdefault("use_names_over_ids", True)
        if fmt == "ascii.csv" and starts_with_table_mark(path):
            # SkyServer's '#Table1' line: astropy skips it only when data rows follow, so a
            # query that matched nothing would not read as 0 rows without
            kwargs.setdefault("comment", "#")
        table = Table.read(path, format=fmt, **kwargs)
    if fmt == "fits":
        # a file of write_table's keeps every unit in GPMMETA: no warning for what it restores
        parse_nonstandard_units(table, path, warn=FITS_META_KEYWORD not in table.meta)
        if FITS_META_KEYWORD in table.meta:
            restore_fits_meta(table, path)
    check_read_answer(table, path, fmt)  # several SkyServer tables, a TAP answer cut short
    if fmt == "votable":
        use_known_units(table)  # VOUnit's own dex, Msun, degrees: astropy's dex, solMass, deg
    if fmt.startswith("ascii.") and fmt != "ascii.ecsv":
        _restore_text_booleans(table)
        _restore_unsigned_integers(table, path)
    if fmt == "parquet":  # astropy flattens (n, 3, 152, 152) to (n, 69312) there, and reads
        restore_array_shapes(table, path)  # nulls as NaN, integers with nulls as float64
        restore_nulls(table, path)
    _to_native_byte_order(table)
    text_objects_to_str(table)  # a VOTable's char(*) column, which FITS and HDF5 cannot store
    return _attach_cutouts(table, path) if attach_cutouts else table


def _starts_with_bom(path):
    with open(path, "rb") as handle:
        return handle.read(3) == b"\xef\xbb\xbf"


def _registered_file_reader(path):
    """The registered data source whose ``file_patterns`` match the file's name, if any."""
    import fnmatch

    from .plugins import list_components

    for component in list_components("data_source"):
        cls = component.cls
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in cls.file_patterns):
            return cls
    return None


def _attach_cutouts(table, path):
    """Add the ``cutout`` column from the store ``meta["cutout_store"]`` names (if any)."""
    store = table.meta.get("cutout_store")
    if store is None or "cutout" in table.colnames:
        return table
    from .pipeline.cutout_store import read_cutouts

    store_path = Path(path).parent / store
    rows_column = table.meta.get("cutout_rows", "cutout_row")
    if not store_path.is_file():
        msg = (f"the cutouts of {str(path)!r} are kept in {str(store_path)!r}, which does not "
               f"exist (a run with keep_cutouts = false removes it; rerun that stage)")
        raise TableIOError(msg)
    if rows_column not in table.colnames:
        msg = f"{str(path)!r} names a cutout store but has no {rows_column!r} column"
        raise TableIOError(msg)
    rows = np.ma.asanyarray(table[rows_column])
    valid = ~np.ma.getmaskarray(rows)
    found = read_cutouts(store_path, np.asarray(np.ma.getdata(rows)[valid], dtype=np.int64))
    cutouts = np.full((len(table),) + found.shape[1:], np.nan, dtype=np.float32)
    cutouts[valid] = found
    table["cutout"] = cutouts
    table["cutout"].unit = u.nanomaggy
    table["cutout"].description = f"g, r, z cutout in nanomaggies, from {store}"
    return table


_BOOLEAN_TEXT = {"True": True, "False": False}


def _text_columns(table):
    """(name, stripped text, mask) of each one-dimensional text column of ``table``."""
    for name in table.colnames:
        column = table[name]
        if getattr(column, "dtype", None) is None or column.dtype.kind not in "US" or \
                column.ndim != 1:
            continue
        data = np.ma.asanyarray(column)
        yield name, np.char.strip(np.ma.getdata(data).astype(str)), np.ma.getmaskarray(data)


def _replace_column(table, name, values, mask):
    """In place: column ``name`` holds ``values`` (masked where ``mask``), same description."""
    description = table[name].info.description
    table[name] = MaskedColumn(values, mask=mask, description=description) if mask.any() \
        else Column(values, description=description)


def _restore_text_booleans(table):
    """In place: a text column holding only ``True``/``False`` (as CSV writes booleans) is
    boolean again, so ``"False"`` never reads as true. Empty or masked cells stay masked."""
    for name, text, mask in list(_text_columns(table)):
        mask = mask | (text == "")
        present = text[~mask]
        if present.size == 0 or not np.isin(present, list(_BOOLEAN_TEXT)).all():
            continue
        _replace_column(table, name, text == "True", mask)


_INT64_MAX = int(np.iinfo(np.int64).max)
_UINT64_MAX = int(np.iinfo(np.uint64).max)


def _restore_unsigned_integers(table, path):
    """In place: a text column that astropy's CSV reader left as text because its integers
    overflow int64 (SDSS specObjIDs of plates above 8191 exceed 2**63) is read as uint64 when
    every value is a whole number below 2**64; larger ones stay text, with a warning."""
    for name, text, mask in list(_text_columns(table)):
        present = text[~mask]
        if present.size == 0 or not all(v.isascii() and v.isdigit() for v in present):
            continue
        largest = max(int(v) for v in present)
        if largest <= _INT64_MAX:
            continue
        if largest > _UINT64_MAX:
            warnings.warn(f"column {name!r} of {str(path)!r} holds integers above 2**64 - 1 "
                          f"(e.g. {largest}); it is kept as text", GPMAstroWarning, stacklevel=3)
            continue
        numbers = np.zeros(len(text), dtype=np.uint64)
        numbers[~mask] = np.array([int(v) for v in present], dtype=np.uint64)
        _replace_column(table, name, numbers, mask)


def _to_native_byte_order(table):
    """FITS stores big-endian numbers; torch and numba refuse them, so convert in place."""
    for name in table.colnames:
        column = table[name]
        dtype = getattr(column, "dtype", None)
        if dtype is not None and dtype.kind in "biufc" and not dtype.isnative:
            table[name] = column.astype(dtype.newbyteorder("="))


def write_table(table, path, *, overwrite=False, format=None, **kwargs):
    """Write ``table`` to ``path`` atomically.

    The table is written to a temporary file in the same folder and renamed into place, so
    readers never see a partial file and an existing file is replaced only by a complete one.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The table; it is not modified.
    path : str or os.PathLike
        Destination. Its ending picks the format (see `FORMATS`) unless ``format`` is given.
    overwrite : bool, optional
        Replace an existing file. Default False.
    format : str, optional
        An astropy format name.
    **kwargs
        Passed to `astropy.table.Table.write`. HDF5 defaults to ``path="data"`` and
        ``serialize_meta=True`` (keeps units, masks and meta).

    Raises
    ------
    TypeError
        If ``table`` is not an astropy Table.
    TableIOError
        If the file exists and ``overwrite`` is False, the folder does not exist or is not
        writable, the format is unknown, or astropy cannot write the table in that format.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from gpm_astro.io import read_table, write_table
    >>> path = os.path.join(tempfile.mkdtemp(), "images.h5")
    >>> write_table(Table({"cutout": np.zeros((2, 3, 152, 152), np.float32)}), path)
    >>> read_table(path)["cutout"].shape
    (2, 3, 152, 152)
    """
    if not isinstance(table, Table):
        msg = f"table must be an astropy.table.Table, got {type(table).__name__}"
        raise TypeError(msg)
    path = _check_path(path)
    fmt = _format_for(path, format)
    if not isinstance(overwrite, bool):
        msg = f"overwrite must be True or False, got {overwrite!r}"
        raise TableIOError(msg)
    if path.exists() and not overwrite:
        msg = f"{str(path)!r} exists; pass overwrite=True to replace it"
        raise TableIOError(msg)
    if path.is_dir():
        msg = f"cannot write table to {str(path)!r}: it is a folder"
        raise TableIOError(msg)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        msg = f"cannot write {str(path)!r}: folder {str(folder)!r} {what}"
        raise TableIOError(msg)

    if fmt == "hdf5":
        kwargs.setdefault("path", HDF5_PATH)
        kwargs.setdefault("serialize_meta", True)
    if any(getattr(table[name], "dtype", None) == object for name in table.colnames):
        table = Table(table, copy=False)  # new columns over the same data: the input is kept
        text_objects_to_str(table)  # pyvo's char(*) columns, which FITS and HDF5 cannot store
    to_write = with_fits_meta(table) if fmt == "fits" else table
    nonstandard = nonstandard_fits_units(table) if fmt == "fits" else {}
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".gz") else path.suffix
    try:
        handle, temp_name = partial_file(path, suffix=suffix)
    except OSError as exc:
        msg = f"cannot write in folder {str(folder)!r}: {exc}"
        raise TableIOError(msg) from exc
    os.close(handle)
    try:
        with _table_io_errors("write", path, fmt):
            to_write.write(temp_name, format=fmt, overwrite=True, **kwargs)
            if nonstandard:
                write_nonstandard_units(temp_name, nonstandard)
            os.chmod(temp_name, new_file_mode())
            os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


@contextlib.contextmanager
def _table_io_errors(action, path, fmt):
    """Turn what astropy raises while reading or writing ``path`` into a `TableIOError`."""
    try:
        yield
    except TableIOError:
        raise  # ours already names the path and says what is wrong
    except ImportError as exc:
        doing = {"read": "reading", "write": "writing"}[action]
        msg = f"{doing} {str(path)!r} as {fmt} needs a package that is missing: {exc}"
        raise TableIOError(msg) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"cannot {action} {str(path)!r} as {fmt}: {exc}"
        raise TableIOError(msg) from exc


@contextlib.contextmanager
def _large_csv_fields():
    """ECSV stores a cutout (3 x 152 x 152 numbers) in one CSV field: lift csv's size limit."""
    previous = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_umask():
    current = os.umask(0o022)
    os.umask(current)
    return current


_UMASK = _read_umask()  # read once: os.umask can only be read by setting it


def new_file_mode():
    """The permission bits a plain ``open`` would give a new file (mkstemp gives 0600)."""
    return 0o666 & ~_UMASK


def writable_directory(directory, what="output directory"):
    """Create ``directory`` if needed and return it as a Path, checked writable.

    Raises
    ------
    ParameterError
        Naming ``what`` and the folder, when it cannot be created or written to.
    """
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the {what} {str(directory)!r}: {exc.strerror or exc}"
        raise ParameterError(msg) from exc
    if not os.access(path, os.W_OK):
        msg = f"the {what} {str(directory)!r} is not writable"
        raise ParameterError(msg)
    return path


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same folder (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


@contextlib.contextmanager
def atomic_file(path, *, suffix=".part"):
    """Yield the name of a hidden partial file next to ``path`` (see `partial_file`) to write.

    When the block ends normally the file gets the permissions a plain ``open`` gives and
    replaces ``path`` in one step; when it raises, the partial file is removed. Readers of
    ``path`` therefore never see a half-written file.
    """
    fd, tmp = partial_file(path, suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _hdf5_has(path, dataset):
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return dataset in handle
    except OSError:
        return False


def partial_file(path, *, suffix=".part"):
    """Open a hidden partial file next to ``path``, after removing the stale ones.

    The name is ``.<name>.<pid>.<random><suffix>``: the writing process's id is in it, so a
    later writer of the same ``path`` can tell a partial left by a killed process (removed,
    see `remove_stale_partials`) from one another live process is writing (kept).

    Returns
    -------
    (int, str)
        An open file descriptor (mode 0600, as `tempfile.mkstemp`) and the file's path.
    """
    path = Path(path)
    remove_stale_partials(path)
    return tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix,
                            dir=path.parent if str(path.parent) else ".")


def remove_stale_partials(path):
    """Delete the partial files of ``path`` whose writing process no longer runs.

    A run killed while writing (SIGKILL, the OOM killer, a power cut) leaves its hidden partial
    file behind; the next write of the same ``path`` calls this, so none outlives that run.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    # .<name>.<pid>.<8 random characters from tempfile><suffix>
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[a-z0-9_]{{8}}(\..*)?$")
    return [Path(name) for name in remove_files_of_dead_processes(folder, pattern)]
