"""Accuracy metrics of a metallicity (or mass) prediction, as defined in the paper (eq. 3).

On the residual ``delta = pred - true``:

- ``mu``: the mean of delta (the bias);
- ``sigma``: the standard deviation of delta (population form, ``ddof=0``);
- ``nmad``: ``1.4826 * median(|delta - median(delta)|)``, robust against outliers.

Every statistic is computed once on the whole set. The paper's published code averaged
statistics over test batches and divided the NMAD by the number of batches, which is why the
printed NMAD values (0.004 dex) are about 20 times too small (see METHOD.md section 7).
"""

import numpy as np
from astropy.table import Table

from .exceptions import ParameterError
from .survey_constants import TREMONTI_MASS_RANGE
from .survey_constants import tremonti_metallicity as tremonti_mzr

__all__ = ["NMAD_SCALE", "nmad", "summarize", "error_calibration", "reliability_curve",
           "binned_statistics",
           "valid_pairs", "tremonti_mzr", "TREMONTI_MASS_RANGE"]

#: Consistency constant: NMAD equals sigma for a normal distribution.
NMAD_SCALE = 1.4826

def _as_float_array(values, name):
    array = np.ma.asanyarray(values)
    if array.ndim != 1:
        msg = f"{name} must be one-dimensional, got shape {array.shape!r}"
        raise ParameterError(msg)
    mask = np.ma.getmaskarray(array)
    data = np.asarray(np.ma.getdata(array), dtype=float)
    return data, mask


def valid_pairs(pred, true, *extra):
    """Return the entries of ``pred``, ``true`` (and ``extra`` arrays) usable for metrics.

    An entry is usable when every array holds an unmasked, finite value there and ``true``
    is not a missing-value sentinel (-9999 or -99).

    Returns
    -------
    arrays : tuple of numpy.ndarray
        ``pred``, ``true`` and each ``extra`` array restricted to the usable entries.
    usable : numpy.ndarray
        Boolean mask over the input entries.
    """
    arrays = [_as_float_array(pred, "pred"), _as_float_array(true, "true")]
    arrays += [_as_float_array(a, f"extra[{i}]") for i, a in enumerate(extra)]
    lengths = {len(data) for data, _ in arrays}
    if len(lengths) != 1:
        msg = f"pred, true and extra arrays must have the same length, got {sorted(lengths)}"
        raise ParameterError(msg)
    usable = np.ones(len(arrays[0][0]), dtype=bool)
    for data, mask in arrays:
        usable &= ~mask & np.isfinite(data)
    true_data = arrays[1][0]
    usable &= (true_data != -9999) & (true_data != -99)
    return tuple(data[usable] for data, _ in arrays), usable


def nmad(delta):
    """Normalised median absolute deviation, eq. 3 of the paper.

    Parameters
    ----------
    delta : array_like
        Residuals ``pred - true``. Masked and non-finite entries are ignored.

    Returns
    -------
    float
        ``1.4826 * median(|delta - median(delta)|)``; NaN for an empty input.

    Examples
    --------
    >>> from gpm_astro.metrics import nmad
    >>> round(nmad([0.0, 0.1, -0.1, 0.2, 5.0]), 4)
    0.1483
    """
    data, mask = _as_float_array(delta, "delta")
    data = data[~mask & np.isfinite(data)]
    if data.size == 0:
        return float("nan")
    return float(NMAD_SCALE * np.median(np.abs(data - np.median(data))))


def error_calibration(pred, true, err):
    """Fraction of galaxies whose true value lies within the quoted error.

    Parameters
    ----------
    pred, true, err : array_like
        Predictions, true values and the per-galaxy 1-sigma errors.

    Returns
    -------
    float
        The fraction with ``|pred - true| < err`` (about 0.683 for calibrated Gaussian errors);
        NaN when no entry is usable.

    Examples
    --------
    >>> from gpm_astro.metrics import error_calibration
    >>> error_calibration([8.9, 9.0, 8.5], [9.0, 9.0, 9.0], [0.2, 0.1, 0.2])
    0.6666666666666666
    """
    (pred_v, true_v, err_v), _ = valid_pairs(pred, true, err)
    if pred_v.size == 0:
        return float("nan")
    return float(np.mean(np.abs(pred_v - true_v) < err_v))


def reliability_curve(pred, true, err, levels=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6827, 0.8,
                                                0.9, 0.95)):
    """Observed against nominal coverage of Gaussian intervals built from the errors.

    Parameters
    ----------
    pred, true, err : array_like
        Predictions, true values and per-galaxy 1-sigma errors.
    levels : sequence of float, optional
        Nominal probabilities p in (0, 1); the interval is ``pred +- k * err`` with
        k = Phi^-1((1 + p) / 2).

    Returns
    -------
    numpy.ndarray
        (len(levels), 2): nominal p and the observed fraction inside (NaN with no usable row).

    Examples
    --------
    >>> import numpy as np
    >>> from gpm_astro.metrics import reliability_curve
    >>> delta = np.random.default_rng(0).normal(0, 0.1, 20000)
    >>> curve = reliability_curve(delta, np.zeros(20000), np.full(20000, 0.1), [0.5, 0.9])
    >>> np.round(curve[:, 1], 2).tolist()
    [0.5, 0.9]
    """
    from scipy.stats import norm

    (pred_v, true_v, err_v), _ = valid_pairs(pred, true, err)
    ratio = np.abs(pred_v - true_v) / err_v
    levels = np.asarray(levels, dtype=float)
    factors = norm.ppf((1.0 + levels) / 2.0)
    observed = [float(np.mean(ratio < k)) if ratio.size else float("nan") for k in factors]
    return np.column_stack([levels, observed])


