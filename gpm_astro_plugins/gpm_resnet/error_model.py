"""GPM-ResNet's error model: the stochastic spread, scaled and added in quadrature to a constant,
fitted on the calibration residuals; optionally the error shape (`fit_error_shape`): a bias
correction of the prediction and a factor on the error, both functions of the prediction, so that
the coverage holds within quintiles of brightness, size and the true value."""

import numpy as np

#: share of a Gaussian within one sigma: the coverage a calibrated error reaches
ONE_SIGMA = 0.6827
#: most knots of the error's shape over the standardised prediction
MAX_SHAPE_KNOTS = 8
#: calibration rows per knot of the shape (fewer rows, fewer knots; below 2 knots, no shape)
ROWS_PER_SHAPE_KNOT = 400
#: groups the shape's coverage is fitted in: quintiles of each grouping quantity
SHAPE_GROUPS = 5
#: the bias correction may raise the calibration rows' rms error by about this share (a
#: penalty in the fit), and by at most SHIFT_RMS_CAP (the correction is scaled down to it)
SHIFT_RMS_ALLOWANCE = 0.01
SHIFT_RMS_CAP = 0.02
#: smoothing penalties (on squared knot-to-knot differences) of the log-factor and the shift
#: (the shift's in units of the labels' std)
FACTOR_SMOOTHING = 1e-3
SHIFT_SMOOTHING = 0.1


def _combined_error(spread, scale, constant):
    """Per-galaxy error: the scaled stochastic spread added in quadrature to a constant."""
    return np.hypot(scale * np.asarray(spread), constant or 0.0)


def _fit_error_model(residual, spread):
    """Fit ``err = hypot(a * spread, b)`` to calibration residuals.

    ``a`` and ``b`` maximise the Gaussian likelihood of the residuals; both are then scaled
    together so that exactly 68.27 % of the calibration residuals lie within the error. ``b``
    absorbs the scatter the stochastic passes do not see (a galaxy whose passes agree still
    gets an honest error).
    """
    from scipy.optimize import minimize

    residual = np.asarray(residual, dtype=float)
    spread = np.asarray(spread, dtype=float)
    rms = float(np.sqrt(np.mean(residual ** 2))) or 1e-6

    def negative_log_likelihood(log_params):
        a, b = np.exp(log_params)
        variance = (a * spread) ** 2 + b ** 2 + 1e-12
        return float(np.sum(np.log(variance) + residual ** 2 / variance))

    start = np.log([1.0, 0.5 * rms])
    a, b = np.exp(minimize(negative_log_likelihood, start, method="Nelder-Mead").x)
    ratio = residual / np.maximum(_combined_error(spread, a, b), 1e-12)
    factor = float(np.quantile(ratio, ONE_SIGMA))
    return float(a * factor), float(b * factor)


def error_shape_shift(prediction, shape):
    """The shape's bias correction, to add to each prediction: piecewise linear in the
    standardised prediction (constant beyond the end knots). 0 for ``shape=None`` and for shapes
    saved before the correction existed."""
    prediction = np.asarray(prediction, dtype=float)
    if shape is None or "shift" not in shape:
        return np.zeros_like(prediction)
    u = (prediction - shape["centre"]) / shape["scale"]
    return np.interp(u, shape["knots"], shape["shift"]) * shape["scale"]


def error_shape_factor(prediction, err, shape):
    """Factor on the error ``err`` of each prediction (before the shape's bias correction,
    `error_shape_shift`): ``exp`` of the shape's piecewise-linear log-scale at the
    standardised prediction ``(prediction - centre) / scale`` (constant beyond the end knots),
    times ``(err / err_reference) ** err_power``. 1 for ``shape=None``."""
    prediction = np.asarray(prediction, dtype=float)
    if shape is None:
        return np.ones_like(prediction)
    u = (prediction - shape["centre"]) / shape["scale"]
    power = np.log(np.asarray(err, dtype=float) / shape["err_reference"]) * shape["err_power"]
    return np.exp(np.interp(u, shape["knots"], shape["log_scale"]) + power)


def _quintile_codes(values):
    """Group index 0-4 of each value by the quintiles of ``values`` (NaN: -1)."""
    values = np.asarray(values, dtype=float)
    codes = np.full(len(values), -1)
    finite = np.isfinite(values)
    if finite.sum() >= SHAPE_GROUPS:
        edges = np.quantile(values[finite], np.linspace(0, 1, SHAPE_GROUPS + 1)[1:-1])
        codes[finite] = np.searchsorted(edges, values[finite], side="right")
    return codes


