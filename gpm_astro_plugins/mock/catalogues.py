"""The mock sky's three tables: the MPA-JHU-like labels, the Legacy-Survey-like image catalogue
and the truth table, drawn from a population (pure functions of their arguments)."""

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table

from gpm_astro.survey_constants import (BANDS, PIXEL_SCALE_ARCSEC, flux_to_magnitude,
                                        tremonti_metallicity)
from gpm_astro.units import nanomaggy

from .rendering import SKY_SIGMA

TRUTH_CASES = ("clean", "blended", "too_large", "empty_centre", "bad_pixels")

#: preprocessing flag a correct ``preprocess_cutouts`` gives each truth case
EXPECTED_FLAG = {
    "clean": "ok",
    "blended": "blended",
    "too_large": "too_large",
    "empty_centre": "no_central_source",
    "bad_pixels": "invalid_pixels",
}

#: select_starforming cuts the label table has rows to fail (one defect per defective row)
LABEL_CUTS = ("spectrotype", "reliable", "z_warning", "bptclass", "z", "snmedian_r", "oh_p50")

#: SDSS and Legacy Survey fibre radii used for fibre quantities, arcsec
SDSS_FIBRE_RADIUS = 1.5
LS_FIBRE_RADIUS = 0.75


def _add_cutouts(table, cutouts):
    """Add the ``cutout`` column without copying the (large) array."""
    table.add_column(cutouts, name="cutout", copy=False)
    table["cutout"].unit = nanomaggy
    table["cutout"].description = (f"g, r, z cutout in nanomaggies, {PIXEL_SCALE_ARCSEC} "
                                   f"arcsec / pixel")


def _empty_population(population, n=0):
    """Every population column with ``n`` zero rows (a throwaway generator: no draws used)."""
    empty = population.draw(np.random.default_rng(0), 0, faint=False, large=np.zeros(0, bool))
    return {k: np.zeros((n,) + v.shape[1:], dtype=v.dtype) for k, v in empty.items()}


def _sky_positions(rng, n):
    """Random positions, uniform on the sphere, in the Legacy Survey's declination range."""
    ra = rng.uniform(0.0, 360.0, n)
    sin_lo, sin_hi = np.sin(np.deg2rad(-20.0)), np.sin(np.deg2rad(80.0))
    dec = np.rad2deg(np.arcsin(rng.uniform(sin_lo, sin_hi, n)))
    return ra, dec


def _specobjids(rng, n):
    """Unique, increasing SDSS-like 64-bit spectrum ids."""
    steps = rng.integers(1, 2 ** 40, size=n, dtype=np.int64)
    return (299_489_677_444_933_632 + np.cumsum(steps)).astype(np.int64)


def _exponential_enclosed(radius, hlr):
    """Fraction of an exponential profile's light within ``radius`` (same unit as hlr)."""
    b = 1.6783
    x = b * np.asarray(radius) / np.maximum(hlr, 1e-6)
    return 1.0 - (1.0 + x) * np.exp(-x)


def _draw_observing(rng, n):
    """Per-cutout PSF FWHM (arcsec) and sky sigma (nanomaggies), g, r, z."""
    fwhm_r = np.exp(rng.normal(np.log(1.3), 0.1, n)).clip(1.0, 1.6)
    fwhm = np.stack([fwhm_r * 1.07, fwhm_r, fwhm_r * 0.94], axis=1).clip(1.0, 1.6)
    sky = SKY_SIGMA[None, :] * rng.uniform(0.8, 1.25, (n, 3))
    return {"psf_fwhm": fwhm, "sky_sigma": sky}


