"""The survey's constants and the formulas every part of the package shares.

One home for the numbers of the DESI Legacy Survey imaging the method reads (METHOD.md), and for
the small formulas that would otherwise be written out in several places: flux to magnitude,
the Tremonti et al. (2004) mass-metallicity relation, and the design matrix of a full
polynomial.

Examples
--------
>>> from gpm_astro.survey_constants import PIXEL_SCALE_ARCSEC, flux_to_magnitude
>>> PIXEL_SCALE_ARCSEC
0.262
>>> flux_to_magnitude([10.0, 0.0]).round(2).tolist()
[20.0, nan]
"""

from itertools import combinations_with_replacement

import numpy as np

__all__ = ["PIXEL_SCALE_ARCSEC", "ZERO_POINT", "BANDS", "CUTOUT_SIZE", "CUTOUT_SHAPE",
           "TREMONTI_MASS_RANGE", "flux_to_magnitude", "magnitude_to_flux",
           "tremonti_metallicity", "polynomial_exponents", "polynomial_design"]

#: Legacy Survey DR9 native pixel scale, arcsec / pixel
PIXEL_SCALE_ARCSEC = 0.262
#: AB magnitude of a flux of one nanomaggy (the Legacy Survey and SDSS flux unit)
ZERO_POINT = 22.5
#: bands of the cutouts, in the order of the cutout planes
BANDS = "grz"
#: side of a cutout in pixels (40 arcsec at the native pixel scale)
CUTOUT_SIZE = 152
#: shape of one cutout: (bands, pixels, pixels)
CUTOUT_SHAPE = (len(BANDS), CUTOUT_SIZE, CUTOUT_SIZE)
#: log10(M*/Msun) range over which Tremonti et al. (2004), eq. 5 of the paper, was fitted
TREMONTI_MASS_RANGE = (8.5, 11.5)


def flux_to_magnitude(flux):
    """AB magnitude ``22.5 - 2.5 log10(flux)`` of fluxes in nanomaggies.

    Parameters
    ----------
    flux : float or array_like
        Fluxes in nanomaggies (a plain number or an array; units are not read).

    Returns
    -------
    numpy.ndarray
        Magnitudes, NaN where the flux is not a positive finite number.

    Examples
    --------
    >>> flux_to_magnitude([1.0, 100.0, -3.0]).tolist()
    [22.5, 17.5, nan]
    """
    flux = np.asarray(flux, dtype=float)
    good = np.isfinite(flux) & (flux > 0)
    magnitude = np.full(flux.shape, np.nan)
    magnitude[good] = ZERO_POINT - 2.5 * np.log10(flux[good])
    return magnitude


def magnitude_to_flux(magnitude):
    """Flux in nanomaggies of AB magnitudes: ``10 ** (-0.4 (m - 22.5))``.

    Examples
    --------
    >>> magnitude_to_flux(20.0).round(6)
    np.float64(10.0)
    """
    return 10 ** (-0.4 * (np.asarray(magnitude, dtype=float) - ZERO_POINT))


def tremonti_metallicity(logmass):
    """The Tremonti et al. (2004) mass-metallicity relation, eq. 5 of the paper.

    ``Z = -1.492 + 1.847 x - 0.08026 x**2`` with ``x = log10(M*/Msun)``, fitted over
    8.5 < x < 11.5 (`TREMONTI_MASS_RANGE`); the formula is evaluated anywhere, so callers
    decide what to do outside that range.

    Parameters
    ----------
    logmass : float or array_like
        log10 of the stellar mass in solar masses.

    Returns
    -------
    float or numpy.ndarray
        12 + log(O/H) in dex.

    Examples
    --------
    >>> round(float(tremonti_metallicity(10.0)), 4)
    8.952
    """
    x = np.asarray(logmass, dtype=float)
    return -1.492 + 1.847 * x - 0.08026 * x**2


def _monomials(n_variables, order):
    """Each term as the tuple of the variables it multiplies, constant first, by degree."""
    return [()] + [c for degree in range(1, order + 1)
                   for c in combinations_with_replacement(range(n_variables), degree)]


def polynomial_exponents(n_variables, order):
    """Exponents of the terms of a full polynomial, in the column order of `polynomial_design`.

    Examples
    --------
    >>> polynomial_exponents(2, 2)
    [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    """
    return [tuple(term.count(v) for v in range(n_variables))
            for term in _monomials(n_variables, order)]


def polynomial_design(x, order):
    """Columns of every product of the columns of ``x`` of total degree 0 to ``order``.

    The design matrix of a full polynomial: (n, k) in, (n, number of terms) out, the constant
    first, then degree 1, 2, ... (`polynomial_exponents` gives each column's exponents).

    Examples
    --------
    >>> polynomial_design(np.array([[2.0, 3.0]]), 2).tolist()
    [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
    """
    x = np.asarray(x, dtype=float)
    return np.column_stack([np.prod(x[:, list(t)], axis=1)
                            for t in _monomials(x.shape[1], order)])
