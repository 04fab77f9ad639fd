"""Domain of applicability of a trained GPM-ResNet: does a galaxy look like the training set?

A network trained on bright, nearby spectroscopic galaxies returns a number for any cutout; this
module says when that number is an extrapolation. Two kinds of check, both fitted at training
time and stored in the model card (and the weights file):

- **catalogue-like quantities**, measured the same way on every cutout so that training and
  application agree whatever columns a table carries: the r magnitude, the g - r and r - z
  colours in a circular aperture, the flux-weighted r.m.s. radius of the r-band light, the
  redshift (``z_phot_median``, else ``z``, when the table has one) and the r-band PSF FWHM
  (``psfsize``, when the table has it: the network never saw a galaxy through a wider PSF).
  Each gets an allowed range: the 0.5-99.5 % quantiles of the training rows, widened on both
  sides by 10 % of their width. A cutout whose aperture holds no positive flux in a band has
  no magnitude, colour or radius there: it fails that check (its flux is fainter than any
  magnitude); a missing redshift or PSF FWHM skips that check for the row (a table with no
  redshift column at all gets a warning).
- **the network's own feature space**: the Mahalanobis distance of a galaxy's penultimate-layer
  features (the PG block's hidden layer) from the training rows' features (mean and shrunk
  covariance), in units of the 99.5th percentile of the same distance on the held-out
  validation rows.

The score ``Z_pred_domain`` is the largest of the normalised distances: ``|v - centre| /
half_width`` for each quantity and ``d / d_99.5`` for the features. A score above 1 means the
galaxy lies outside the training domain on at least one count; ``Z_pred_domain_flag`` then names
them (``out:mag_r,redshift,features``), else it reads ``in``.
"""

import numpy as np

from gpm_astro.exceptions import ParameterError
from gpm_astro.tables import optional_column

__all__ = ["DomainModel", "image_quantities", "table_redshift", "DOMAIN_QUANTITIES",
           "APERTURE_RADIUS_PX", "IN_DOMAIN"]

#: the quantities checked one by one (besides the features)
DOMAIN_QUANTITIES = ("mag_r", "colour_gr", "colour_rz", "radius_r", "redshift", "psfsize")
#: the quantities measured on the cutout (`image_quantities`): NaN there means no positive flux
#: in the aperture (a magnitude fainter than any), which fails the check instead of skipping it
IMAGE_QUANTITIES = ("mag_r", "colour_gr", "colour_rz", "radius_r")
#: redshift columns, in order of preference
REDSHIFT_COLUMNS = ("z_phot_median", "z")
#: radius (pixels) of the aperture of the image quantities: 5.2 arcsec at 0.262 arcsec / pixel
APERTURE_RADIUS_PX = 20.0
#: quantile range of the training rows that is allowed, and the widening (share of its width)
RANGE_QUANTILES = (0.005, 0.995)
RANGE_MARGIN = 0.10
#: quantile of the held-out feature distances that scores 1
FEATURE_QUANTILE = 0.995
#: shrinkage of the feature covariance towards its mean variance (keeps it invertible)
SHRINKAGE = 0.1
IN_DOMAIN = "in"