def _image_catalog(rng, gal, case, labelled, observing):
    n = len(case)
    ra, dec = _sky_positions(rng, n)
    north = (dec > 32.375) & (ra > 100.0) & (ra < 300.0)
    release = np.where(north, 9011, 9010).astype(np.int16)
    # 0.25 deg bricks: row by declination, column by RA scaled by cos(dec)
    brick_row = np.floor((dec + 90.0) / 0.25).astype(np.int64)
    brick_col = np.floor(ra * np.cos(np.deg2rad(dec)) / 0.25).astype(np.int64)
    brickid = (brick_row * 1440 + brick_col + 1).astype(np.int32)
    objid = rng.integers(0, 6000, n).astype(np.int32)
    for _ in range(100):  # (brickid, objid) identifies a galaxy: make pairs unique
        pairs = brickid.astype(np.int64) * 100_000 + objid
        _, first = np.unique(pairs, return_index=True)
        duplicate = np.ones(n, bool)
        duplicate[first] = False
        if not duplicate.any():
            break
        objid[duplicate] = rng.integers(6000, 20000, duplicate.sum())

    bt = gal["bulge_light_fraction"][:, 1]
    hlr = gal["hlr_arcsec"]
    source_type = np.where(bt < 0.35, "EXP", np.where(bt < 0.65, "SER", "DEV"))
    flip = rng.uniform(size=n) < 0.1  # the Tractor's model choice is noisy
    source_type = np.where(flip & (source_type == "EXP"), "SER", source_type)
    source_type = np.where(flip & (source_type == "SER"), "EXP", source_type)
    source_type = np.where(hlr < 0.45, "REX", source_type)
    faint_psf = (~labelled) & (rng.uniform(size=n) < 0.02)
    source_type = np.where(faint_psf, "PSF", source_type).astype("U3")

    true_flux = gal["true_flux"]
    psf = observing["psf_fwhm"]
    nea = 4.0 * np.pi * (psf / 2.3548 / PIXEL_SCALE_ARCSEC) ** 2  # noise-equivalent area, pixels
    sigma_pix = observing["sky_sigma"]
    area = nea + 4.0 * np.pi * (hlr[:, None] / PIXEL_SCALE_ARCSEC) ** 2
    flux_error = sigma_pix * np.sqrt(area)
    flux = (true_flux * (1.0 + rng.normal(0.0, 0.01, (n, 3)))
            + rng.normal(0.0, 1.0, (n, 3)) * flux_error)
    fibre = _exponential_enclosed(LS_FIBRE_RADIUS, np.hypot(hlr[:, None], psf / 2.0))
    fracin = np.where(case[:, None] == "blended", rng.uniform(0.5, 0.9, (n, 3)),
                      rng.uniform(0.93, 1.0, (n, 3)))
    nobs = rng.integers(1, 7, (n, 3)).astype(np.int16)
    redshift = gal["redshift"]
    z_sigma = 0.015 * (1.0 + redshift) * (1.0 + 2.0 * (~labelled))
    z_phot = np.clip(redshift + rng.normal(0.0, 1.0, n) * z_sigma, 0.0, None)
    bad_kind = np.where(case == "bad_pixels",
                        rng.choice(["nan_block", "all_zero"], size=n), "")
    zero_images = bad_kind == "all_zero"
    nobs[zero_images] = 0
    maskbits = np.where(case == "bad_pixels", (1 << 5) | (1 << 6) | (1 << 7), 0).astype(np.int16)

    table = Table()
    table["ra"] = ra * u.deg
    table["dec"] = dec * u.deg
    table["release"] = release
    table["brickid"] = brickid
    table["objid"] = objid
    table["source_type"] = source_type
    for k, band in enumerate(BANDS):
        table[f"flux_{band}"] = flux[:, k].astype(np.float32) * nanomaggy
    for k, band in enumerate(BANDS):
        mag = flux_to_magnitude(table[f"flux_{band}"].value)
        table[f"mag_{band}"] = MaskedColumn(mag, mask=~(table[f"flux_{band}"].value > 0),
                                            unit=u.mag)
    table["ebv"] = gal["ebv"].astype(np.float32) * u.mag
    table["fiberflux"] = (true_flux * fibre).astype(np.float32) * nanomaggy
    table["fracin"] = fracin.astype(np.float32)
    table["inds"] = rng.choice(20 * max(n, 1), size=n, replace=False).astype(np.int64)
    table["maskbits"] = maskbits
    table["nobs"] = nobs
    table["psfdepth"] = (1.0 / (sigma_pix ** 2 * nea)).astype(np.float32) * nanomaggy ** -2
    table["psfsize"] = psf.astype(np.float32) * u.arcsec
    table["transmission"] = gal["transmission"].astype(np.float32)
    table["z_phot_median"] = z_phot.astype(np.float32)
    table["z_phot_mean"] = (z_phot + 0.1 * z_sigma).astype(np.float32)
    table["z_phot_std"] = z_sigma.astype(np.float32)
    table["z_phot_l68"] = np.clip(z_phot - z_sigma, 0, None).astype(np.float32)
    table["z_phot_u68"] = (z_phot + z_sigma).astype(np.float32)
    table["z_phot_l95"] = np.clip(z_phot - 2 * z_sigma, 0, None).astype(np.float32)
    table["z_phot_u95"] = (z_phot + 2 * z_sigma).astype(np.float32)
    z_spec = np.where(labelled, redshift + rng.normal(0.0, 3e-5, n), -99.0)
    table["z_spec"] = z_spec.astype(np.float32)
    table["z_training"] = labelled & (rng.uniform(size=n) < 0.8)
    table.meta["_bad_kind"] = bad_kind  # popped by _truth_table
    return table


