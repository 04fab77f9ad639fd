"""Helpers shared by the Table-in / Table-out functions."""

import datetime
import warnings

import numpy as np
from astropy.table import Table

from .exceptions import EmptyResultWarning, ParameterError, SchemaError

__all__ = ["require_table", "require_columns", "require_positive_int", "record_step",
           "package_version", "warn_empty", "missing_mask"]

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
    """Raise `SchemaError` naming the missing columns and listing those present."""
    missing = [n for n in names if n not in table.colnames]
    if missing:
        msg = (f"{what} needs column(s) {missing}, which the table lacks; "
               f"columns present: {table.colnames}")
        raise SchemaError(msg)


def require_positive_int(value, name):
    """Return ``value`` as an int; `ParameterError` naming ``name`` unless it is an integer
    (Python or NumPy, not bool) of at least 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def record_step(table, step, **params):
    """Append ``{step, params}`` to ``table.meta['gpm_astro']['steps']`` with version and date."""
    info = table.meta.setdefault("gpm_astro", {})
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
