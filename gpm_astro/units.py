"""Units used by the Legacy Survey and SDSS catalogues (astropy's own definitions)."""

import warnings

import astropy.units as u

from .exceptions import SchemaError

__all__ = ["nanomaggy", "dex", "known_unit", "use_known_units", "in_degrees", "as_angle_unit",
           "in_nanomaggies", "is_nanomaggy"]

#: Legacy Survey / SDSS flux unit: AB magnitude 22.5 (astropy's photometric ``nanomaggy``).
nanomaggy = u.nanomaggy
dex = u.dex


def known_unit(unit):
    """``unit`` as astropy's own unit of that name, or an `~astropy.units.UnrecognizedUnit`.

    A VOTable (1.4 on) reads units with the VOUnit parser, which defines every name it does
    not know anew: ``dex``, ``Msun`` and ``degrees`` come back as new units, not astropy's
    ``dex``, ``solMass`` or ``deg``, and compare unequal to them. The unit's name read by
    astropy's own parser is what the catalogue meant; a name no parser knows (``Log solar
    masses``, SkyServer's unit of ``lgm_tot_p50``) comes back unrecognised. None stays None.

    Examples
    --------
    >>> vo_dex = u.Unit("dex", format="vounit", parse_strict="silent")  # as a VOTable reads it
    >>> vo_dex == u.dex, known_unit(vo_dex) == u.dex
    (False, True)
    """
    if unit is None:
        return None
    text = unit.name if isinstance(unit, u.UnrecognizedUnit) else unit.to_string()
    with warnings.catch_warnings():
        # astropy's style notes ("multiple slashes") on a unit the catalogue chose, not ours
        warnings.simplefilter("ignore", u.UnitsWarning)
        return u.Unit(text, parse_strict="silent")


def use_known_units(table):
    """In place: each column's unit becomes its `known_unit` (an angle spelt in words, such
    as ``degrees``, that angle), so that a VOTable's ``dex`` is astropy's ``dex``."""
    for name in table.colnames:
        unit = getattr(table[name], "unit", None)
        if unit is None or isinstance(table[name], u.Quantity):
            continue
        known = known_unit(unit)
        if isinstance(known, u.UnrecognizedUnit):
            known = as_angle_unit(known) or known
        if known is not unit:
            table[name].unit = known


def in_degrees(values, unit, where):
    """Angles ``values`` (float array) given in ``unit``, converted to degrees.

    No unit, or a dimensionless one, means the values are degrees already. An angle spelt in
    words astropy does not parse (``degrees``, SkyServer's unit for the MPA-JHU ``ra``/``dec``)
    is read as that angle.

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
    angle = as_angle_unit(unit)
    if angle is None:
        msg = f"{where} has unit {unit}, which is not an angle; give degrees (or no unit)"
        raise SchemaError(msg)
    return (values * angle).to_value(u.deg)


def as_angle_unit(unit):
    """``unit`` as an astropy angle unit, or None when it is not an angle.

    Archives spell angles in words astropy does not parse: SkyServer documents the MPA-JHU
    ``ra``/``dec`` in ``degrees`` (a FITS TUNIT or a VOTable unit that astropy keeps as an
    unrecognised or VOUnit-defined unit). A name that, lower-cased and without a plural
    ``s``, is an angle astropy knows (``degrees``, ``Degree``, ``arcseconds``) counts as
    that angle.
    """
    if not isinstance(unit, u.UnrecognizedUnit) and unit.is_equivalent(u.deg):
        return unit
    spelt = str(unit).strip().lower()
    for candidate in (spelt, spelt[:-1] if spelt.endswith("s") else ""):
        if not candidate:
            continue
        parsed = u.Unit(candidate, parse_strict="silent")
        if not isinstance(parsed, u.UnrecognizedUnit) and parsed.is_equivalent(u.deg):
            return parsed
    return None


#: A flux density (Jy, erg/s/cm2/Hz) or an AB magnitude (``ABmag``) is converted to nanomaggies
#: through the AB zero point; a bare ``mag`` (no zero point) is not a flux and is refused.
_AB = u.zero_point_flux(1 * u.ABflux)


def is_nanomaggy(unit):
    """True for no unit, a dimensionless one, ``nanomaggy`` and the spellings astropy does not
    parse (``nanomaggies``), all of which mean nanomaggies in Legacy Survey files. The
    spellings count whatever unit object carries them: a VOTable's ``nanomaggy`` (or
    ``nmgy``) is a VOUnit astropy defines anew, not its own nanomaggy."""
    if unit is None or unit == u.dimensionless_unscaled or unit == nanomaggy:
        return True
    return str(unit).strip().lower() in ("nanomaggy", "nanomaggies", "nmgy")


def in_nanomaggies(values, unit, where):
    """Fluxes ``values`` (float array) given in ``unit``, converted to nanomaggies.

    No unit, or a dimensionless one, means the values are nanomaggies already (Legacy Survey
    catalogues and cutouts). A flux density (``Jy``, ``maggy``) or an AB magnitude (``ABmag``)
    is converted; any other unit, e.g. a bare ``mag`` column given where fluxes are read, is
    refused instead of being read as fluxes.

    Raises
    ------
    SchemaError
        If ``unit`` is not a flux.

    Examples
    --------
    >>> import numpy as np
    >>> in_nanomaggies(np.array([3.631e-6]), u.Jy, "column 'flux_g'").round(3)
    array([1.])
    """
    if is_nanomaggy(unit):
        return values
    if isinstance(unit, u.UnrecognizedUnit) or not unit.is_equivalent(nanomaggy, _AB):
        msg = (f"{where} has unit {unit}, which is not a flux; give fluxes in nanomaggies (or "
               f"no unit), e.g. 10 ** ((22.5 - mag) / 2.5) for AB magnitudes")
        raise SchemaError(msg)
    return (values * unit).to_value(nanomaggy, _AB)
