"""The application catalogue (the paper's Table 2 columns, plus errors and flags)."""

import copy

import numpy as np
from astropy.table import Table

from ..survey_constants import flux_to_magnitude

# columns carried from the test set into the prediction tables
_KEEP_COLUMNS = ("specobjid", "ra", "dec", "release", "brickid", "objid", "z", "split",
                 "lgm_tot_p50", "lgm_fib_p50", "flux_g", "flux_r", "flux_z", "mag_r",
                 "enclosing_radius", "image_row", "cutout_row")

# the paper's Table 2 columns, then our quality columns
CATALOGUE_COLUMNS = ("ra", "dec", "release", "brickid", "objid", "z_phot_median", "mag_r",
                     "Z_pred", "Z_pred_err", "Z_pred_flag", "Z_pred_domain",
                     "Z_pred_domain_flag", "preprocess_flag")
#: quality columns a catalogue has only when the estimator gives them
_OPTIONAL_COLUMNS = ("Z_pred_domain", "Z_pred_domain_flag", "preprocess_flag")
_CATALOGUE_SOURCE_COLUMNS = ("ra", "dec", "release", "brickid", "objid", "z_phot_median",
                             "mag_r", "flux_r", "source_type", "preprocess_ok",
                             "preprocess_flag", "enclosing_radius", "cutout_row")


def make_catalogue(predictions):
    """Build the catalogue of the paper's Table 2 from an application prediction table.

    Parameters
    ----------
    predictions : astropy.table.Table
        Output of `gpm_astro.predict_metallicity` on image-catalogue rows: ``ra``, ``dec``,
        ``release``, ``brickid``, ``objid``, ``z_phot_median``, ``mag_r`` (or ``flux_r``, from
        which ``mag_r = 22.5 - 2.5 log10(flux_r)`` is derived), ``Z_pred``, ``Z_pred_err``,
        ``Z_pred_flag`` and, if present, ``preprocess_flag``.

    Returns
    -------
    astropy.table.Table
        Columns `CATALOGUE_COLUMNS` in that order, one row per input row in input order, with
        units and descriptions. ``mag_r`` is masked where ``flux_r`` is not positive.
        ``Z_pred_domain``, ``Z_pred_domain_flag`` and ``preprocess_flag`` appear when the
        predictions have them; with the domain flag, ``meta['outside_training_domain']``
        counts the predicted galaxies outside the model's training domain.

    Raises
    ------
    SchemaError
        If a needed column is missing.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from gpm_astro.pipeline import make_catalogue
    >>> t = Table({"ra": [1.0], "dec": [2.0], "release": [9010], "brickid": [5], "objid": [7],
    ...            "z_phot_median": [0.1], "flux_r": [10.0], "Z_pred": [8.9],
    ...            "Z_pred_err": [0.1], "Z_pred_flag": ["ok"]})
    >>> cat = make_catalogue(t)
    >>> cat.colnames[:8], round(float(cat["mag_r"][0]), 2)
    (['ra', 'dec', 'release', 'brickid', 'objid', 'z_phot_median', 'mag_r', 'Z_pred'], 20.0)
    """
    import astropy.units as u
    from astropy.table import MaskedColumn

    from ..tables import require_columns, require_table

    require_table(predictions, "predictions")
    needed = ["ra", "dec", "release", "brickid", "objid", "z_phot_median", "Z_pred",
              "Z_pred_err", "Z_pred_flag"]
    if "mag_r" not in predictions.colnames:
        needed.append("flux_r")
    require_columns(predictions, needed, "make_catalogue")
    out = Table(meta=copy.deepcopy(predictions.meta))
    descriptions = {
        "ra": "right ascension (J2000)", "dec": "declination (J2000)",
        "release": "Legacy Survey release (camera and filter set)",
        "brickid": "Legacy Survey brick", "objid": "object number within the brick",
        "z_phot_median": "median photometric redshift",
        "mag_r": "r-band AB magnitude, 22.5 - 2.5 log10(flux_r / nanomaggy)",
        "Z_pred": "predicted gas-phase metallicity 12 + log(O/H)",
        "Z_pred_err": "1-sigma uncertainty of Z_pred",
        "Z_pred_flag": "'ok', or why Z_pred is missing",
        "preprocess_flag": "outcome of cutout preprocessing ('ok' or the rejection reason)",
        "Z_pred_domain": "distance from the model's training domain (above 1: outside it)",
        "Z_pred_domain_flag": "'in', or 'out:' and the domain checks the galaxy fails",
    }
    units = {"ra": u.deg, "dec": u.deg, "mag_r": u.mag, "Z_pred": u.dex, "Z_pred_err": u.dex}
    for name in CATALOGUE_COLUMNS:
        if name == "mag_r" and "mag_r" not in predictions.colnames:
            flux = np.ma.filled(np.ma.asanyarray(predictions["flux_r"]).astype(float), np.nan)
            mag = flux_to_magnitude(getattr(flux, "value", flux))
            column = MaskedColumn(mag, mask=~np.isfinite(mag))
        elif name in _OPTIONAL_COLUMNS and name not in predictions.colnames:
            continue
        else:
            column = predictions[name]
            column = MaskedColumn(column) if hasattr(column, "mask") else column.copy()
        column.name = name
        if name in units:
            column.unit = units[name]
        column.description = descriptions[name]
        out[name] = column
    if "Z_pred_domain_flag" in out.colnames:
        flags = np.asarray(out["Z_pred_domain_flag"]).astype(str)
        predicted = ~np.ma.getmaskarray(np.ma.asanyarray(out["Z_pred"]))
        outside = int(np.sum(predicted & np.char.startswith(flags, "out")))
        out.meta["outside_training_domain"] = {
            "n_predicted": int(predicted.sum()), "n_outside": outside,
            "fraction": outside / max(int(predicted.sum()), 1)}
    return out
