"""The seeing correction of GPM-ResNet's predictions.

The network sees a galaxy only through the PSF, and is not told the PSF: in poorer seeing a
galaxy looks larger and smoother, and the network reads it as metal-poorer. On the mock sky
the network's error against the noise-free posterior mean ran from +0.024 dex in the best fifth
of the seeing to -0.025 dex in the worst (docs/gpm_resnet.rst). The catalogue gives each
galaxy's PSF FWHM (the Tractor column ``psfsize``), so the trend is removed after the network:
``Z_pred += intercept + slope * (FWHM - reference)``, fitted by least squares on the
calibration rows (which train no weight and are not reported on), before the errors are
calibrated on the corrected residuals.
"""

import numpy as np

from gpm_astro.exceptions import SchemaError

#: the catalogue column with the PSF FWHM (arcsec), one value per band or one in all
SEEING_COLUMN = "psfsize"
#: flag of a row whose FWHM is missing, non-finite or not positive (a corrected model cannot
#: predict it)
BAD_SEEING_FLAG = "bad_psfsize"
#: the band whose PSF FWHM is used (the others when the table has no r band)
SEEING_BAND = "r"
#: fewest calibration rows with a usable FWHM for a correction to be fitted
MIN_SEEING_ROWS = 200
#: smallest spread (std, arcsec) of the calibration rows' FWHM for a slope to be fitted
MIN_SEEING_SPREAD = 0.02
#: the FWHM is clipped to these quantiles of the calibration rows' FWHM (no extrapolation)
SEEING_RANGE_QUANTILES = (0.005, 0.995)


def table_seeing(table, rows, bands):
    """PSF FWHM (arcsec) of ``rows`` in `SEEING_BAND` (NaN where masked, non-finite or not
    positive, as the Tractor's 0 for a band without exposures), or None when the table has
    neither a `SEEING_COLUMN` column (one value a row, or one a band as in the image archive)
    nor the Tractor's per-band ``psfsize_r`` (as Data Lab's ``ls_dr9.tractor`` gives it); names
    are compared ignoring case."""
    names = {c.lower(): c for c in table.colnames}
    per_band = f"{SEEING_COLUMN}_{SEEING_BAND}"
    if SEEING_COLUMN in names:
        column = table[names[SEEING_COLUMN]]
    elif per_band in names:
        column = table[names[per_band]]
    else:
        return None
    values = np.ma.filled(np.ma.asanyarray(column[rows]).astype(float), np.nan)
    if values.ndim == 2:
        if values.shape[1] != len(bands):
            msg = (f"{SEEING_COLUMN} has {values.shape[1]} values a row, the table's bands "
                   f"are {bands!r}")
            raise SchemaError(msg)
        values = (values[:, bands.index(SEEING_BAND)] if SEEING_BAND in bands
                  else np.mean(values, axis=1))
    elif values.ndim != 1:
        raise SchemaError(f"{SEEING_COLUMN} must hold one value a row or one a band, got shape "
                          f"{column.shape!r}")
    values = np.asarray(values, dtype=float)
    values[~(np.isfinite(values) & (values > 0))] = np.nan
    return values


def fit_seeing_correction(value, target, seeing):
    """The linear correction of predictions ``value`` in the seeing, fitted on calibration rows.

    Returns ``{"column", "band", "reference", "intercept", "slope", "range", "n_rows"}``
    (JSON), or None when ``seeing`` is None, fewer than `MIN_SEEING_ROWS` rows have a usable
    FWHM, or their FWHM spreads by less than `MIN_SEEING_SPREAD` (nothing to fit a slope on).
    """
    if seeing is None:
        return None
    value, target = np.asarray(value, dtype=float), np.asarray(target, dtype=float)
    usable = np.isfinite(seeing) & np.isfinite(value) & np.isfinite(target)
    if usable.sum() < MIN_SEEING_ROWS or np.std(seeing[usable]) < MIN_SEEING_SPREAD:
        return None
    fwhm = seeing[usable]
    reference = float(np.median(fwhm))
    design = np.column_stack([np.ones(len(fwhm)), fwhm - reference])
    (intercept, slope), *_ = np.linalg.lstsq(design, target[usable] - value[usable], rcond=None)
    low, high = np.quantile(fwhm, SEEING_RANGE_QUANTILES)
    return {"column": SEEING_COLUMN, "band": SEEING_BAND, "reference": reference,
            "intercept": float(intercept), "slope": float(slope),
            "range": [float(low), float(high)], "n_rows": int(usable.sum())}


def seeing_offset(seeing, correction):
    """What the correction adds to each prediction (dex): zero without a correction; the FWHM
    is clipped to the calibration rows' range, and a NaN (a calibration row without a usable
    FWHM; prediction flags such rows instead) counts as the reference FWHM."""
    seeing = np.asarray(seeing, dtype=float)
    if correction is None:
        return np.zeros(len(seeing))
    fwhm = np.where(np.isfinite(seeing), np.clip(seeing, *correction["range"]),
                    correction["reference"])
    return correction["intercept"] + correction["slope"] * (fwhm - correction["reference"])
