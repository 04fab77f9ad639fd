"""Checks and flags of the cutout tables GPM-ResNet reads."""

import numpy as np

from gpm_astro.exceptions import SchemaError
from gpm_astro.image_checks import check_cutout_unit, cutout_flags
from gpm_astro.tables import boolean_column, meta_value, optional_column


def _table_bands(table):
    """``meta["bands"]`` as one string: ``["g", "r", "z"]`` (which `preprocess_cutouts`
    accepts and keeps) is ``"grz"``, not the 15 characters of its repr. The key is found
    ignoring case (a FITS header gives ``BANDS``)."""
    bands = meta_value(table.meta, "bands", "grz", "GPM-ResNet")
    if isinstance(bands, bytes):
        bands = bands.decode("ascii", errors="replace")
    if isinstance(bands, (list, tuple)) and all(isinstance(b, str) for b in bands):
        return "".join(bands)
    if not isinstance(bands, str):
        msg = (f"table.meta['bands'] must name the cutout planes' bands, e.g. 'grz', got "
               f"{bands!r}")
        raise SchemaError(msg)
    return bands


def _check_cutouts(table, bands, expected_size=None):
    """Return the cutout side after checking the column's shape (n, bands, S, S)."""
    shape = table["cutout"].shape
    check_cutout_unit(table["cutout"], "GPM-ResNet")
    if len(shape) != 4 or shape[1] != len(bands) or shape[2] != shape[3]:
        msg = (f"cutout column must have shape (n, {len(bands)}, S, S) for bands {bands!r}, "
               f"got {shape!r}")
        raise SchemaError(msg)
    if expected_size is not None and shape[2] != expected_size:
        msg = (f"this model was trained on {expected_size} x {expected_size} px cutouts, "
               f"got {shape[2]} x {shape[3]}")
        raise SchemaError(msg)
    return int(shape[2])


def _row_flags(table, rows, images, *, what="GPM-ResNet"):
    """Flags of ``rows`` given their loaded images (a masked array or ndarray): the failed
    preprocessing reason, else the core's verdict on whether the cutout can be a galaxy at all
    (`gpm_astro.image_checks.cutout_flags`: missing, non-float, non-finite, blank, constant,
    with a blank band, absurd or no positive flux). ``what`` names the caller in an error on
    ``preprocess_ok``."""
    flags = np.full(len(rows), "ok", dtype=object)
    ok_name = optional_column(table, "preprocess_ok", what)  # PREPROCESS_OK counts too
    if ok_name is not None:
        ok = boolean_column(table[ok_name][rows], what)
        flag_name = optional_column(table, "preprocess_flag", what)
        if flag_name is not None:
            reasons = np.ma.filled(np.ma.asanyarray(table[flag_name][rows]).astype(str),
                                   "masked")
        else:
            reasons = np.full(len(rows), "failed", dtype=object)
        for i in np.flatnonzero(~ok):  # a masked preprocess_ok whose flag says ok: not "ok"
            flags[i] = "preprocess:" + ("failed" if reasons[i] == "ok" else str(reasons[i]))
    unchecked = flags == "ok"
    if unchecked.any():
        flags[unchecked] = cutout_flags(images[unchecked])
    return flags
