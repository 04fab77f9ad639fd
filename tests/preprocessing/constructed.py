"""Constructed Legacy-Survey-like cutouts with a known answer, for the preprocessing tests.

Galaxies are exponential discs (Sersic n = 1) convolved with a Gaussian PSF of FWHM 1.3"
(5 px), with the colours of a typical star-forming galaxy, on white noise at DR9-like
per-pixel levels. Fluxes are in nanomaggies.
"""

import cv2
import numpy as np

SIZE = 152
CENTRE = (SIZE - 1) / 2.0
#: per-pixel sky noise of g, r, z (nanomaggy), roughly DR9 south
NOISE = np.array([0.004, 0.006, 0.014], np.float32)
#: g, r, z flux of a galaxy relative to its r flux (g - r ~ 0.5, r - z ~ 0.4)
COLOUR = np.array([0.63, 1.0, 1.45], np.float32)
PSF_SIGMA = 5.0 / 2.3548


def galaxy(r_mag, *, x=CENTRE, y=CENTRE, r_eff=4.0, axis_ratio=0.7, angle=30.0, size=SIZE):
    """(3, size, size) noiseless image of an exponential disc of r magnitude ``r_mag``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    u = (xx - x) * c + (yy - y) * s
    v = (-(xx - x) * s + (yy - y) * c) / axis_ratio
    profile = np.exp(-1.678 * np.hypot(u, v) / r_eff).astype(np.float32)
    profile = cv2.GaussianBlur(profile, (0, 0), PSF_SIGMA)
    profile /= profile.sum()
    flux = 10 ** ((22.5 - r_mag) / 2.5)
    return COLOUR[:, None, None] * flux * profile[None]


def noisy(image, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, image.shape).astype(np.float32) * NOISE[:, None, None]
    return (image + noise).astype(np.float32)


def isolated(seed=0, r_mag=19.0, **kwargs):
    return noisy(galaxy(r_mag, **kwargs), seed)


def pair(seed=0, separation=10.0, r_mag=19.0, ratio=0.7):
    """The target at the centre and a companion ``ratio`` times as bright ``separation`` px
    away, overlapping it (a saddle between them)."""
    image = galaxy(r_mag, r_eff=3.0) + ratio * galaxy(r_mag, x=CENTRE + separation,
                                                      y=CENTRE + 2.0, r_eff=3.0, angle=120.0)
    return noisy(image, seed)


def shoulder(seed=0, separation=5.0, ratio=0.3):
    """A compact companion ``ratio`` times as bright ``separation`` px from the target's
    centre: it shows as a shoulder, with no saddle between the two."""
    image = galaxy(19.0, r_eff=4.0) + ratio * galaxy(19.0, x=CENTRE + separation,
                                                     y=CENTRE - 1.0, r_eff=1.5, angle=120.0)
    return noisy(image, seed)


def too_large(seed=0):
    """A bright galaxy with an 8" effective radius: its outline is far beyond 6"."""
    return noisy(galaxy(15.5, r_eff=30.0, axis_ratio=0.8), seed)


def empty_centre(seed=0):
    """Nothing within 20 px of the centre; one galaxy 35 px away."""
    return noisy(galaxy(19.0, x=CENTRE + 35.0, y=CENTRE - 10.0), seed)


def nan_block(seed=0):
    image = isolated(seed)
    image[:, 10:30, 100:130] = np.nan
    return image


def with_neighbour(seed=0):
    """A clean central galaxy with a separate, brighter neighbour 40 px away."""
    image = galaxy(19.5) + galaxy(18.0, x=CENTRE - 40.0, y=CENTRE + 25.0, r_eff=5.0)
    return noisy(image, seed)


CASES = {
    "isolated": (isolated, "ok"),
    "pair": (pair, "blended"),
    "shoulder": (shoulder, "blended"),
    "too_large": (too_large, "too_large"),
    "empty_centre": (empty_centre, "no_central_source"),
    "nan_block": (nan_block, "invalid_pixels"),
    "with_neighbour": (with_neighbour, "ok"),
}


def stack(*images):
    return np.stack(images).astype(np.float32)