def fit_error_shape(prediction, truth, err, groups, *, centre, scale):
    """Fit the error shape: a bias correction of the prediction and a factor on its error,
    both over the prediction, so that the coverage is 68.27 % within groups.

    A posterior-mean prediction is pulled towards the middle of the training labels: a galaxy
    whose true value is extreme has a larger error than its own error estimate says, one near
    the labels' mode a smaller one, so the coverage of ``|pred - true| < err`` differs between
    quintiles of the true value (0.57 in the top quintile, 0.80 in the fourth on the mock sky)
    though it is right overall. The shape replaces the prediction by ``pred + d(u)`` and its
    error by ``err * exp(s(u))``; ``d`` and ``s`` are piecewise linear in the standardised
    prediction ``u`` with knots at quantiles of ``u``, and are fitted together so that the
    coverage within each quintile of every grouping quantity (the true value, and e.g.
    magnitude and size) and overall is as close to 68.27 % as they allow (least squares of a
    smoothed coverage), with both kept smooth and the correction ``d`` allowed to raise the rms
    error of the rows by about ``SHIFT_RMS_ALLOWANCE`` (and scaled down if it raises it by more
    than ``SHIFT_RMS_CAP``); then ``s`` is shifted so that exactly
    68.27 % of the rows are covered. Undoing part of the pull at the ends lets the factor stay
    flat, so the errors keep ranking galaxies by their own noise (docs/gpm_resnet.rst).
    Group-conditional (Mondrian-style) calibration: only rows of the calibration split, which
    train no weight and are not reported on, may be given.

    Parameters
    ----------
    prediction, truth : numpy.ndarray
        The calibration rows' predictions and true values.
    err : numpy.ndarray
        Their error before the shape (positive).
    groups : dict of str to numpy.ndarray
        Grouping quantities per row (NaN: in no group of that quantity).
    centre, scale : float
        Mean and std of the training labels: the shape works on ``(pred - centre) / scale``.

    Returns
    -------
    dict or None
        ``{"centre", "scale", "knots", "log_scale", "shift" (in units of ``scale``),
        "err_reference", "err_power" (0: kept for models saved with an older shape),
        "groups" (names), "n_rows"}`` (JSON), or None when there are too few rows for two
        knots (``ROWS_PER_SHAPE_KNOT`` a knot).
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    prediction = np.asarray(prediction, dtype=float)
    truth = np.asarray(truth, dtype=float)
    err = np.asarray(err, dtype=float)
    scale = float(scale) if scale > 0 else 1.0
    u = (prediction - float(centre)) / scale
    n_knots = min(MAX_SHAPE_KNOTS, len(u) // ROWS_PER_SHAPE_KNOT)
    if n_knots < 2:
        return None
    knots = np.quantile(u, np.linspace(0, 1, n_knots))
    if np.any(np.diff(knots) <= 0):
        return None
    # hat-function basis: basis @ values interpolates the knot values at each row
    position = np.clip(np.searchsorted(knots, u, side="right") - 1, 0, n_knots - 2)
    weight = np.clip((u - knots[position]) / (knots[position + 1] - knots[position]), 0, 1)
    basis = np.zeros((len(u), n_knots))
    basis[np.arange(len(u)), position] = 1 - weight
    basis[np.arange(len(u)), position + 1] = weight
    members = [np.ones(len(u), dtype=bool)]
    for values in groups.values():
        codes = _quintile_codes(values)
        members.extend(codes == code for code in range(SHAPE_GROUPS) if np.any(codes == code))
    rms_before = float(np.sqrt(np.mean((prediction - truth) ** 2))) or 1e-12

    def shaped(params):
        log_scale, shift = params[:n_knots], params[n_knots:]
        return prediction + scale * (basis @ shift), err * np.exp(basis @ log_scale)

    def loss(params):
        shifted, scaled = shaped(params)
        residual = np.abs(shifted - truth)
        # a smoothed coverage (0.1 of each error wide), so the loss has a gradient
        hit = expit((scaled - residual) / (0.1 * scaled))
        deviation = np.array([hit[m].mean() for m in members]) - ONE_SIGMA
        excess = np.sqrt(np.mean(residual ** 2)) / rms_before - 1 - SHIFT_RMS_ALLOWANCE
        return float(np.sum(deviation ** 2)
                     + FACTOR_SMOOTHING * np.sum(np.diff(params[:n_knots]) ** 2)
                     + SHIFT_SMOOTHING * np.sum(np.diff(params[n_knots:]) ** 2)
                     + 10 * max(excess, 0.0) ** 2)

    params = minimize(loss, np.zeros(2 * n_knots), method="L-BFGS-B").x
    # the penalty is soft: on few rows the correction can overreach, so it is scaled down
    # until the rms rises by at most SHIFT_RMS_CAP
    def rms_rise(factor):
        shifted = prediction + factor * scale * (basis @ params[n_knots:])
        return np.sqrt(np.mean((shifted - truth) ** 2)) / rms_before - 1

    if rms_rise(1.0) > SHIFT_RMS_CAP:
        low, high = 0.0, 1.0
        for _ in range(40):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if rms_rise(middle) <= SHIFT_RMS_CAP else (low, middle)
        params[n_knots:] *= low
    shifted, scaled = shaped(params)
    ratio = np.abs(shifted - truth) / scaled
    log_scale = params[:n_knots] + np.log(float(np.quantile(ratio, ONE_SIGMA)))
    return {"centre": float(centre), "scale": scale, "knots": knots.tolist(),
            "log_scale": log_scale.tolist(), "shift": params[n_knots:].tolist(),
            "err_reference": float(np.median(err)), "err_power": 0.0,
            "groups": list(groups), "n_rows": int(len(u))}
