"""The galaxy population of the mock sky: masses, star formation, metallicity, shapes, colours.

Everything here is vectorised over galaxies; images are drawn elsewhere (`.rendering`).
The relations and their coefficients are documented in ``docs/mock_sky.rst``; in short, for a
galaxy of stellar mass x = log10(M*/Msun) and specific-star-formation offset d from the main
sequence (dex):

* Z = MZR(x) + fmr_slope * d + eps, MZR the Tremonti et al. (2004) relation, eps ~ N(0, sigma).
* The bulge fraction rises with mass and falls with d; the disk is larger at higher mass and
  at higher d (at fixed mass, bigger disks are more star-forming and metal-poorer, Ellison et
  al. 2008); dust rises with mass, d and inclination.
* Colours of bulge and disk follow mass, d, metallicity and dust, then redshift (k-correction)
  and Milky Way extinction. Colours therefore carry mass and d only through a dust-, age- and
  redshift-degenerate mixture, while the morphology (bulge fraction, sizes, inclination) gives
  independent handles on d and x: that is why colour plus morphology predicts Z better than
  colour alone.
"""

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from gpm_astro.exceptions import ParameterError
from gpm_astro.survey_constants import (BANDS, flux_to_magnitude, magnitude_to_flux,
                                        tremonti_metallicity)

__all__ = [
    "PopulationModel",
    "mzr_tremonti",
    "image_features",
    "BANDS",
    "DUST_A_OVER_AV",
    "MW_R_COEFFICIENTS",
]

#: A_band / A_V for a Cardelli et al. (1989) law at the g, r, z effective wavelengths
DUST_A_OVER_AV = np.array([1.20, 0.87, 0.50])
#: A_band / E(B-V) of the Legacy Survey DR9 (DECam g, r, z) for Milky Way extinction
MW_R_COEFFICIENTS = np.array([3.214, 2.165, 1.211])
#: absolute AB magnitude of the Sun in r
SUN_ABS_MAG_R = 4.65
#: fraction of a bulge's dust attenuation relative to its disk's
BULGE_DUST_FACTOR = 0.3


#: the Tremonti et al. (2004) mass-metallicity relation (METHOD.md section 9)
mzr_tremonti = tremonti_metallicity


@lru_cache(maxsize=1)
def _cosmology_grid():
    """Planck18 distance modulus, angular scale and comoving distance on a redshift grid."""
    from astropy.cosmology import Planck18

    z = np.geomspace(0.003, 0.8, 320)
    distmod = Planck18.distmod(z).value
    kpc_per_arcsec = Planck18.angular_diameter_distance(z).to_value("kpc") * np.pi / 648000.0
    comoving = Planck18.comoving_distance(z).to_value("Mpc")
    return z, distmod, kpc_per_arcsec, comoving


