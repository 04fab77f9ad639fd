"""Metallicity from stellar mass through the Tremonti et al. (2004) relation (paper eq. 5).

``Z = -1.492 + 1.847 x - 0.08026 x**2`` with ``x = log10(M*/Msun)``, valid for
8.5 < x < 11.5 (paper §4.6; the end points are outside) with an intrinsic scatter of about 0.10 dex. The mass comes from a table
column (e.g. the MPA-JHU ``lgm_tot_p50``) or from a mass estimator such as the mass-regression
GPM-ResNet (``gpm_resnet_mass``), whose ``logmstar_pred`` is used.
"""

import astropy.units as u
import numpy as np
from astropy.table import Column, MaskedColumn, Table

from gpm_astro.base import Estimator
from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.metrics import TREMONTI_MASS_RANGE, tremonti_mzr
from gpm_astro.tables import numeric_column, require_table, with_column_names
from gpm_astro.units import known_unit

__all__ = ["MassMetallicity", "tremonti_slope", "log_mass"]


#: unit strings that say a column already holds log10(M*/Msun) (astropy cannot parse some)
_LOG_MASS_UNITS = ("dex", "dex(solmass)", "dex(msun)", "log(msun)", "log(solmass)",
                   "log10(msun)", "log10(solmass)", "[msun]", "[solmass]")


#: a linear stellar mass (solMass) below this is no galaxy: such a column holds log masses
LINEAR_MASS_FLOOR = 1e3


def log_mass(values, unit, where):
    """log10(M*/Msun) from a mass column's ``values`` given in ``unit``.

    No unit, a dimensionless one, ``dex`` or ``dex(Msun)`` (and the spellings of
    ``_LOG_MASS_UNITS``, and any unit astropy does not know that starts with ``log``, ``dex``
    or ``[``) mean the values are log masses already. A linear mass (``solMass``, ``kg``) is
    converted, its non-positive values becoming NaN (missing); one whose values are all below
    `LINEAR_MASS_FLOOR` solar masses (log masses under a linear label) and any other unit are a
    `~gpm_astro.exceptions.SchemaError` naming ``where``.

    Examples
    --------
    >>> import astropy.units as u
    >>> log_mass(np.array([1e10, 0.0]), u.Msun, "column 'mass'").tolist()
    [10.0, nan]
    """
    unit = known_unit(unit)  # a VOTable's dex and Msun (VOUnit's own) are astropy's
    spelt = str(unit).replace(" ", "").lower() if unit is not None else ""
    if unit is None or unit == u.dimensionless_unscaled or unit == u.dex or \
            spelt in _LOG_MASS_UNITS:
        return values
    if isinstance(unit, u.FunctionUnitBase) and unit.physical_unit.is_equivalent(u.Msun):
        return (values * unit).to_value(u.dex(u.Msun))
    if isinstance(unit, u.UnrecognizedUnit) and spelt.startswith(("log", "dex", "[")):
        return values  # log(M_sun), log(M/Msun), logMsun, [Msol]: a log mass however spelt
    if not isinstance(unit, u.UnrecognizedUnit) and not isinstance(unit, u.FunctionUnitBase) \
            and unit.is_equivalent(u.Msun):
        linear = (values * unit).to_value(u.Msun)
        finite = linear[np.isfinite(linear) & (linear > 0)]
        if finite.size and np.max(finite) < LINEAR_MASS_FLOOR:
            msg = (f"{where} has unit {unit}, but its largest value is {np.max(finite):g}: "
                   f"log masses labelled with a linear unit? Give log10(M*/Msun) the unit "
                   f"dex (or none), or masses in solMass")
            raise SchemaError(msg)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(linear > 0, np.log10(np.where(linear > 0, linear, 1.0)), np.nan)
    msg = (f"{where} has unit {unit}, which is not a stellar mass; give log10(M*/Msun) (no "
           f"unit, dex or dex(solMass)) or masses in solMass")
    raise SchemaError(msg)


