"""Units used by the Legacy Survey and SDSS catalogues (astropy's own definitions)."""

import astropy.units as u

from .exceptions import SchemaError

__all__ = ["nanomaggy", "dex", "in_degrees"]

#: Legacy Survey / SDSS flux unit: AB magnitude 22.5 (astropy's photometric ``nanomaggy``).
nanomaggy = u.nanomaggy
dex = u.dex


def in_degrees(values, unit, where):
    """Angles ``values`` (float array) given in ``unit``, converted to degrees.

    No unit, or a dimensionless one, means the values are degrees already.

    Parameters
    ----------
    values : numpy.ndarray
        Plain (not Quantity) float values.
    unit : astropy.units.UnitBase or None
        The column's unit.
    where : str
        Names the column in the error, e.g. ``"crossmatch: column 'ra'"``.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    SchemaError
        If ``unit`` is not an angle.

    Examples
    --------
    >>> import numpy as np
    >>> in_degrees(np.array([3600.0]), u.arcsec, "column 'ra'")
    array([1.])
    """
    if unit is None or unit == u.dimensionless_unscaled:
        return values
    if not unit.is_equivalent(u.deg):
        msg = f"{where} has unit {unit}, which is not an angle; give degrees (or no unit)"
        raise SchemaError(msg)
    return (values * unit).to_value(u.deg)
