"""Helpers shared by the Table-in / Table-out functions."""

import datetime
import warnings

import astropy.units as u
import numpy as np
from astropy.table import Table

from .exceptions import EmptyResultWarning, ParameterError, SchemaError

__all__ = ["require_table", "require_columns", "resolve_columns", "optional_column",
           "with_column_names",
           "require_positive_int", "record_step", "package_version", "warn_empty", "meta_value",
           "text_objects_to_str",
           "missing_mask", "numeric_column", "boolean_column", "provenance"]

MISSING_SENTINELS = (-9999, -99)


def package_version():
    from importlib import metadata

    try:
        return metadata.version("gpm-astro")
    except metadata.PackageNotFoundError:
        return "unknown"


def require_table(table, argname="table"):
    """Raise a clear TypeError unless ``table`` is an astropy Table."""
    if not isinstance(table, Table):
        msg = f"{argname} must be an astropy.table.Table, got {type(table).__name__}"
        raise TypeError(msg)


def require_columns(table, names, what="this function"):
    """Raise `SchemaError` naming the missing columns and listing those present.

    Names are compared exactly; `resolve_columns` is the case-insensitive look-up the public
    functions use.
    """
    missing = [n for n in names if n not in table.colnames]
    if missing:
        msg = (f"{what} needs column(s) {missing}, which the table lacks; "
               f"columns present: {table.colnames}")
        raise SchemaError(msg)


def resolve_columns(table, names, what="this function"):
    """Find each wanted column in ``table`` ignoring case; return ``{wanted: table's name}``.

    Archives spell columns their own way (SkyServer's ``specObjID``, ``snMedian_r``, CasJobs'
    ``BPTCLASS``): a column is found whatever its case, and the table keeps its own names.

    Parameters
    ----------
    table : astropy.table.Table
    names : iterable of str
        The columns wanted, as the caller spells them.
    what : str
        Who needs them, for the error message.

    Returns
    -------
    dict
        Each wanted name mapped to the name the table uses for it.

    Raises
    ------
    SchemaError
        A column is missing (the message lists those present), or two columns of the table
        differ only in case from a wanted name (the message names both): which one was meant
        cannot be known.

    Examples
    --------
    >>> from astropy.table import Table
    >>> t = Table({"specObjID": [1], "snMedian_r": [9.0], "BPTCLASS": [1]})
    >>> resolve_columns(t, ["specobjid", "bptclass"])
    {'specobjid': 'specObjID', 'bptclass': 'BPTCLASS'}
    >>> resolve_columns(Table({"z": [0.1], "Z": [8.9]}), ["z"])
    Traceback (most recent call last):
    ...
    gpm_astro.exceptions.SchemaError: this function needs column 'z', but the table has ['z', 'Z'], which differ only in case; rename one of them
    """
    by_lower = {}
    for name in table.colnames:
        by_lower.setdefault(name.lower(), []).append(name)
    resolved, missing = {}, []
    for wanted in names:
        found = by_lower.get(str(wanted).lower(), [])
        if len(found) > 1:
            msg = (f"{what} needs column {wanted!r}, but the table has {found}, which differ "
                   f"only in case; rename one of them")
            raise SchemaError(msg)
        if not found:
            missing.append(wanted)
        else:
            resolved[wanted] = found[0]
    if missing:
        msg = (f"{what} needs column(s) {missing}, which the table lacks (compared ignoring "
               f"case); columns present: {table.colnames}")
        for wanted in missing:  # SpecObj's zWarning for galSpecInfo's z_warning
            squashed = str(wanted).lower().replace("_", "")
            near = [n for n in table.colnames if n.lower().replace("_", "") == squashed]
            if near:
                msg += (f"; {near} differ from {wanted!r} only in case and underscores: if "
                        f"that is the column, pass its name")
        raise SchemaError(msg)
    return resolved


def optional_column(table, name, what="this function"):
    """The table's own spelling of the optional column ``name`` (found ignoring case), or None.

    For columns whose absence is allowed but whose presence changes the result (e.g.
    ``preprocess_ok``: a catalogue that spells it ``PREPROCESS_OK`` must not have its failed
    rows predicted as if it had none).

    Raises
    ------
    SchemaError
        If two columns differ from ``name`` only in case (which one was meant cannot be known).

    Examples
    --------
    >>> from astropy.table import Table
    >>> optional_column(Table({"PREPROCESS_OK": [True]}), "preprocess_ok")
    'PREPROCESS_OK'
    >>> optional_column(Table({"z": [0.1]}), "preprocess_ok") is None
    True
    """
    found = [c for c in table.colnames if c.lower() == name.lower()]
    if len(found) > 1:
        msg = (f"{what} reads column {name!r}, but the table has {found}, which differ only in "
               f"case; rename one of them")
        raise SchemaError(msg)
    return found[0] if found else None


