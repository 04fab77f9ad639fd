"""The colour-metallicity relation (CMR): a bivariate polynomial in two colours (paper eq. 4).

``m = 22.5 - 2.5 log10(flux / nanomaggy)`` for g, r, z; ``x = g - r``, ``y = r - z``;
``Z = sum c_ij x**i y**j`` over ``i + j <= order`` (6 terms for order 2, 10 for order 3),
fitted by least squares on a training table.
"""

import numpy as np
from astropy.table import Column, MaskedColumn, Table

from gpm_astro.base import Estimator
from gpm_astro.exceptions import GPMAstroError, ParameterError
from gpm_astro.survey_constants import (ZERO_POINT, flux_to_magnitude, polynomial_design,
                                        polynomial_exponents)
from gpm_astro.tables import numeric_column, require_table, with_column_names
from gpm_astro.units import in_nanomaggies

__all__ = ["ColourPolynomial", "polynomial_terms", "design_matrix", "flux_to_mag"]

#: file and format of a saved polynomial
MODEL_FILE = "colour_polynomial.json"
MODEL_FORMAT = "gpm_astro.colour_polynomial/1"
#: AB zero point of Legacy Survey nanomaggies
NANOMAGGY_ZERO_POINT = ZERO_POINT
#: AB magnitude of a flux in nanomaggies; NaN where the flux is not positive and finite
flux_to_mag = flux_to_magnitude


def polynomial_terms(order):
    """Exponents (i, j) of the terms ``x**i y**j`` with ``i + j <= order``, by total degree.

    Examples
    --------
    >>> from gpm_astro_plugins.colour_polynomial.estimator import polynomial_terms
    >>> polynomial_terms(2)
    [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    """
    return polynomial_exponents(2, order)


def design_matrix(x, y, terms):
    """Columns ``x**i * y**j`` for each (i, j) in ``terms``; shape (len(x), len(terms))."""
    terms = [tuple(t) for t in terms]
    order = max((i + j for i, j in terms), default=0)
    column = {term: k for k, term in enumerate(polynomial_exponents(2, order))}
    design = polynomial_design(np.column_stack([np.ravel(x), np.ravel(y)]), order)
    return design[:, [column[term] for term in terms]]