def summarize(pred, true, err=None):
    """mu, sigma and NMAD of ``pred - true``, computed once on the whole set.

    Parameters
    ----------
    pred, true : array_like
        Predicted and true values (e.g. ``Z_pred`` and ``oh_p50``). Masked, non-finite or
        sentinel (-9999, -99) entries are left out and counted in ``n_excluded``.
    err : array_like, optional
        Per-galaxy errors; adds ``coverage`` (see `error_calibration`) and ``median_err``.

    Returns
    -------
    dict
        ``mu``, ``sigma``, ``nmad``, ``median`` (of delta), ``n`` (used), ``n_excluded``, and
        with ``err`` also ``coverage`` and ``median_err``. Statistics are NaN when ``n == 0``.

    Examples
    --------
    >>> from gpm_astro.metrics import summarize
    >>> stats = summarize([9.0, 9.1, 8.8, 9.3], [9.0, 9.0, 9.0, 9.0])
    >>> round(stats["mu"], 3), round(stats["sigma"], 4), stats["n"]
    (0.05, 0.1803, 4)
    """
    extra = () if err is None else (err,)
    arrays, usable = valid_pairs(pred, true, *extra)
    delta = arrays[0] - arrays[1]
    n = int(delta.size)
    nan = float("nan")
    stats = {
        "mu": float(np.mean(delta)) if n else nan,
        "sigma": float(np.std(delta)) if n else nan,
        "nmad": nmad(delta),
        "median": float(np.median(delta)) if n else nan,
        "n": n,
        "n_excluded": int(usable.size - n),
    }
    if err is not None:
        err_v = arrays[2]
        stats["coverage"] = float(np.mean(np.abs(delta) < err_v)) if n else nan
        stats["median_err"] = float(np.median(err_v)) if n else nan
    return stats


def binned_statistics(pred, true, by, bins, *, err=None, by_name="by"):
    """Bias and scatter of ``pred - true`` in bins of another quantity.

    Parameters
    ----------
    pred, true : array_like
        Predicted and true values.
    by : array_like
        The quantity that defines the bins (e.g. ``true`` itself, or log stellar mass).
    bins : int or array_like
        Number of equal-width bins over the range of ``by``, or the bin edges.
    err : array_like, optional
        Per-galaxy errors; adds a ``coverage`` column.
    by_name : str, optional
        Recorded in the ``quantity`` column.

    Returns
    -------
    astropy.table.Table
        One row per bin: ``quantity``, ``bin_low``, ``bin_high``, ``n``, ``mu``, ``sigma``,
        ``nmad``, ``median`` (and ``coverage``). Empty bins have n = 0 and NaN statistics.

    Raises
    ------
    ParameterError
        If ``bins`` is not a positive integer or an increasing sequence of edges.

    Examples
    --------
    >>> from gpm_astro.metrics import binned_statistics
    >>> t = binned_statistics([1.0, 2.1, 3.0, 3.8], [1, 2, 3, 4], [1, 2, 3, 4], [0, 2.5, 5])
    >>> t["n"].tolist()
    [2, 2]
    """
    extra = (by,) if err is None else (by, err)
    arrays, _ = valid_pairs(pred, true, *extra)
    delta = arrays[0] - arrays[1]
    by_v = arrays[2]
    edges = _bin_edges(by_v, bins)
    # digitize on the inner edges; the last bin includes its upper edge
    index = np.searchsorted(edges, by_v, side="right") - 1
    index[by_v == edges[-1]] = len(edges) - 2
    inside = (index >= 0) & (index < len(edges) - 1)
    rows = []
    for b in range(len(edges) - 1):
        in_bin = inside & (index == b)
        stats = summarize(delta[in_bin], np.zeros(in_bin.sum()),
                          None if err is None else arrays[3][in_bin])
        row = [by_name, edges[b], edges[b + 1], stats["n"], stats["mu"], stats["sigma"],
               stats["nmad"], stats["median"]]
        if err is not None:
            row.append(stats["coverage"])
        rows.append(row)
    names = ["quantity", "bin_low", "bin_high", "n", "mu", "sigma", "nmad", "median"]
    dtypes = [str, float, float, int, float, float, float, float]
    if err is not None:
        names.append("coverage")
        dtypes.append(float)
    return Table(rows=rows, names=names, dtype=dtypes)


def _bin_edges(values, bins):
    if np.isscalar(bins):
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            msg = f"bins must be a positive integer or a sequence of edges, got {bins!r}"
            raise ParameterError(msg)
        if values.size == 0:
            msg = "cannot choose bin edges from an empty set of values; pass the edges"
            raise ParameterError(msg)
        low, high = float(values.min()), float(values.max())
        if low == high:
            low, high = low - 0.5, high + 0.5
        return np.linspace(low, high, int(bins) + 1)
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        msg = f"bin edges must be an increasing sequence of at least 2 values, got {bins!r}"
        raise ParameterError(msg)
    return edges

