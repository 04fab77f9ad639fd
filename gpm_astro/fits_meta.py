"""What a FITS table file cannot hold by itself, kept for `gpm_astro.io` in one keyword.

FITS headers take short upper-case keywords with scalar values and TUNIT only FITS units, and
astropy writes no null for a logical column. `gpm_astro.io.write_table` therefore stores the
whole ``meta``, every column unit (``nmgy``, ``dex``, a unit astropy does not know) and the
masks of boolean columns as YAML inside a JSON string under `FITS_META_KEYWORD`;
`gpm_astro.io.read_table` restores them.
"""

import json
import warnings

import astropy.units as u
import numpy as np
from astropy.io.misc import yaml
from astropy.table import MaskedColumn, Table

from .exceptions import TableIOError
from .units import as_angle_unit

__all__ = ["FITS_META_KEYWORD", "FITS_MASK_SUFFIX", "with_fits_meta", "nonstandard_fits_units",
           "write_nonstandard_units", "parse_nonstandard_units", "restore_fits_meta"]

#: FITS header keyword holding the whole ``meta`` (YAML inside a JSON string).
FITS_META_KEYWORD = "GPMMETA"
#: Suffix of the column that carries a masked boolean column's mask in a FITS file.
FITS_MASK_SUFFIX = "__gpm_mask"


def with_fits_meta(table):
    """A shallow copy a FITS file can hold; the full meta and units go in one keyword.

    FITS headers take only short upper-case keywords with scalar values, and TUNIT only FITS
    units (not ``nmgy``), so ``meta`` and every column unit are also stored as YAML inside a
    JSON string under `FITS_META_KEYWORD`; `read_table` restores them.
    """
    header_meta = {}
    for key, value in table.meta.items():
        is_scalar = isinstance(value, (str, int, float, bool)) and value is not None
        if (isinstance(key, str) and len(key) <= 8 and key.replace("_", "").isalnum()
                and is_scalar):
            header_meta[key.upper()] = value
        elif isinstance(key, str) and key.lower() in ("comments", "history"):
            header_meta[key.upper()] = value
    shallow = Table(table, copy=False)  # new column objects over the same data
    units = {}
    for name in shallow.colnames:
        unit = getattr(shallow[name], "unit", None)
        if unit is None or isinstance(shallow[name], u.Quantity):
            continue
        units[name] = unit.to_string()
        if not _is_fits_unit(unit):
            shallow[name].unit = None  # kept in the keyword (and its TUNIT written by us)
    bool_masks = {}
    for name in list(shallow.colnames):
        column = shallow[name]
        if column.dtype.kind == "b" and np.ma.is_masked(column):
            # FITS logicals have no null that astropy writes: keep the mask in a companion
            companion = f"{name}{FITS_MASK_SUFFIX}"
            shallow[companion] = np.ma.getmaskarray(column)
            shallow[name] = np.asarray(np.ma.filled(column, False))
            bool_masks[name] = companion
    try:
        payload = {"meta": dict(table.meta), "units": units, "bool_masks": bool_masks}
        header_meta[FITS_META_KEYWORD] = json.dumps(yaml.dump(payload))
    except Exception as exc:  # yaml raises its own error types for unsupported objects
        msg = f"table meta cannot be stored in a FITS file: {exc}"
        raise TableIOError(msg) from exc
    shallow.meta = header_meta
    return shallow


def nonstandard_fits_units(table):
    """Column name -> unit string, for the units the FITS standard lacks (``dex``, ``nmgy``,
    one astropy does not know)."""
    units = {}
    for name in table.colnames:
        unit = getattr(table[name], "unit", None)
        if unit is None or isinstance(table[name], u.Quantity):
            continue
        if not _is_fits_unit(unit):
            units[name] = unit.to_string()
    return units


def _is_fits_unit(unit):
    """Whether the FITS standard has ``unit``. Not for a unit astropy does not know (SkyServer's
    ``Log solar masses``): astropy would write its name and warn that it is no FITS unit."""
    if isinstance(unit, u.UnrecognizedUnit):
        return False
    try:
        unit.to_string("fits")
    except ValueError:
        return False
    return True


def write_nonstandard_units(path, units):
    """Write TUNITn for units astropy leaves out of a FITS file, so that any reader (TOPCAT,
    fitsio, astropy) shows them; `read_table` reads them back as units."""
    from astropy.io import fits

    with fits.open(path, mode="update") as hdus:
        header = hdus[1].header
        for index in range(1, header.get("TFIELDS", 0) + 1):
            name = header.get(f"TTYPE{index}")
            if name in units:
                header[f"TUNIT{index}"] = (units[name], "unit outside the FITS standard")


def parse_nonstandard_units(table, path, warn=True):
    """In place: a TUNIT the FITS standard lacks but astropy knows (``dex``) becomes that
    unit, an angle spelt in words (``degrees``) that angle; one astropy does not know keeps
    its UnrecognizedUnit, with astropy's warning."""
    for name in table.colnames:
        unit = getattr(table[name], "unit", None)
        if not isinstance(unit, u.UnrecognizedUnit):
            continue
        try:
            with warnings.catch_warnings():  # astropy's style notes ("multiple slashes")
                warnings.simplefilter("ignore", u.UnitsWarning)
                table[name].unit = u.Unit(unit.name)
        except ValueError:
            angle = as_angle_unit(unit)  # SkyServer's TUNIT 'degrees' for the MPA-JHU ra/dec
            if angle is not None:
                table[name].unit = angle
                continue
            if warn:
                msg = f"{str(path)!r}: column {name!r} has the unknown unit {unit.name!r}"
                warnings.warn(msg, u.UnitsWarning, stacklevel=3)


def restore_fits_meta(table, path):
    try:
        payload = yaml.load(json.loads(table.meta[FITS_META_KEYWORD]))
        meta, units = payload["meta"], payload["units"]
        bool_masks = payload.get("bool_masks", {})
        if not all(isinstance(x, dict) for x in (meta, units, bool_masks)):
            raise TypeError("meta, units and bool_masks must be dicts")
        for name, unit in units.items():
            if name in table.colnames:
                table[name].unit = u.Unit(unit, parse_strict="silent")  # kept as written
        for name, companion in bool_masks.items():
            if name in table.colnames and companion in table.colnames:
                mask = np.asarray(table[companion], dtype=bool)
                table[name] = MaskedColumn(np.asarray(table[name]), mask=mask,
                                           description=table[name].info.description)
                table.remove_column(companion)
    except Exception as exc:  # malformed keyword written by something else
        msg = f"{str(path)!r} has a malformed {FITS_META_KEYWORD} header keyword: {exc}"
        raise TableIOError(msg) from exc
    table.meta = meta