def _truth_table(gal, case, labelled, images, specobjid, defects, z_best, observing):
    n = len(case)
    bad_kind = images.meta.pop("_bad_kind")
    truth = Table()
    truth["galaxy_id"] = np.arange(n, dtype=np.int64)
    truth["brickid"] = images["brickid"]
    truth["objid"] = images["objid"]
    truth["specobjid"] = specobjid
    truth["labelled"] = labelled
    truth["truth_case"] = case.astype("U12")
    truth["expected_flag"] = np.array([EXPECTED_FLAG[c] for c in case], dtype="U20")
    truth["label_defect"] = defects
    truth["bad_pixel_kind"] = bad_kind.astype("U9")

    def col(key):
        return gal[key]

    truth["Z_true"] = col("Z_true") * u.dex
    truth["Z_best"] = z_best * u.dex
    truth["Z_mzr"] = tremonti_metallicity(col("logmstar")) * u.dex
    truth["logmstar"] = col("logmstar")
    truth["sfr"] = col("sfr")
    truth["log_ssfr"] = col("log_ssfr")
    truth["ssfr_offset"] = col("ssfr_offset")
    truth["redshift"] = col("redshift")
    truth["hlr_arcsec"] = col("hlr_arcsec") * u.arcsec
    truth["disk_hlr_arcsec"] = col("disk_hlr_arcsec") * u.arcsec
    truth["bulge_hlr_arcsec"] = col("bulge_hlr_arcsec") * u.arcsec
    truth["bulge_fraction_r"] = col("bulge_light_fraction")[:, 1]
    truth["disk_q"] = col("disk_q")
    truth["bulge_q"] = col("bulge_q")
    truth["position_angle"] = col("position_angle") * u.deg
    truth["dust_av"] = col("dust_av") * u.mag
    truth["bulge_flux"] = col("bulge_flux") * nanomaggy
    truth["disk_flux"] = col("disk_flux") * nanomaggy
    truth["mag_true"] = col("mag_true") * u.mag
    truth["psf_fwhm"] = observing["psf_fwhm"] * u.arcsec
    truth["sky_sigma"] = observing["sky_sigma"] * nanomaggy
    truth["Z_true"].description = "true 12 + log(O/H)"
    truth["Z_best"].description = ("E[Z | what a noise-free image shows]: the noise-floor "
                                   "prediction")
    truth["truth_case"].description = "clean, blended, too_large, empty_centre or bad_pixels"
    return truth