def image_quantities(images, bands, pixel_scale=0.262):
    """Magnitude, colours and size measured in a circular aperture on each cutout.

    Parameters
    ----------
    images : numpy.ndarray
        (n, n_bands, S, S) fluxes in nanomaggies.
    bands : str
        Band of each plane, e.g. ``"grz"``.
    pixel_scale : float, optional
        arcsec per pixel.

    Returns
    -------
    dict of numpy.ndarray
        ``mag_r``, ``colour_gr``, ``colour_rz`` (AB magnitudes; NaN where a flux is not
        positive or a band is missing) and ``radius_r`` (arcsec, the r.m.s. radius of the
        positive r-band pixels in the aperture).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((1, 3, 40, 40)); img[:, :, 19:21, 19:21] = [[[1.0]], [[2.0]], [[3.0]]]
    >>> q = image_quantities(img, "grz")
    >>> round(float(q["mag_r"][0]), 3), round(float(q["colour_gr"][0]), 3)
    (20.242, 0.753)
    """
    n, _, height, width = np.shape(images)
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = (yy - (height - 1) / 2.0) ** 2 + (xx - (width - 1) / 2.0) ** 2
    inside = r2 <= APERTURE_RADIUS_PX ** 2
    # only the aperture's bounding box is read (in float64): the same pixels in the same order
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)) if rows.size \
        else (slice(0, 0), slice(0, 0))
    images = np.asarray(np.asarray(images)[:, :, box[0], box[1]], dtype=np.float64)
    r2, inside = r2[box], inside[box]
    flux = {b: images[:, k][:, inside].sum(axis=1) for k, b in enumerate(bands)}

    def magnitude(band):
        if band not in flux:
            return np.full(n, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(flux[band] > 0, 22.5 - 2.5 * np.log10(flux[band]), np.nan)

    mags = {b: magnitude(b) for b in "grz"}
    out = {"mag_r": mags["r"], "colour_gr": mags["g"] - mags["r"],
           "colour_rz": mags["r"] - mags["z"]}
    if "r" in bands:
        light = np.clip(images[:, bands.index("r")][:, inside], 0.0, None)
        total = light.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rms = np.sqrt((light * r2[inside]).sum(axis=1) / total) * pixel_scale
        out["radius_r"] = np.where(total > 0, rms, np.nan)
    else:
        out["radius_r"] = np.full(n, np.nan)
    return out


def table_redshift(table, rows=None):
    """The redshift of each row (``z_phot_median``, else ``z``) and the column used, or None.

    Names are compared ignoring case, as the DR9 photo-z files spell ``Z_PHOT_MEDIAN``; two
    columns that differ only in case are a `~gpm_astro.exceptions.SchemaError`.
    """
    for wanted in REDSHIFT_COLUMNS:
        name = optional_column(table, wanted, "the GPM-ResNet domain check")
        if name is not None:
            column = table[name] if rows is None else table[name][rows]
            values = np.ma.filled(np.ma.asanyarray(column).astype(float), np.nan)
            values = np.asarray(values, dtype=float)
            values[values < 0] = np.nan  # -99: undefined in the Legacy Survey tables
            return values, name
    return None, None


class DomainModel:
    """The training domain of a network: allowed ranges and the feature distribution.

    Build it with `fit`; `score` gives every galaxy its score and flag; `to_card` /
    `from_card` (with `tensors` / ``from_card(card, tensors)``) store it.

    Parameters
    ----------
    ranges : dict
        Quantity -> ``[low, high]`` allowed (quantities missing at training are absent).
    feature_mean, feature_precision : numpy.ndarray or None
        Mean (k,) and inverse shrunk covariance (k, k) of the training features.
    feature_scale : float or None
        Distance that scores 1 (the held-out quantile).
    redshift_column : str or None
        The column the redshift range was measured on.
    """

    def __init__(self, ranges, feature_mean=None, feature_precision=None, feature_scale=None,
                 redshift_column=None):
        self.ranges = {k: [float(v[0]), float(v[1])] for k, v in ranges.items()}
        self.feature_mean = feature_mean
        self.feature_precision = feature_precision
        self.feature_scale = feature_scale
        self.redshift_column = redshift_column

    @classmethod
    def fit(cls, quantities, train_features, heldout_features, redshift_column=None):
        """Fit the ranges on training quantities and the feature model on training features.

        Parameters
        ----------
        quantities : dict of numpy.ndarray
            Training values of (some of) `DOMAIN_QUANTITIES`; NaNs are ignored.
        train_features, heldout_features : numpy.ndarray
            (n, k) penultimate-layer features of the training and of held-out rows.
        redshift_column : str, optional
            Recorded with the redshift range.

        Returns
        -------
        DomainModel

        Raises
        ------
        ParameterError
            With fewer than two training or held-out rows of features.
        """
        ranges = {}
        for name in DOMAIN_QUANTITIES:
            values = np.asarray(quantities.get(name, []), dtype=float)
            values = values[np.isfinite(values)]
            if len(values) < 2:
                continue
            low, high = np.quantile(values, RANGE_QUANTILES)
            margin = RANGE_MARGIN * (high - low)
            ranges[name] = [float(low - margin), float(high + margin)]
        train_features = np.asarray(train_features, dtype=np.float64)
        heldout_features = np.asarray(heldout_features, dtype=np.float64)
        if len(train_features) < 2 or len(heldout_features) < 2:
            msg = (f"the domain model needs at least 2 training and 2 held-out feature rows, "
                   f"got {len(train_features)} and {len(heldout_features)}")
            raise ParameterError(msg)
        mean = train_features.mean(axis=0)
        covariance = np.atleast_2d(np.cov(train_features, rowvar=False))
        average = float(np.trace(covariance)) / len(covariance) or 1.0
        shrunk = (1.0 - SHRINKAGE) * covariance + SHRINKAGE * average * np.eye(len(mean))
        precision = np.linalg.inv(shrunk)
        model = cls(ranges, mean, precision, None, redshift_column)
        distances = model.feature_distance(heldout_features)
        model.feature_scale = float(np.quantile(distances, FEATURE_QUANTILE)) or 1.0
        return model

    def feature_distance(self, features):
        """Mahalanobis distance of each row of ``features`` from the training features."""
        delta = np.asarray(features, dtype=np.float64) - self.feature_mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", delta, self.feature_precision,
                                            delta), 0.0))

    def score(self, quantities, features):
        """Score and flag of each galaxy.

        Parameters
        ----------
        quantities : dict of numpy.ndarray
            Values of the quantities. A NaN redshift or PSF FWHM is unknown: that check is
            skipped for the row. A NaN magnitude, colour or radius means the aperture holds
            no positive flux in a band: that check fails (distance inf). An absent key skips
            it.
        features : numpy.ndarray
            (n, k) penultimate-layer features.

        Returns
        -------
        score : numpy.ndarray
            The largest normalised distance; above 1 means outside the domain.
        flag : numpy.ndarray of str
            ``in``, or ``out:`` and the failed checks joined by commas.
        """
        distance = self.feature_distance(features) / self.feature_scale
        n = len(distance)
        parts = {"features": distance}
        for name, (low, high) in self.ranges.items():
            values = np.asarray(quantities.get(name, np.full(n, np.nan)), dtype=float)
            centre, half = (low + high) / 2.0, max((high - low) / 2.0, 1e-12)
            distance = np.abs(values - centre) / half
            if name in IMAGE_QUANTITIES and name in quantities:
                distance[np.isnan(distance)] = np.inf  # no positive flux: not a skipped check
            parts[name] = distance
        stacked = np.vstack(list(parts.values()))
        score = np.nanmax(stacked, axis=0)
        names = list(parts)
        flags = np.full(n, IN_DOMAIN, dtype=object)
        outside = stacked > 1.0
        for i in np.flatnonzero(outside.any(axis=0)):
            flags[i] = "out:" + ",".join(names[k] for k in np.flatnonzero(outside[:, i]))
        return score, flags.astype(str)

    def to_card(self):
        """The JSON part (ranges, scale, redshift column); the arrays go to `tensors`."""
        return {"ranges": self.ranges, "feature_scale": self.feature_scale,
                "feature_quantile": FEATURE_QUANTILE, "range_quantiles": list(RANGE_QUANTILES),
                "range_margin": RANGE_MARGIN, "redshift_column": self.redshift_column,
                "aperture_radius_px": APERTURE_RADIUS_PX}

    def tensors(self):
        """The feature mean and precision as float32-safe arrays for the weights file."""
        return {"domain.feature_mean": self.feature_mean,
                "domain.feature_precision": self.feature_precision}

    @classmethod
    def from_card(cls, card, tensors):
        """Rebuild from `to_card` output and the stored arrays."""
        return cls(card["ranges"], np.asarray(tensors["domain.feature_mean"], np.float64),
                   np.asarray(tensors["domain.feature_precision"], np.float64),
                   card["feature_scale"], card.get("redshift_column"))
