"""How well a noisy, blurred cutout shows a mock galaxy: the per-galaxy noise floor.

The noise floor of a galaxy is the posterior standard deviation of Z given what its image
shows. Two parts add in quadrature:

1. **What even a perfect image leaves open**: the variance of Z about ``Z_best`` =
   E[Z | image features] (`population.image_features`) at the galaxy's features: the mean
   squared residual of the cubic fit that gives ``Z_best`` over the 300 nearest galaxies (in
   standardised features) of a 20,000-galaxy reference sample drawn by the same model.
2. **What the pixel noise and the PSF hide**: the image-feature covariance a Bayesian
   measurement of the galaxy's model from its pixels would reach, propagated through the
   gradient of ``Z_best``. The Fisher matrix of the nine parameters that fix the features
   (bulge and disk flux in g, r, z; log disk and bulge radius; disk axis ratio) is computed on
   the galaxy's own PSF-convolved model image (de Vaucouleurs bulge + exponential disk, each
   band's Moffat PSF, sky and source photon noise of that cutout), turned into feature space,
   and combined with the population's feature covariance as a Gaussian prior (so an unresolved
   bulge does not get an infinite error). Position, position angle and the neighbours are taken
   as known: the measurement part is a lower bound.

The result is the ``Z_floor`` column of the mock's truth table (dex). It varies from galaxy to
galaxy with the intrinsic scatter at the galaxy's mass, its signal-to-noise ratio, its size
relative to the PSF and its inclination.
"""

import numpy as np

__all__ = ["feature_covariance", "floor_variance_model", "per_galaxy_floor"]

#: side (pixels) of the model images used for the Fisher matrix, and their oversampling
FISHER_NPIX = 32
FISHER_OVERSAMPLE = 2
#: steps of the numerical derivatives (dex in radius, absolute in axis ratio)
LOG_RADIUS_STEP = 0.02
AXIS_RATIO_STEP = 0.02
#: galaxies per vectorised chunk (bounds the memory to ~100 MB)
CHUNK = 400
DEVAUCOULEURS_B = 7.669
EXPONENTIAL_B = 1.6783


def _grid():
    side = FISHER_NPIX * FISHER_OVERSAMPLE
    coordinate = (np.arange(side) + 0.5) / FISHER_OVERSAMPLE - FISHER_NPIX / 2.0
    return np.meshgrid(coordinate, coordinate, indexing="xy")


def _profiles(kind, hlr_px, q, position_angle):
    """Unit-flux sheared profiles on the oversampled grid, summed into pixels: (n, N, N)."""
    x, y = _grid()
    angle = np.deg2rad(position_angle)[:, None, None]
    along = x[None] * np.cos(angle) + y[None] * np.sin(angle)
    across = -x[None] * np.sin(angle) + y[None] * np.cos(angle)
    q = q[:, None, None]
    radius = np.sqrt(along ** 2 * q + across ** 2 / q)  # shear at constant area
    scale = np.maximum(hlr_px, 1e-3)[:, None, None]
    if kind == "exponential":
        image = np.exp(-EXPONENTIAL_B * radius / scale)
    else:
        image = np.exp(-DEVAUCOULEURS_B * (radius / scale) ** 0.25) * (radius < 8.0 * scale)
    n = len(hlr_px)
    image = image.reshape(n, FISHER_NPIX, FISHER_OVERSAMPLE, FISHER_NPIX,
                          FISHER_OVERSAMPLE).sum(axis=(2, 4))
    return image / image.sum(axis=(1, 2), keepdims=True)


def _moffat_transforms(fwhm_px, beta):
    """Fourier transforms of unit Moffat PSFs centred on the grid: (n, N, N // 2 + 1)."""
    coordinate = np.arange(FISHER_NPIX) - FISHER_NPIX / 2.0
    x, y = np.meshgrid(coordinate, coordinate)
    alpha = fwhm_px / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    kernel = (1.0 + (x[None] ** 2 + y[None] ** 2) / alpha[:, None, None] ** 2) ** (-beta)
    kernel /= kernel.sum(axis=(1, 2), keepdims=True)
    return np.fft.rfft2(np.fft.ifftshift(kernel, axes=(1, 2)))


def _parameters_to_features(theta):
    """The nine image features (`population.image_features` order) from the nine parameters."""
    bulge, disk = theta[:, 0:3], theta[:, 3:6]
    total = bulge + disk
    mag = 22.5 - 2.5 * np.log10(total)
    fraction = bulge / total
    return np.column_stack([mag[:, 0] - mag[:, 1], mag[:, 1] - mag[:, 2], mag[:, 1],
                            theta[:, 6], theta[:, 7], fraction, theta[:, 8]])


def _jacobian(theta):
    """d features / d parameters, numerically: (n, 9, 9)."""
    base = _parameters_to_features(theta)
    out = np.empty((len(theta), 9, 9))
    for k in range(9):
        step = np.abs(theta[:, k]) * 1e-5 + 1e-9
        moved = theta.copy()
        moved[:, k] += step
        out[:, :, k] = (_parameters_to_features(moved) - base) / step[:, None]
    return out


