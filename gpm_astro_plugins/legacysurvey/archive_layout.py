"""The ssl-legacysurvey HDF5 archive's layout: file names, datasets, dtypes, units.

Shared by the writer (`gpm_astro_plugins.legacysurvey.archive`) and the reader
(`gpm_astro_plugins.legacysurvey.archive_reader`); the layout itself is described in the
first of them.
"""

import re

import astropy.units as u
import numpy as np

from gpm_astro.exceptions import SchemaError
from gpm_astro.survey_constants import BANDS as SURVEY_BANDS
from gpm_astro.survey_constants import CUTOUT_SIZE, PIXEL_SCALE_ARCSEC
from gpm_astro.units import nanomaggy

__all__ = ["ARCHIVE_LAYOUT", "BANDS", "NPIX", "PIXEL_SCALE", "ROWS_PER_FILE",
           "SOURCE_TYPE_CODES", "FILENAME_PATTERN", "COLUMN_UNITS", "COLUMN_DESCRIPTIONS",
           "archive_filename", "source_type_strings"]

BANDS = SURVEY_BANDS
NPIX = CUTOUT_SIZE
PIXEL_SCALE = PIXEL_SCALE_ARCSEC
ROWS_PER_FILE = 1_000_000
FILENAME_PATTERN = re.compile(r"images_npix(\d+)_(\d{9})_(\d{9})\.h5$")

#: dataset name -> (dtype, per-row shape). Images first, then columns in alphabetical order.
ARCHIVE_LAYOUT = {
    "images": (np.dtype("float32"), (3, NPIX, NPIX)),
    "brickid": (np.dtype("int32"), ()),
    "dec": (np.dtype("float64"), ()),
    "ebv": (np.dtype("float32"), ()),
    "fiberflux": (np.dtype("float32"), (3,)),
    "flux": (np.dtype("float32"), (3,)),
    "fracin": (np.dtype("float32"), (3,)),
    "inds": (np.dtype("int64"), ()),
    "maskbits": (np.dtype("int16"), ()),
    "nobs": (np.dtype("int16"), (3,)),
    "objid": (np.dtype("int32"), ()),
    "psfdepth": (np.dtype("float32"), (3,)),
    "psfsize": (np.dtype("float32"), (3,)),
    "ra": (np.dtype("float64"), ()),
    "release": (np.dtype("int16"), ()),
    "source_type": (np.dtype("S3"), ()),
    "transmission": (np.dtype("float32"), (3,)),
    "z_phot_l68": (np.dtype("float32"), ()),
    "z_phot_l95": (np.dtype("float32"), ()),
    "z_phot_mean": (np.dtype("float32"), ()),
    "z_phot_median": (np.dtype("float32"), ()),
    "z_phot_std": (np.dtype("float32"), ()),
    "z_phot_u68": (np.dtype("float32"), ()),
    "z_phot_u95": (np.dtype("float32"), ()),
    "z_spec": (np.dtype("float32"), ()),
    "z_training": (np.dtype("bool"), ()),
}

#: integer code -> Tractor type, used when ``source_type`` is stored as integers
SOURCE_TYPE_CODES = {0: "PSF", 1: "REX", 2: "EXP", 3: "DEV", 4: "SER", 5: "DUP"}

COLUMN_UNITS = {
    "ra": u.deg, "dec": u.deg, "ebv": u.mag, "fiberflux": nanomaggy, "psfsize": u.arcsec,
    "psfdepth": nanomaggy ** -2,
}
COLUMN_DESCRIPTIONS = {
    "cutout": f"g, r, z cutout in nanomaggies, {PIXEL_SCALE_ARCSEC} arcsec / pixel",
    "source_type": "Tractor morphological type",
    "z_spec": "spectroscopic redshift, -99 when missing",
}


def archive_filename(start, end, *, npix=NPIX):
    """Return the archive's name of the file holding rows ``start`` to ``end`` (exclusive).

    Examples
    --------
    >>> archive_filename(0, 1_000_000)
    'images_npix152_000000000_001000000.h5'
    """
    return f"images_npix{npix}_{start:09d}_{end:09d}.h5"



def source_type_strings(values, codes=None):
    values = np.asarray(values)
    if values.dtype.kind == "S":
        return np.char.strip(np.char.decode(values, "ascii"))
    if values.dtype.kind == "U":
        return np.char.strip(values)
    if values.dtype.kind == "O":
        return np.array([v.decode("ascii").strip() if isinstance(v, bytes) else str(v).strip()
                         for v in values], dtype="U3")
    if values.dtype.kind in "iu":
        codes = SOURCE_TYPE_CODES if codes is None else codes
        unknown = sorted(set(np.unique(values).tolist()) - set(codes))
        if unknown:
            msg = f"source_type integer code(s) {unknown} are not in the code table {codes}"
            raise SchemaError(msg)
        lookup = np.array([codes.get(i, "") for i in range(max(codes) + 1)])
        return lookup[values]
    msg = f"source_type must be bytes, str or integer codes, got dtype {values.dtype}"
    raise SchemaError(msg)