def _label_table(sky, rng, population, gal, images, labelled):
    """The MPA-JHU-like label table of `MockSky` ``sky``, with the spectrum id and label defect
    of each image row."""
    n = len(labelled)
    rows = np.flatnonzero(labelled)
    n_lab = len(rows)
    n_only = int(round(sky.label_only_fraction * n_lab))
    if sky.label_only_fraction > 0 and n_lab > 0:
        n_only = max(n_only, 2)
    extra = population.draw(rng, n_only, faint=False, large=np.zeros(n_only, bool))
    z_true = np.concatenate([gal["redshift"][rows], extra.get("redshift", np.zeros(0))])
    logm = np.concatenate([gal["logmstar"][rows], extra.get("logmstar", np.zeros(0))])
    sfr = np.concatenate([gal["sfr"][rows], extra.get("sfr", np.zeros(0))])
    metallicity = np.concatenate([gal["Z_true"][rows], extra.get("Z_true", np.zeros(0))])
    hlr = np.concatenate([gal["hlr_arcsec"][rows], extra.get("hlr_arcsec", np.zeros(0))])
    m = n_lab + n_only

    # positions: image position + astrometric offset; label-only rows anywhere
    ra = np.empty(m)
    dec = np.empty(m)
    cos_dec = np.cos(np.deg2rad(images["dec"][rows]))
    offset = rng.normal(0.0, sky.astrometric_offset, (n_lab, 2)) / 3600.0
    ra[:n_lab] = (images["ra"][rows] + offset[:, 0] / np.maximum(cos_dec, 1e-3)) % 360.0
    dec[:n_lab] = np.clip(images["dec"][rows] + offset[:, 1], -90, 90)
    ra_only, dec_only = _sky_positions(rng, n_only)
    ra[n_lab:], dec[n_lab:] = ra_only, dec_only

    # exactly one failing cut per defective row, spread evenly over the cuts
    defect = np.full(m, "", dtype="U12")
    cuts = LABEL_CUTS[1:]
    n_defect = int(round(sky.label_defect_rate * n_lab))
    if sky.label_defect_rate > 0 and n_lab >= 2 * len(cuts):
        n_defect = max(n_defect, len(cuts))
    chosen = rng.choice(n_lab, size=min(n_defect, n_lab), replace=False)
    defect[chosen] = np.array(cuts)[np.arange(len(chosen)) % len(cuts)]
    if n_only:
        non_galaxy = np.arange(n_lab, n_lab + n_only)[: max(1, n_only // 2)]
        defect[non_galaxy] = "spectrotype"

    spectrotype = np.where(defect == "spectrotype",
                           rng.choice(["QSO   ", "STAR  "], size=m), "GALAXY")
    reliable = np.where(defect == "reliable", 0, 1).astype(np.int16)
    z_warning = np.where(defect == "z_warning", rng.choice([4, 16, 32, 128], size=m),
                         0).astype(np.int32)
    bptclass = np.where(defect == "bptclass", rng.choice([-1, 2, 3, 4, 5], size=m),
                        1).astype(np.int16)
    z_label = z_true + rng.normal(0.0, 3e-5, m)
    z_label = np.where(defect == "z", rng.uniform(2e-4, 1.9e-3, m), z_label)
    snmedian_r = np.exp(rng.normal(np.log(14.0), 0.45, m)).clip(5.2, 80.0)
    snmedian_r = np.where(defect == "snmedian_r", rng.uniform(1.0, 4.9, m), snmedian_r)
    sn_median = snmedian_r * rng.uniform(0.7, 0.95, m)

    oh_sigma = rng.uniform(0.03, 0.05, m)
    oh_p50 = metallicity + rng.normal(0.0, 1.0, m) * oh_sigma
    skew = rng.uniform(0.9, 1.1, m)
    oh = {
        "oh_p2p5": oh_p50 - 2.0 * oh_sigma * skew, "oh_p16": oh_p50 - oh_sigma * skew,
        "oh_p50": oh_p50, "oh_p84": oh_p50 + oh_sigma / skew,
        "oh_p97p5": oh_p50 + 2.0 * oh_sigma / skew,
    }
    missing = defect == "oh_p50"
    for key in oh:
        oh[key] = np.where(missing, -9999.0, oh[key])

    lgm_tot = logm + rng.normal(0.0, 0.08, m)
    fibre_fraction = _exponential_enclosed(SDSS_FIBRE_RADIUS, np.hypot(hlr, 0.6))
    lgm_fib = logm + np.log10(fibre_fraction) + rng.normal(0.0, 0.08, m)
    sfr_tot = sfr + rng.normal(0.0, 0.2, m)
    specobjid = _specobjids(rng, m)

    table = Table()
    table["specobjid"] = specobjid
    table["ra"] = ra * u.deg
    table["dec"] = dec * u.deg
    table["spectrotype"] = spectrotype
    table["z"] = z_label
    table["z_warning"] = z_warning
    table["reliable"] = reliable
    table["sn_median"] = sn_median.astype(np.float32)
    table["snmedian_r"] = snmedian_r.astype(np.float32)
    table["bptclass"] = bptclass
    for key, values in oh.items():
        table[key] = values.astype(np.float32)
        table[key].unit = u.dex
    table["lgm_tot_p50"] = lgm_tot.astype(np.float32)
    table["lgm_fib_p50"] = lgm_fib.astype(np.float32)
    table["sfr_tot_p50"] = sfr_tot.astype(np.float32)
    table["specsfr_tot_p50"] = (sfr_tot - lgm_tot).astype(np.float32)
    table["specobjid"].description = "SDSS spectrum id"
    table["spectrotype"].description = "SDSS spectral class (SkyServer, blank-padded)"
    table["snmedian_r"].description = "median r-band S/N per pixel (SpecObjAll.snMedian_r)"
    table["oh_p50"].description = "12 + log(O/H), median (-9999 when missing)"

    image_specobjid = np.full(n, -1, dtype=np.int64)
    image_specobjid[rows] = specobjid[:n_lab]
    image_defect = np.full(n, "", dtype="U12")
    image_defect[rows] = defect[:n_lab]
    # shuffle so label-only and defective rows are not grouped
    order = rng.permutation(m)
    return table[order], image_specobjid, image_defect