def _fisher_chunk(gal, observing, rows, pixel_scale, gains, moffat_beta):
    """Fisher matrices (n, 9, 9) of the nine parameters for the galaxies ``rows``."""
    bulge_flux, disk_flux = gal["bulge_flux"][rows], gal["disk_flux"][rows]
    disk_px = gal["disk_hlr_arcsec"][rows] / pixel_scale
    bulge_px = gal["bulge_hlr_arcsec"][rows] / pixel_scale
    disk_q, bulge_q = gal["disk_q"][rows], gal["bulge_q"][rows]
    angle = gal["position_angle"][rows]
    moved_q = np.where(disk_q + AXIS_RATIO_STEP <= 1.0, disk_q + AXIS_RATIO_STEP,
                       disk_q - AXIS_RATIO_STEP)
    step_q = moved_q - disk_q
    radius_factor = 10 ** LOG_RADIUS_STEP
    profiles = {
        "bulge": _profiles("devaucouleurs", bulge_px, bulge_q, angle),
        "bulge_r": _profiles("devaucouleurs", bulge_px * radius_factor, bulge_q, angle),
        "disk": _profiles("exponential", disk_px, disk_q, angle),
        "disk_r": _profiles("exponential", disk_px * radius_factor, disk_q, angle),
        "disk_q": _profiles("exponential", disk_px, moved_q, angle),
    }
    spectra = {k: np.fft.rfft2(v) for k, v in profiles.items()}
    n = len(rows)
    fisher = np.zeros((n, 9, 9))
    shape = (FISHER_NPIX, FISHER_NPIX)
    for band in range(3):
        psf = _moffat_transforms(observing["psf_fwhm"][rows, band] / pixel_scale, moffat_beta)
        seen = {k: np.fft.irfft2(v * psf, s=shape).reshape(n, -1) for k, v in spectra.items()}
        b = bulge_flux[:, band, None]
        d = disk_flux[:, band, None]
        model = b * seen["bulge"] + d * seen["disk"]
        variance = observing["sky_sigma"][rows, band, None] ** 2 + np.maximum(model, 0) / gains[band]
        derivatives = np.zeros((n, 9, model.shape[1]))
        derivatives[:, band] = seen["bulge"]
        derivatives[:, 3 + band] = seen["disk"]
        derivatives[:, 6] = d * (seen["disk_r"] - seen["disk"]) / LOG_RADIUS_STEP
        derivatives[:, 7] = b * (seen["bulge_r"] - seen["bulge"]) / LOG_RADIUS_STEP
        derivatives[:, 8] = d * (seen["disk_q"] - seen["disk"]) / step_q[:, None]
        fisher += np.matmul(derivatives / variance[:, None], derivatives.transpose(0, 2, 1))
    return fisher


def feature_covariance(gal, observing, prior_covariance, *, pixel_scale, gains,
                       moffat_beta):
    """Posterior covariance (n, 9, 9) of the image features given each galaxy's cutout.

    Parameters
    ----------
    gal : dict of numpy.ndarray
        Population columns: ``bulge_flux``, ``disk_flux`` (n, 3), ``disk_hlr_arcsec``,
        ``bulge_hlr_arcsec``, ``disk_q``, ``bulge_q``, ``position_angle``.
    observing : dict of numpy.ndarray
        ``psf_fwhm`` (arcsec) and ``sky_sigma`` (nanomaggies per pixel), each (n, 3).
    prior_covariance : numpy.ndarray
        (9, 9) covariance of the features in the population (the Gaussian prior).
    pixel_scale : float
        arcsec per pixel.
    gains : array-like of 3 floats
        Counts per nanomaggy of the photon noise (`rendering.CutoutRenderer`).
    moffat_beta : float
        Moffat index of the PSF.

    Returns
    -------
    numpy.ndarray
        (n, 9, 9).
    """
    n = len(gal["disk_q"])
    out = np.empty((n, 9, 9))
    prior_precision = np.linalg.inv(prior_covariance)
    gains = np.asarray(gains, dtype=float)
    for start in range(0, n, CHUNK):
        rows = np.arange(start, min(start + CHUNK, n))
        fisher = _fisher_chunk(gal, observing, rows, pixel_scale, gains, moffat_beta)
        theta = np.column_stack([gal["bulge_flux"][rows], gal["disk_flux"][rows],
                                 np.log10(gal["disk_hlr_arcsec"][rows]),
                                 np.log10(gal["bulge_hlr_arcsec"][rows]), gal["disk_q"][rows]])
        inverse_jacobian = np.linalg.inv(_jacobian(theta))
        feature_fisher = inverse_jacobian.transpose(0, 2, 1) @ fisher @ inverse_jacobian
        out[rows] = np.linalg.inv(feature_fisher + prior_precision)
    return out


def floor_variance_model(features, residuals, *, neighbours=300):
    """Var(Z | features): the mean squared residual of the ``neighbours`` nearest reference
    galaxies in the standardised feature space.

    A nearest-neighbour average rather than a polynomial: on the mock, a cubic fit of the
    squared residuals (or a linear calibration of the fitted intrinsic scatter) under-predicted
    the variance of the best-measured fifth of the galaxies by a quarter, the average of 300
    neighbours by 8 %.

    Returns a function ``features -> variance``.
    """
    from scipy.spatial import cKDTree

    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale == 0] = 1.0
    tree = cKDTree((features - mean) / scale)
    squared = np.asarray(residuals, dtype=float) ** 2
    k = int(min(neighbours, len(squared)))

    def variance(x):
        if len(x) == 0:
            return np.zeros(0)
        _, index = tree.query((x - mean) / scale, k=k)
        return squared[np.reshape(index, (len(x), k))].mean(axis=1)

    return variance


def per_galaxy_floor(features, gradient, intrinsic_variance, covariance):
    """sqrt(intrinsic variance + gradient^T covariance gradient), per galaxy (dex)."""
    measurement = np.einsum("ni,nij,nj->n", gradient, covariance, gradient)
    return np.sqrt(intrinsic_variance + measurement)