@dataclass(frozen=True)
class PopulationModel:
    """Coefficients of the generative model (see ``docs/mock_sky.rst``).

    Parameters
    ----------
    fmr_slope : float
        dZ / d(sSFR offset from the main sequence), dex per dex (fundamental metallicity
        relation); negative: at fixed mass, more star-forming galaxies are metal-poorer.
    intrinsic_scatter : float
        sigma of Z about MZR + FMR term at log M* = 10, dex.
    scatter_mass_slope : float
        The scatter is ``intrinsic_scatter * 10 ** (scatter_mass_slope * (10 - log M*))``:
        larger in low-mass galaxies, as observed (Tremonti et al. 2004), so that some galaxies
        are harder to measure than others.
    ssfr_scatter : float
        sigma of the sSFR offset from the main sequence, dex.
    labelled_mass_mean, labelled_mass_sigma : float
        Normal distribution of log M* of the spectroscopic (labelled) targets before selection.
    faint_mass_mean, faint_mass_sigma : float
        The same for the fainter, unlabelled galaxies.
    labelled_mag_range, faint_mag_range : tuple of float
        r-band magnitude ranges of labelled and unlabelled targets.
    labelled_z_range, faint_z_range : tuple of float
        Redshift ranges.
    clean_max_hlr, large_min_hlr, large_max_hlr : float
        Half-light radius (arcsec) below which ordinary targets lie, and the range of
        ``too_large`` targets' (their cutout still shows most of the galaxy).
    """

    fmr_slope: float = -0.30
    intrinsic_scatter: float = 0.07
    scatter_mass_slope: float = 0.4
    ssfr_scatter: float = 0.40
    labelled_mass_mean: float = 9.4
    labelled_mass_sigma: float = 1.0
    faint_mass_mean: float = 10.4
    faint_mass_sigma: float = 0.5
    mass_range: tuple = (8.5, 11.5)
    labelled_mag_range: tuple = (14.5, 17.7)
    faint_mag_range: tuple = (18.0, 21.0)
    labelled_z_range: tuple = (0.005, 0.3)
    faint_z_range: tuple = (0.02, 0.6)
    colour_ssfr_slope: float = 0.08
    disk_colour_scatter: float = 0.25
    dust_scatter: float = 0.9
    bulge_ssfr_slope: float = 1.5
    bulge_scatter: float = 0.3
    size_ssfr_slope: float = 0.10
    disk_size_intercept: float = 0.25
    clean_max_hlr: float = 1.1
    large_min_hlr: float = 3.0
    large_max_hlr: float = 8.0

    def scatter_at(self, logmstar):
        """sigma (dex) of Z about MZR + FMR term at stellar mass ``logmstar``."""
        return self.intrinsic_scatter * 10 ** (self.scatter_mass_slope
                                               * (10.0 - np.asarray(logmstar, dtype=float)))

    def as_dict(self):
        """Return the coefficients as a plain dict (for table meta)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    # -- the catalogue -------------------------------------------------------------------
    def draw(self, rng, n, *, faint, large):
        """Draw ``n`` galaxies.

        Parameters
        ----------
        rng : numpy.random.Generator
        n : int
            Number of galaxies.
        faint : bool
            True for unlabelled galaxies (fainter magnitudes, higher redshift).
        large : numpy.ndarray of bool, shape (n,)
            Which galaxies must be too large for the 6 arcsec cut; the others are ordinary.

        Returns
        -------
        dict
            Column name -> array with first axis n (see ``docs/mock_sky.rst`` for the list).
        """
        large = np.broadcast_to(np.asarray(large, dtype=bool), (n,))
        if n == 0:  # every column, zero rows
            empty = self._draw_candidates(rng, 0, faint=faint)
            empty["redshift"] = np.zeros(0)
            return self._observe(rng, empty)
        out = {}
        todo = np.arange(n)
        for _ in range(500):
            if len(todo) == 0:
                break
            # bounded batches keep the (candidates x redshift grid) arrays small
            candidates = self._draw_candidates(rng, int(np.clip(3 * len(todo), 64, 4000)),
                                               faint=faint)
            filled = []
            for want_large in (False, True):
                slots = todo[large[todo] == want_large]
                if len(slots) == 0 or len(candidates["logmstar"]) == 0:
                    continue
                ok, redshift = self._place(rng, candidates, faint=faint, large=want_large)
                take = np.flatnonzero(ok)[:len(slots)]
                candidates["redshift"] = redshift
                for key, values in candidates.items():
                    if key not in out:
                        out[key] = np.zeros((n,) + values.shape[1:], dtype=values.dtype)
                    out[key][slots[:len(take)]] = values[take]
                filled.append(slots[:len(take)])
                # a candidate is used once only
                candidates = {k: np.delete(v, take, axis=0) for k, v in candidates.items()}
            todo = np.setdiff1d(todo, np.concatenate(filled))
        if len(todo):
            msg = (f"could not draw {len(todo)} galaxies satisfying the magnitude, redshift "
                   f"and size limits of {self!r}")
            raise ParameterError(msg)
        return self._observe(rng, out)

    def _draw_candidates(self, rng, m, *, faint):
        mean = self.faint_mass_mean if faint else self.labelled_mass_mean
        sigma = self.faint_mass_sigma if faint else self.labelled_mass_sigma
        lo, hi = self.mass_range
        x = rng.normal(mean, sigma, m)
        bad = (x < lo) | (x > hi)
        while bad.any():  # truncated normal
            x[bad] = rng.normal(mean, sigma, bad.sum())
            bad = (x < lo) | (x > hi)
        d = rng.normal(0.0, self.ssfr_scatter, m)
        eps = rng.normal(0.0, 1.0, m) * self.scatter_at(x)
        metallicity = mzr_tremonti(x) + self.fmr_slope * d + eps
        log_ssfr = -10.0 - 0.24 * (x - 10.0) + d
        # morphology
        bulge_logit = (-2.6 + 1.6 * (x - 10.0) - self.bulge_ssfr_slope * d
                       + rng.normal(0.0, self.bulge_scatter, m))
        bulge_fraction = 1.0 / (1.0 + np.exp(-bulge_logit))
        log_disk_kpc = (self.disk_size_intercept + 0.22 * (x - 10.0) + self.size_ssfr_slope * d
                        + rng.normal(0.0, 0.12, m))
        log_bulge_kpc = log_disk_kpc - 0.55 + rng.normal(0.0, 0.10, m)
        cos_i = rng.uniform(0.0, 1.0, m)
        disk_q = np.sqrt(cos_i ** 2 * (1.0 - 0.15 ** 2) + 0.15 ** 2)
        bulge_q = rng.uniform(0.6, 1.0, m)
        position_angle = rng.uniform(0.0, 180.0, m)
        # dust: more in massive, star-forming and edge-on disks
        a_v = np.exp(np.log(0.7) + 0.35 * (x - 10.0) + 0.9 * d + 0.6 * (1.0 - cos_i)
                     + rng.normal(0.0, self.dust_scatter, m))
        # rest-frame, dust-free colours of the components
        z_offset = metallicity - 8.9
        # stellar-population (age, star-formation history) scatter moves g-r and r-z together
        disk_age = rng.normal(0.0, self.disk_colour_scatter, m)
        disk_gr = (0.42 + 0.08 * (x - 10.0) - self.colour_ssfr_slope * d + 0.20 * z_offset
                   + disk_age)
        disk_rz = (0.28 + 0.05 * (x - 10.0) - 0.4 * self.colour_ssfr_slope * d + 0.10 * z_offset
                   + 0.6 * disk_age + rng.normal(0.0, 0.04, m))
        bulge_age = rng.normal(0.0, 0.4 * self.disk_colour_scatter, m)
        bulge_gr = 0.74 + 0.04 * (x - 10.0) + bulge_age
        bulge_rz = 0.42 + 0.03 * (x - 10.0) + 0.6 * bulge_age + rng.normal(0.0, 0.03, m)
        mix_gr = bulge_fraction * bulge_gr + (1.0 - bulge_fraction) * disk_gr
        log_ml_r = -0.306 + 1.097 * mix_gr  # Bell et al. (2003)
        abs_mag_r = SUN_ABS_MAG_R - 2.5 * (x - log_ml_r)
        return {
            "logmstar": x, "ssfr_offset": d, "log_ssfr": log_ssfr, "Z_true": metallicity,
            "Z_scatter": eps, "bulge_fraction": bulge_fraction,
            "disk_hlr_kpc": 10 ** log_disk_kpc, "bulge_hlr_kpc": 10 ** log_bulge_kpc,
            "cos_inclination": cos_i, "disk_q": disk_q, "bulge_q": bulge_q,
            "position_angle": position_angle, "dust_av": a_v,
            "disk_gr": disk_gr, "disk_rz": disk_rz, "bulge_gr": bulge_gr,
            "bulge_rz": bulge_rz, "abs_mag_r_nodust": abs_mag_r,
        }

    def _place(self, rng, cand, *, faint, large):
        """Draw a redshift for each candidate within its magnitude and size limits.

        Returns ``(ok, redshift)``: where a redshift exists, and the redshifts (0 elsewhere).
        """
        zgrid, distmod, kpc_per_arcsec, comoving = _cosmology_grid()
        mag_lo, mag_hi = self.faint_mag_range if faint else self.labelled_mag_range
        if large and faint:  # a large faint galaxy would be too diffuse to detect at all
            mag_hi = min(mag_hi, mag_lo + 1.0)
        z_lo, z_hi = self.faint_z_range if faint else self.labelled_z_range
        # brightness limits: total r magnitude with dust and k-correction (no MW extinction)
        total_lum = 10 ** (-0.4 * (cand["abs_mag_r_nodust"] - SUN_ABS_MAG_R))
        flux_abs = 0.0
        for comp, fraction, dust_factor in (
                ("bulge", cand["bulge_fraction"], BULGE_DUST_FACTOR),
                ("disk", 1.0 - cand["bulge_fraction"], 1.0)):
            gr = cand[f"{comp}_gr"][:, None]
            dust = dust_factor * cand["dust_av"][:, None] * DUST_A_OVER_AV[1]
            flux_abs = flux_abs + (fraction * total_lum)[:, None] * 10 ** (
                -0.4 * (dust + zgrid[None, :] * (0.2 + 1.0 * gr)))
        approx_mag = SUN_ABS_MAG_R - 2.5 * np.log10(flux_abs) + distmod[None, :]
        in_mag = (approx_mag >= mag_lo) & (approx_mag <= mag_hi - 0.08)  # 0.08: typical MW
        hlr_kpc = _total_hlr(cand["disk_hlr_kpc"], cand["bulge_hlr_kpc"],
                             cand["bulge_fraction"])
        hlr_arcsec = hlr_kpc[:, None] / kpc_per_arcsec[None, :]
        if large:
            in_size = (hlr_arcsec >= self.large_min_hlr) & (hlr_arcsec <= self.large_max_hlr)
        else:
            in_size = hlr_arcsec <= self.clean_max_hlr
        in_range = (zgrid >= z_lo) & (zgrid <= z_hi)
        allowed = in_mag & in_size & in_range[None, :]
        # volume-weighted choice among the allowed grid redshifts
        shell = np.gradient(comoving ** 3)
        weights = allowed * shell[None, :]
        total = weights.sum(axis=1)
        ok = total > 0
        cumulative = np.cumsum(weights[ok], axis=1)
        u = rng.uniform(0.0, 1.0, ok.sum()) * total[ok]
        pick = (cumulative < u[:, None]).sum(axis=1)
        redshift = np.zeros(len(ok))
        # spread within the grid cell (log-spaced grid: 1.76 per cent wide)
        redshift[ok] = zgrid[pick] * (1.0 + 0.0176 * rng.uniform(-0.5, 0.5, ok.sum()))
        return ok, redshift

    def _observe(self, rng, gal):
        """Apparent fluxes, sizes, and catalogue-level derived quantities."""
        n = len(gal["logmstar"])
        zgrid, distmod, kpc_per_arcsec, _ = _cosmology_grid()
        z = gal["redshift"]
        dm = np.interp(z, zgrid, distmod)
        scale = np.interp(z, zgrid, kpc_per_arcsec)
        bt = gal["bulge_fraction"]
        # absolute r magnitudes of the components before dust
        total_lum = 10 ** (-0.4 * (gal["abs_mag_r_nodust"] - SUN_ABS_MAG_R))
        component_mag_r = {
            "bulge": SUN_ABS_MAG_R - 2.5 * np.log10(bt * total_lum),
            "disk": SUN_ABS_MAG_R - 2.5 * np.log10((1.0 - bt) * total_lum),
        }
        ebv = np.exp(rng.normal(np.log(0.03), 0.6, n)).clip(0.003, 0.3)
        transmission = 10 ** (-0.4 * MW_R_COEFFICIENTS[None, :] * ebv[:, None])
        fluxes = {}
        for comp, dust_factor in (("bulge", BULGE_DUST_FACTOR), ("disk", 1.0)):
            gr, rz = gal[f"{comp}_gr"], gal[f"{comp}_rz"]
            attenuation = dust_factor * gal["dust_av"][:, None] * DUST_A_OVER_AV[None, :]
            k_r = z * (0.2 + 1.0 * gr)
            shift_gr = z * (1.0 + 1.0 * gr)
            shift_rz = z * (0.2 + 0.5 * rz)
            mag_r = component_mag_r[comp] + dm + k_r
            mags = np.stack([mag_r + gr + shift_gr, mag_r, mag_r - rz - shift_rz], axis=1)
            mags = mags + attenuation
            fluxes[comp] = magnitude_to_flux(mags) * transmission
        total = fluxes["bulge"] + fluxes["disk"]
        gal["bulge_flux"] = fluxes["bulge"]
        gal["disk_flux"] = fluxes["disk"]
        gal["true_flux"] = total
        gal["mag_true"] = flux_to_magnitude(total)
        gal["bulge_light_fraction"] = fluxes["bulge"] / total
        gal["disk_hlr_arcsec"] = gal["disk_hlr_kpc"] / scale
        gal["bulge_hlr_arcsec"] = gal["bulge_hlr_kpc"] / scale
        gal["hlr_arcsec"] = _total_hlr(gal["disk_hlr_arcsec"], gal["bulge_hlr_arcsec"],
                                       gal["bulge_light_fraction"][:, 1])
        gal["ebv"] = ebv
        gal["transmission"] = transmission
        gal["sfr"] = gal["logmstar"] + gal["log_ssfr"]
        gal.pop("abs_mag_r_nodust")
        return gal


def _total_hlr(disk_hlr, bulge_hlr, bulge_fraction):
    """Approximate half-light radius of a bulge + disk: light-weighted mean of the two."""
    return bulge_fraction * bulge_hlr + (1.0 - bulge_fraction) * disk_hlr


def image_features(gal):
    """What a noise-free image shows about a galaxy, as a (n, 9) feature array.

    Total colours g-r and r-z, r magnitude, log sizes of disk and bulge, bulge light fraction in
    g, r and z (with the totals these fix the components' colours), and disk axis ratio.
    Position angle, PSF and neighbours carry no information on Z in this model.
    """
    mag = gal["mag_true"]
    return np.column_stack([
        mag[:, 0] - mag[:, 1], mag[:, 1] - mag[:, 2], mag[:, 1],
        np.log10(gal["disk_hlr_arcsec"]), np.log10(gal["bulge_hlr_arcsec"]),
        gal["bulge_light_fraction"][:, 0], gal["bulge_light_fraction"][:, 1],
        gal["bulge_light_fraction"][:, 2], gal["disk_q"],
    ])
