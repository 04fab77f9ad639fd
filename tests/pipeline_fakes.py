"""Small skies for the pipeline tests, made here so the tests need no mock-sky rendering.

`make_fake_sky` returns an MPA-JHU-like label table, a Legacy-Survey-like image catalogue with
152 x 152 g, r, z cutouts (a round exponential galaxy plus sky noise, in nanomaggies) and a
truth table, in the column conventions of docs/dev/interfaces.md. Z follows the g - r colour
with 0.05 dex of scatter, so a colour polynomial has something to learn.
"""

import numpy as np
from astropy.table import Table

SIZE = 152
NOISE = np.array([0.004, 0.007, 0.026])  # nanomaggy per pixel, g, r, z


def _galaxy(flux, radius_px, rng):
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2.0
    profile = np.exp(-np.hypot(xx, yy) / radius_px)
    profile /= profile.sum()
    image = flux[:, None, None] * profile[None] + rng.normal(0, 1, (3, SIZE, SIZE)) * \
        NOISE[:, None, None]
    return image.astype(np.float32)


def make_fake_sky(n_images=60, n_labelled=44, seed=1):
    """Return (labels, images, truth) tables for a pipeline test.

    The first ``n_labelled`` images have a label row; 4 of the label rows are AGN (removed by
    the BPT cut). Image ``source_type`` cycles EXP, EXP, DEV, REX, so some unlabelled EXP
    galaxies receive a catalogue entry. Image 0's cutout is all NaN (a bad-pixel row).
    """
    rng = np.random.default_rng(seed)
    ra = 150.0 + rng.uniform(0, 0.5, n_images)
    dec = 2.0 + rng.uniform(0, 0.5, n_images)
    g_minus_r = rng.uniform(0.3, 0.9, n_images)
    r_minus_z = 0.3 + 0.5 * g_minus_r + rng.normal(0, 0.05, n_images)
    mag_r = rng.uniform(18.5, 19.5, n_images)
    flux_r = 10 ** ((22.5 - mag_r) / 2.5)
    flux_g = flux_r * 10 ** (-g_minus_r / 2.5)
    flux_z = flux_r * 10 ** (r_minus_z / 2.5)
    fluxes = np.stack([flux_g, flux_r, flux_z], axis=1)
    cutouts = np.stack([_galaxy(f, rng.uniform(1.5, 2.5), rng) for f in fluxes])
    cutouts[0] = np.nan
    types = np.array(["EXP", "EXP", "DEV", "REX"])[np.arange(n_images) % 4]
    images = Table({
        "ra": ra, "dec": dec, "release": np.full(n_images, 9010, np.int16),
        "brickid": np.full(n_images, 331234, np.int32),
        "objid": np.arange(n_images, dtype=np.int32),
        "source_type": types, "flux_g": flux_g, "flux_r": flux_r, "flux_z": flux_z,
        "mag_r": mag_r, "z_phot_median": rng.uniform(0.05, 0.3, n_images),
        "cutout": cutouts,
    }, meta={"bands": "grz", "pixel_scale": 0.262})
    logm = rng.uniform(9.0, 11.0, n_images)
    z_true = 8.4 + 0.8 * g_minus_r
    oh = z_true + rng.normal(0, 0.05, n_images)
    n = n_labelled
    offset = 0.2 / 3600.0  # 0.2 arcsec astrometric offset
    labels = Table({
        "specobjid": np.arange(1000, 1000 + n, dtype=np.int64),
        "ra": ra[:n] + offset, "dec": dec[:n],
        "spectrotype": np.full(n, "GALAXY"), "z": rng.uniform(0.02, 0.2, n),
        "z_warning": np.zeros(n, np.int16), "reliable": np.ones(n, np.int16),
        "sn_median": np.full(n, 12.0), "snmedian_r": np.full(n, 15.0),
        "bptclass": np.where(np.arange(n) % 11 == 10, 4, 1).astype(np.int16),
        "oh_p50": oh[:n], "lgm_tot_p50": logm[:n], "lgm_fib_p50": logm[:n] - 0.4,
    })
    truth = Table({"brickid": images["brickid"], "objid": images["objid"],
                   "specobjid": np.where(np.arange(n_images) < n, 1000 + np.arange(n_images),
                                         -1),
                   "Z_true": z_true, "Z_best": z_true + rng.normal(0, 0.02, n_images)})
    return labels, images, truth


def write_fake_sky(folder, **kwargs):
    """Write `make_fake_sky` tables to ``folder``; return the ``source`` config section."""
    labels, images, truth = make_fake_sky(**kwargs)
    labels.write(folder / "labels.ecsv")
    images.write(folder / "images.h5", path="images", serialize_meta=True)
    truth.write(folder / "truth.ecsv")
    return {"name": "files", "labels": str(folder / "labels.ecsv"),
            "images": str(folder / "images.h5"), "truth": str(folder / "truth.ecsv")}