def meta_value(meta, key, default, what="this function"):
    """``meta[key]`` found ignoring case, or ``default`` when no key matches.

    A FITS header upper-cases keywords: a table written by astropy or TOPCAT reads back with
    ``BANDS`` where the package wrote ``bands``, and must not be taken for a table without it.

    Raises
    ------
    SchemaError
        If several keys differ from ``key`` only in case and hold different values.

    Examples
    --------
    >>> meta_value({"BANDS": "grz"}, "bands", "grz")
    'grz'
    >>> meta_value({}, "pixel_scale", 0.262)
    0.262
    """
    found = [name for name in meta if isinstance(name, str) and name.lower() == key.lower()]
    if not found:
        return default
    values = [meta[name] for name in found]
    if any(not _same_value(value, values[0]) for value in values[1:]):
        shown = {name: meta[name] for name in found}
        msg = (f"{what} reads meta[{key!r}], but the table meta has {shown}, keys that differ "
               f"only in case with different values; remove the wrong one")
        raise SchemaError(msg)
    return meta[key] if key in found else values[0]


def _same_value(a, b):
    try:
        return bool(np.all(np.asarray(a == b)))
    except Exception:  # values that cannot be compared are not the same
        return False


def text_objects_to_str(table):
    """In place: each one-dimensional object column that holds only text (str, bytes, or None
    and masked cells) becomes a plain str column, masked where it had None or a mask.

    A VOTable's variable-length ``char`` field (Data Lab's ``type``, arraysize ``*``) reads as
    an object column, which FITS, HDF5 and Parquet cannot store and string functions cannot
    strip; as ``str`` it is a column like any other.

    Examples
    --------
    >>> from astropy.table import Table
    >>> t = Table({"type": np.array(["EXP", None, b"PSF"], dtype=object)})
    >>> text_objects_to_str(t)
    >>> t["type"].dtype.kind, t["type"].tolist()
    ('U', ['EXP', None, 'PSF'])
    """
    from astropy.table import Column, MaskedColumn

    for name in table.colnames:
        column = table[name]
        if getattr(column, "dtype", None) is None or column.dtype.kind != "O" or \
                column.ndim != 1:
            continue
        data = np.ma.asanyarray(column)
        mask = np.ma.getmaskarray(data).copy()
        values = np.ma.getdata(data)
        text = []
        for i, value in enumerate(values):
            if mask[i] or value is None:
                mask[i] = True
                text.append("")
            elif isinstance(value, bytes):
                text.append(value.decode("utf-8", errors="replace"))
            elif isinstance(value, str):
                text.append(value)
            else:
                break  # numbers or arrays: not a text column, left as it is
        else:
            info = column.info
            kind = MaskedColumn if mask.any() else Column
            new = kind(np.array(text, dtype=str), name=name, unit=info.unit,
                       description=info.description, meta=info.meta, format=info.format,
                       **({"mask": mask} if mask.any() else {}))
            table.replace_column(name, new)


def with_column_names(table, names, what="this function"):
    """A view of ``table`` whose wanted columns carry the spelling the caller uses.

    A shallow copy (no data copied) with each of ``names`` found by `resolve_columns` and
    renamed to the caller's spelling, so code written for ``snmedian_r`` reads a table that
    says ``snMedian_r``. The caller's output is built from the original table, which keeps
    its own names.

    Raises
    ------
    SchemaError
        As `resolve_columns`.
    """
    resolved = resolve_columns(table, names, what)
    if all(wanted == actual for wanted, actual in resolved.items()):
        return table
    view = Table(table, copy=False)
    for wanted, actual in resolved.items():
        if wanted != actual:
            view.rename_column(actual, wanted)
    return view


