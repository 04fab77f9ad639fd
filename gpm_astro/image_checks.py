"""Which cutouts can be a galaxy at all: the one check every image estimator's input passes.

`predict_metallicity` (and each image estimator's own ``predict``) runs `cutout_flags` on the
rows it is about to show a network, so an image that cannot be a galaxy gets a flag with the
reason and a masked prediction instead of a number that looks fine. The tests are deliberately
loose (a real galaxy, however faint, noisy or masked by preprocessing, passes all of them):

================  ================================================================
flag              the cutout ...
================  ================================================================
missing_cutout    has a masked pixel (no image was found or downloaded)
non_float_cutout  is not floating point (int16, bool, complex): not fluxes in nanomaggies
invalid_pixels    has a NaN or infinite pixel
blank_cutout      is zero everywhere
constant_cutout   has one value everywhere (no source, no noise)
blank_band        has a band that is zero everywhere (the survey has no data in that band
                  there: the Legacy Survey cutout service fills it with zeros)
absurd_flux       has a pixel brighter than `MAX_PIXEL_FLUX` (1e6 nanomaggies, i.e. a
                  7.5 mag source in one pixel), or fainter than minus that
no_positive_flux  sums to zero or less over all pixels and bands (no source light)
================  ================================================================
"""

import astropy.units as u
import numpy as np

from .exceptions import SchemaError
from .units import is_nanomaggy

__all__ = ["cutout_flags", "check_cutout_unit", "IMAGE_FLAGS", "MAX_PIXEL_FLUX"]

#: Largest absolute pixel value (nanomaggies) a galaxy cutout can hold: 1e6 nmgy is magnitude
#: 7.5 in one 0.262" pixel, brighter than any galaxy in the Legacy Surveys by orders of magnitude.
MAX_PIXEL_FLUX = 1.0e6

#: Every flag `cutout_flags` can give, besides ``ok``.
IMAGE_FLAGS = ("missing_cutout", "non_float_cutout", "invalid_pixels", "blank_cutout",
               "constant_cutout", "blank_band", "absurd_flux", "no_positive_flux")


def check_cutout_unit(column, what):
    """`SchemaError` unless the cutouts are in nanomaggies: no unit, a dimensionless one or
    ``nanomaggy`` (a `~astropy.table.QTable` column is a Quantity). A cutout in magnitudes,
    Jy or counts would otherwise be read as nanomaggy fluxes."""
    if is_nanomaggy(getattr(column, "unit", None)):
        return
    unit = column.unit
    name = getattr(getattr(column, "info", None), "name", None) or "cutout"
    msg = (f"{what}: column {name!r} has unit {unit}; cutouts must be fluxes in nanomaggies "
           f"per pixel (unit nanomaggy or none), so convert them first")
    raise SchemaError(msg)


def cutout_flags(images):
    """``ok`` or the reason each cutout cannot be a galaxy image.

    Parameters
    ----------
    images : array-like or numpy.ma.MaskedArray, shape (n, ...)
        One cutout per row, fluxes in nanomaggies (e.g. (n, 3, 152, 152)); with four
        dimensions the second is the band.

    Returns
    -------
    numpy.ndarray of str, shape (n,)
        ``"ok"`` or one of `IMAGE_FLAGS` per row (the first that applies, in that order).

    Examples
    --------
    >>> import numpy as np
    >>> from gpm_astro.image_checks import cutout_flags
    >>> rng = np.random.default_rng(0)
    >>> galaxy = rng.normal(0, 0.01, (3, 8, 8)); galaxy[:, 3:5, 3:5] += 1.0
    >>> no_z = galaxy.copy(); no_z[2] = 0.0
    >>> cutout_flags(np.stack([galaxy, np.zeros((3, 8, 8)), -galaxy, galaxy * 1e30, no_z])
    ...              ).tolist()
    ['ok', 'blank_cutout', 'no_positive_flux', 'absurd_flux', 'blank_band']
    """
    if isinstance(images, u.Quantity):  # a QTable's cutouts: checked in nanomaggies
        check_cutout_unit(images, "cutout_flags")
        images = images.value
    images = np.ma.asanyarray(images)
    n = images.shape[0] if images.ndim else 0
    flags = np.full(n, "ok", dtype=object)
    if n == 0:
        return flags.astype(str)
    masked = np.ma.getmaskarray(images).reshape(n, -1).any(axis=1)
    flags[masked] = "missing_cutout"
    n_bands = images.shape[1] if images.ndim == 4 else 1
    data = np.ma.getdata(images).reshape(n, n_bands, -1)
    if data.dtype.kind != "f":
        flags[flags == "ok"] = "non_float_cutout"
        return flags.astype(str)
    rows = np.flatnonzero(flags == "ok")
    for row in rows:
        flags[row] = _one_cutout(data[row])
    return flags.astype(str)


def _one_cutout(bands):
    """The flag of one float cutout, (bands, pixels) (row by row: bounded memory for big
    batches)."""
    if not np.isfinite(bands).all():
        return "invalid_pixels"
    low, high = bands.min(), bands.max()
    if low == high:
        return "blank_cutout" if high == 0 else "constant_cutout"
    if len(bands) > 1 and (~bands.any(axis=1)).any():
        return "blank_band"
    pixels = bands.reshape(-1).astype(np.float64, copy=False)
    low, high = float(low), float(high)
    if max(abs(low), abs(high)) > MAX_PIXEL_FLUX:
        return "absurd_flux"
    if pixels.sum() <= 0:
        return "no_positive_flux"
    return "ok"
