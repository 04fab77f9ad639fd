"""GPM-ResNet's error model: the stochastic spread, scaled and added in quadrature to a constant,
fitted on the validation residuals."""

import numpy as np

#: share of a Gaussian within one sigma: the coverage a calibrated error reaches
ONE_SIGMA = 0.6827


def _combined_error(spread, scale, constant):
    """Per-galaxy error: the scaled stochastic spread added in quadrature to a constant."""
    return np.hypot(scale * np.asarray(spread), constant or 0.0)


def _fit_error_model(residual, spread):
    """Fit ``err = hypot(a * spread, b)`` to validation residuals.

    ``a`` and ``b`` maximise the Gaussian likelihood of the residuals; both are then scaled
    together so that exactly 68.27 % of the validation residuals lie within the error. ``b``
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