def require_positive_int(value, name):
    """Return ``value`` as an int; `ParameterError` naming ``name`` unless it is an integer
    (Python or NumPy, not bool) of at least 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def provenance(meta):
    """Return ``meta['gpm_astro']`` (created empty if absent), checked to be a dict.

    Raises
    ------
    SchemaError
        If ``meta['gpm_astro']`` or its ``steps`` entry has another type (a table whose
        provenance was overwritten by something else).
    """
    info = meta.setdefault("gpm_astro", {})
    if not isinstance(info, dict):
        msg = (f"table meta['gpm_astro'] must be a dict (the package's provenance record), got "
               f"{type(info).__name__}: {info!r:.80}")
        raise SchemaError(msg)
    steps = info.get("steps", [])
    if not isinstance(steps, list):
        msg = (f"table meta['gpm_astro']['steps'] must be a list, got "
               f"{type(steps).__name__}: {steps!r:.80}")
        raise SchemaError(msg)
    return info


def record_step(table, step, **params):
    """Append ``{step, params}`` to ``table.meta['gpm_astro']['steps']`` with version and date."""
    info = provenance(table.meta)
    info["version"] = package_version()
    info["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    info.setdefault("steps", []).append({"step": step, "params": _plain(params)})
    return table


def _plain(value):
    """Make a value safe for ECSV/FITS meta (plain Python types)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "unit") and hasattr(value, "value"):
        return f"{value}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def warn_empty(what):
    warnings.warn(f"{what} returned an empty table", EmptyResultWarning, stacklevel=3)


def missing_mask(column):
    """True where a column is masked, NaN, or a missing-value sentinel (-9999, -99)."""
    data = np.ma.asanyarray(column)
    mask = np.ma.getmaskarray(data).copy()
    values = np.ma.getdata(data)
    if values.dtype.kind in "fc":
        mask |= ~np.isfinite(values)
    if values.dtype.kind in "iuf":
        for sentinel in MISSING_SENTINELS:
            mask |= values == sentinel
    return mask


def _example(values):
    return values.flat[0] if values.size else None


def numeric_column(column, what):
    """A table column as a 1-D float64 array plus its missing mask (see `missing_mask`).

    Parameters
    ----------
    column : astropy Column, MaskedColumn or Quantity
        The column; integers and floats are accepted, booleans, strings and objects are not.
    what : str
        Who asks, for the message (e.g. ``"colour_polynomial"``).

    Returns
    -------
    values : numpy.ndarray
        float64, NaN where the value is missing.
    missing : numpy.ndarray of bool

    Raises
    ------
    SchemaError
        If the column is not one-dimensional or does not hold real numbers; the message names
        the column, its dtype or shape and an example value.
    """
    name = getattr(getattr(column, "info", None), "name", None)
    data = np.ma.asanyarray(column.value if isinstance(column, u.Quantity) else column)
    if data.ndim != 1:
        msg = f"{what}: column {name!r} must be one-dimensional, got shape {data.shape}"
        raise SchemaError(msg)
    values = np.ma.getdata(data)
    if values.dtype.kind not in "iuf":
        msg = (f"{what}: column {name!r} must hold real numbers, got dtype {values.dtype}, "
               f"e.g. {_example(values)!r}")
        raise SchemaError(msg)
    missing = missing_mask(data)
    values = np.array(values, dtype=np.float64)  # a plain array, never a Column with a unit
    values[missing] = np.nan
    return values, missing


def boolean_column(column, what):
    """A one-dimensional boolean column as a bool array (masked values are False).

    Raises
    ------
    SchemaError
        If the column is not one-dimensional or not of boolean dtype: strings such as
        ``"False"`` (a CSV written by another program) are refused, never read as true.
    """
    name = getattr(getattr(column, "info", None), "name", None)
    data = np.ma.asanyarray(column)
    if data.ndim != 1:
        msg = f"{what}: column {name!r} must be one-dimensional, got shape {data.shape}"
        raise SchemaError(msg)
    if data.dtype.kind != "b":
        # the conversion that fits the dtype: an SQL database's 0/1 compared with 'True' would
        # make every row False
        true = "1" if data.dtype.kind in "iuf" else "'True'"
        msg = (f"{what}: column {name!r} must be boolean (True/False), got dtype {data.dtype}, "
               f"e.g. {_example(np.ma.getdata(data))!r}; convert it, e.g. "
               f"table[{name!r}] = table[{name!r}] == {true}")
        raise SchemaError(msg)
    return np.asarray(np.ma.filled(data, False), dtype=bool)