def _is_real(value):
    """A finite real number (not a bool, a string or NaN)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value))


def tremonti_slope(logmass):
    """dZ / dx of the Tremonti relation at ``x = log10(M*/Msun)``."""
    return 1.847 - 2 * 0.08026 * np.asarray(logmass, dtype=float)


class MassMetallicity(Estimator):
    """Z from log stellar mass by the Tremonti et al. (2004) mass-metallicity relation.

    Parameters
    ----------
    mass_column : str, optional
        Column of log10(M*/Msun) used when no ``mass_estimator`` is given.
    mass_err_column : str, optional
        Column of the 1-sigma error of that mass (dex); none (zero mass error) by default.
    mass_estimator : str, type or Estimator, optional
        An estimator predicting log M* (``output = "logmstar"``, e.g. ``"gpm_resnet_mass"``);
        its ``logmstar_pred`` and ``logmstar_pred_err`` replace the mass column.
    mass_weights : str or path-like, optional
        Weights given to the mass estimator's ``load``.
    intrinsic_scatter : float, optional
        Scatter of the relation in dex, added in quadrature to the propagated mass error.
    mass_range : (float, float), optional
        Masses must lie strictly inside this open range, ``low < x < high`` (the paper's
        8.5 < log M* < 11.5); the others, end points included, are masked with flag
        ``mass_out_of_range``, never extrapolated. Default: Tremonti's fitted range.

    Notes
    -----
    ``Z_pred_err = sqrt(intrinsic_scatter**2 + (dZ/dx * mass_err)**2)``. Rows with a missing
    mass or mass error (masked, NaN, infinite, -9999, -99) get flag ``missing_mass``, rows with
    a negative mass error ``bad_mass_err``; rows the mass estimator could not predict get
    ``mass:<its flag>``. A mass column with a unit is read through `log_mass` (log masses in
    ``dex``, linear masses in ``solMass`` converted, any other unit an error).

    Examples
    --------
    >>> from astropy.table import Table
    >>> from gpm_astro_plugins.mass_metallicity import MassMetallicity
    >>> out = MassMetallicity().predict(Table({"lgm_tot_p50": [10.0, 8.0]}))
    >>> round(float(out["Z_pred"][0]), 3), str(out["Z_pred_flag"][1])
    (8.952, 'mass_out_of_range')
    """

    name = "mass_metallicity"
    requires_fit = False

    def __init__(self, *, mass_column="lgm_tot_p50", mass_err_column=None, mass_estimator=None,
                 mass_weights=None, intrinsic_scatter=0.10, mass_range=TREMONTI_MASS_RANGE):
        self.mass_column = mass_column
        self.mass_err_column = mass_err_column
        self.mass_estimator = mass_estimator
        self.mass_weights = mass_weights
        self.intrinsic_scatter = intrinsic_scatter
        self.mass_range = mass_range

    @property
    def required_columns(self):
        """The mass columns, or the mass estimator's required columns."""
        if self.mass_estimator is None:
            return tuple(c for c in (self.mass_column, self.mass_err_column) if c)
        estimator = self.mass_estimator
        if isinstance(estimator, Estimator):
            return tuple(estimator.required_columns)
        from gpm_astro.estimation import resolve_estimator

        return tuple(resolve_estimator(estimator).required_columns)

    def _validate(self):
        pair = self.mass_range
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2 \
                or not all(_is_real(v) for v in pair) or not pair[1] > pair[0]:
            msg = (f"mass_range must be (low, high), two finite numbers of log10(M*/Msun) with "
                   f"high > low, got {self.mass_range!r}")
            raise ParameterError(msg)
        if not _is_real(self.intrinsic_scatter) or not self.intrinsic_scatter >= 0:
            msg = (f"intrinsic_scatter must be a finite number >= 0 dex, got "
                   f"{self.intrinsic_scatter!r}")
            raise ParameterError(msg)

    def _resolve_mass_estimator(self):
        from gpm_astro.estimation import resolve_estimator

        estimator = resolve_estimator(self.mass_estimator, weights=self.mass_weights)
        if estimator.output == "Z":
            msg = (f"mass_estimator must predict stellar mass (output 'logmstar'), but "
                   f"{estimator!r} predicts {estimator.output!r}")
            raise ParameterError(msg)
        return estimator

    def describe(self):
        """``mass-metallicity relation, mass from <column or estimator>``."""
        if self.mass_estimator is None:
            return f"mass-metallicity relation, mass from {self.mass_column}"
        estimator = self.mass_estimator
        label = estimator.describe() if isinstance(estimator, Estimator) else repr(estimator)
        return f"mass-metallicity relation, mass from the estimator {label}"

    def fit(self, table, *, target="oh_p50", validation=None):
        """Nothing to learn from ``table``; resolves the mass estimator (loading its weights).

        Returns
        -------
        MassMetallicity
            self
        """
        require_table(table)
        self._validate()
        if self.mass_estimator is not None:
            self.mass_estimator_ = self._resolve_mass_estimator()
        return self

    def _masses(self, table):
        """Return (logmass, logmass_err, flags) for every row."""
        n = len(table)
        flags = np.full(n, "ok", dtype=object)
        table = with_column_names(table, list(self.required_columns), "mass_metallicity")
        if self.mass_estimator is None:
            mass, missing = numeric_column(table[self.mass_column], "mass_metallicity")
            mass = log_mass(mass, getattr(table[self.mass_column], "unit", None),
                            f"mass_metallicity: column {self.mass_column!r}")
            missing |= ~np.isfinite(mass)
            bad_err = np.zeros(n, dtype=bool)
            if self.mass_err_column:
                mass_err, err_missing = numeric_column(table[self.mass_err_column],
                                                       "mass_metallicity")
                missing |= err_missing
                with np.errstate(invalid="ignore"):
                    bad_err = ~err_missing & ~(mass_err >= 0)  # negative or not finite
            else:
                mass_err = np.zeros(n)
            flags[bad_err] = "bad_mass_err"
            flags[missing] = "missing_mass"
            return mass, mass_err, flags
        if not hasattr(self, "mass_estimator_"):
            self.mass_estimator_ = self._resolve_mass_estimator()  # lazy, loads once
        estimator = self.mass_estimator_
        result = estimator.predict(table)
        name = estimator.output_column
        mass_col = np.ma.asanyarray(result[name])
        mass = np.asarray(np.ma.filled(mass_col.astype(float), np.nan))
        mass_err = np.asarray(np.ma.filled(np.ma.asanyarray(result[f"{name}_err"]).astype(float),
                                           np.nan))
        inner_flags = np.asarray(result[f"{name}_flag"]).astype(str)
        failed = (inner_flags != "ok") | ~np.isfinite(mass)
        for i in np.flatnonzero(failed):
            flags[i] = f"mass:{inner_flags[i]}" if inner_flags[i] != "ok" else "missing_mass"
        mass_err = np.where(np.isfinite(mass_err), mass_err, 0.0)
        return mass, mass_err, flags

    def predict(self, table):
        """Z_pred, Z_pred_err and Z_pred_flag for every row, in order.

        Raises
        ------
        SchemaError
            If the mass column (or a column the mass estimator needs) is missing, or a mass
            column is not one-dimensional or does not hold numbers.
        """
        require_table(table)
        self._validate()
        mass, mass_err, flags = self._masses(table)
        low, high = self.mass_range
        # the relation holds for low < x < high (paper eq. 5): the end points are outside
        outside = (flags == "ok") & ((mass <= low) | (mass >= high))
        flags[outside] = "mass_out_of_range"
        good = flags == "ok"
        values = np.full(len(table), np.nan)
        errors = np.full(len(table), np.nan)
        values[good] = tremonti_mzr(mass[good])
        errors[good] = np.hypot(self.intrinsic_scatter,
                                tremonti_slope(mass[good]) * mass_err[good])
        return Table({
            "Z_pred": MaskedColumn(values, mask=~good, unit="dex"),
            "Z_pred_err": MaskedColumn(errors, mask=~good, unit="dex"),
            "Z_pred_flag": Column(flags.astype(str)),
        })