class ColourPolynomial(Estimator):
    """Z from the g - r and r - z colours by a full bivariate polynomial (paper section 4.1).

    Parameters
    ----------
    order : int, optional
        Total degree of the polynomial, 2 (6 terms) or 3 (10 terms), as in the paper.
    flux_columns : sequence of 3 str, optional
        The g, r and z flux columns, in nanomaggies.
    extrapolate : bool, optional
        When False (default), rows whose colours lie outside the box spanned by the training
        colours are masked with the flag ``colour_out_of_range`` instead of extrapolating the
        polynomial.

    Attributes
    ----------
    coef_ : numpy.ndarray
        Coefficients, in the order of ``terms_``.
    terms_ : list of (int, int)
        Exponents (i, j) of ``x**i y**j``.
    residual_sigma_ : float
        Standard deviation of the training residuals (``n - n_terms`` degrees of freedom).
    coef_cov_ : numpy.ndarray
        Covariance of the coefficients, ``residual_sigma_**2 (X^T X)^-1``.
    colour_range_ : numpy.ndarray
        ((x_min, x_max), (y_min, y_max)) of the training colours.
    n_train_ : int
        Training rows used.

    Notes
    -----
    ``Z_pred_err`` is the 1-sigma prediction error of a linear least-squares fit:
    ``sqrt(residual_sigma_**2 + a^T coef_cov_ a)`` with ``a`` the row's polynomial terms.
    Rows with a missing, NaN or non-positive flux get the flag ``nonpositive_flux`` and a
    masked prediction.

    Examples
    --------
    >>> from gpm_astro_plugins.colour_polynomial import ColourPolynomial
    >>> ColourPolynomial(order=3)
    ColourPolynomial(order=3, flux_columns=('flux_g', 'flux_r', 'flux_z'), extrapolate=False)
    """

    name = "colour_polynomial"
    requires_fit = True

    def __init__(self, *, order=2, flux_columns=("flux_g", "flux_r", "flux_z"),
                 extrapolate=False):
        self.order = order
        self.flux_columns = flux_columns
        self.extrapolate = extrapolate

    @property
    def required_columns(self):
        """The flux columns ``predict`` reads."""
        self._validate()
        return tuple(self.flux_columns)

    def _validate(self):
        # an int, not 2.0 (a float order fails deep inside numpy's range)
        if isinstance(self.order, (bool, np.bool_)) or \
                not isinstance(self.order, (int, np.integer)) or self.order not in (1, 2, 3, 4):
            msg = f"order must be 2 or 3 (1 and 4 allowed for experiments), got {self.order!r}"
            raise ParameterError(msg)
        columns = self.flux_columns
        if not isinstance(columns, (list, tuple)) or len(columns) != 3 or \
                not all(isinstance(c, str) for c in columns):
            msg = (f"flux_columns must be three column names (g, r, z fluxes), e.g. "
                   f"('flux_g', 'flux_r', 'flux_z'), got {columns!r}")
            raise ParameterError(msg)

    def colours(self, table):
        """Return (g - r, r - z, flag) for every row; flag is ``ok`` or ``nonpositive_flux``."""
        table = with_column_names(table, list(self.flux_columns), "colour_polynomial")
        mags = []
        bad = np.zeros(len(table), dtype=bool)
        for column in self.flux_columns:
            flux, missing = numeric_column(table[column], "colour_polynomial")
            # a magnitude column (unit mag) is refused, not read as fluxes; Jy is converted
            flux = in_nanomaggies(flux, getattr(table[column], "unit", None),
                                  f"colour_polynomial: column {column!r}")
            bad |= missing
            mag = flux_to_mag(flux)
            bad |= ~np.isfinite(mag)
            mags.append(mag)
        g, r, z = mags
        flags = np.where(bad, "nonpositive_flux", "ok").astype(object)
        return g - r, r - z, flags

    def describe(self):
        """``colour polynomial, order N``."""
        return f"colour polynomial, order {self.order}"

    def fit(self, table, *, target="oh_p50", validation=None):
        """Least-squares fit of the polynomial to ``target`` on the usable rows of ``table``.

        Rows with a non-positive or missing flux, or a missing target, are left out.

        Raises
        ------
        SchemaError
            If a flux column or ``target`` is missing.
        ParameterError
            If fewer usable rows than polynomial terms remain, or ``order`` is invalid.
        """
        require_table(table)
        self._validate()
        table = with_column_names(table, list(self.flux_columns) + [target],
                                  "ColourPolynomial.fit")
        x, y, flags = self.colours(table)
        z_true, z_missing = numeric_column(table[target], "ColourPolynomial.fit")
        usable = (flags == "ok") & ~z_missing
        terms = polynomial_terms(self.order)
        n_used = int(usable.sum())
        if n_used <= len(terms):
            msg = (f"order {self.order} needs more than {len(terms)} usable training rows, got "
                   f"{n_used} (of {len(table)})")
            raise ParameterError(msg)
        design = design_matrix(x[usable], y[usable], terms)
        coef, _, rank, _ = np.linalg.lstsq(design, z_true[usable], rcond=None)
        if rank < len(terms):
            msg = (f"the training colours are degenerate: rank {rank} < {len(terms)} terms "
                   f"for order {self.order}")
            raise ParameterError(msg)
        residuals = z_true[usable] - design @ coef
        sigma = float(np.sqrt(np.sum(residuals**2) / (n_used - len(terms))))
        self.coef_ = coef
        self.terms_ = terms
        self.residual_sigma_ = sigma
        self.coef_cov_ = sigma**2 * np.linalg.inv(design.T @ design)
        self.colour_range_ = np.array([[x[usable].min(), x[usable].max()],
                                       [y[usable].min(), y[usable].max()]])
        self.n_train_ = n_used
        self.target_ = target
        return self

    def predict(self, table):
        """Z_pred, Z_pred_err and Z_pred_flag for every row, in order.

        Raises
        ------
        GPMAstroError
            If the estimator has not been fitted.
        SchemaError
            If a flux column is missing.
        """
        require_table(table)
        if not hasattr(self, "coef_"):
            msg = ("this ColourPolynomial is not fitted: call fit(training_table) first (or "
                   "pass fit_table= to predict_metallicity)")
            raise GPMAstroError(msg)
        x, y, flags = self.colours(table)
        if not self.extrapolate:
            (x_lo, x_hi), (y_lo, y_hi) = self.colour_range_
            outside = (flags == "ok") & ((x < x_lo) | (x > x_hi) | (y < y_lo) | (y > y_hi))
            flags[outside] = "colour_out_of_range"
        good = flags == "ok"
        values = np.full(len(table), np.nan)
        errors = np.full(len(table), np.nan)
        if good.any():
            design = design_matrix(x[good], y[good], self.terms_)
            values[good] = design @ self.coef_
            variance = np.einsum("ij,jk,ik->i", design, self.coef_cov_, design)
            errors[good] = np.sqrt(self.residual_sigma_**2 + variance)
        return Table({
            "Z_pred": MaskedColumn(values, mask=~good, unit="dex"),
            "Z_pred_err": MaskedColumn(errors, mask=~good, unit="dex"),
            "Z_pred_flag": Column(flags.astype(str)),
        })

    def save(self, directory):
        """Write the fitted polynomial to ``directory/colour_polynomial.json``.

        Returns
        -------
        pathlib.Path
            The file written; `load` reads it (or its folder) back.
        """
        import json
        from pathlib import Path

        from gpm_astro.io import atomic_write_bytes

        if not hasattr(self, "coef_"):
            raise GPMAstroError("this ColourPolynomial is not fitted: nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"format": MODEL_FORMAT, "params": {k: (list(v) if isinstance(v, tuple) else v)
                                                   for k, v in self.get_params().items()},
                 "coef": self.coef_.tolist(), "terms": [list(t) for t in self.terms_],
                 "residual_sigma": self.residual_sigma_, "coef_cov": self.coef_cov_.tolist(),
                 "colour_range": self.colour_range_.tolist(), "n_train": self.n_train_,
                 "target": self.target_}
        path = directory / MODEL_FILE
        atomic_write_bytes(path, json.dumps(state, indent=1).encode())
        return path

    @classmethod
    def load(cls, path, **params):
        """Read a polynomial written by `save` (the file or its folder).

        Raises
        ------
        WeightsError
            If the file is missing or is not a saved colour polynomial.
        """
        import json
        from pathlib import Path

        from gpm_astro.exceptions import WeightsError

        path = Path(path)
        path = path / MODEL_FILE if path.is_dir() else path
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise WeightsError(f"cannot read a colour polynomial from {str(path)!r}: {exc}") \
                from exc
        if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
            msg = f"{str(path)!r} is not a saved colour polynomial ({MODEL_FORMAT})"
            raise WeightsError(msg)
        saved = dict(state["params"], flux_columns=tuple(state["params"]["flux_columns"]))
        estimator = cls(**{**saved, **params})
        estimator.coef_ = np.asarray(state["coef"])
        estimator.terms_ = [tuple(t) for t in state["terms"]]
        estimator.residual_sigma_ = float(state["residual_sigma"])
        estimator.coef_cov_ = np.asarray(state["coef_cov"])
        estimator.colour_range_ = np.asarray(state["colour_range"])
        estimator.n_train_ = int(state["n_train"])
        estimator.target_ = state["target"]
        return estimator
