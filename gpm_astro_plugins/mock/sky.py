"""The mock sky: a population of galaxies, their cutouts, and catalogues in the real formats.

`MockSky` draws a survey of ``n_galaxies`` image-catalogue galaxies, a fraction of which have
MPA-JHU-like spectroscopic labels, with known truth (``truth_case``, Z_true, the noise-floor
prediction Z_best, ...). See ``docs/mock_sky.rst`` for the model and the numbers it reaches.
"""

import json
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations_with_replacement

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table

from gpm_astro.base import Configurable
from gpm_astro.exceptions import ParameterError
from gpm_astro.io import writable_directory
from gpm_astro.tables import record_step, require_positive_int
from gpm_astro.units import nanomaggy

from .population import PopulationModel, image_features, mzr_tremonti
from .rendering import NEIGHBOUR_EXCLUSION_PX, CutoutRenderer

__all__ = ["MockSky", "MockSkyData", "EXPECTED_FLAG", "TRUTH_CASES", "LABEL_CUTS"]

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

BANDS = "grz"
NPIX = 152
PIXEL_SCALE = 0.262
#: typical per-pixel sky sigma of Legacy Survey DR9 coadds, nanomaggies (g, r, z)
SKY_SIGMA = np.array([0.004, 0.007, 0.026])
#: sky surface brightness (mag / arcsec^2) used only to set the photon-noise gain
SKY_MAG_PER_ARCSEC2 = np.array([22.0, 21.0, 19.5])
#: SDSS and Legacy Survey fibre radii used for fibre quantities, arcsec
SDSS_FIBRE_RADIUS = 1.5
LS_FIBRE_RADIUS = 0.75
_REFERENCE_SIZE = 12_000
#: share of too-large galaxies in the reference sample (size separates them anyway)
_REFERENCE_LARGE_RATE = 0.1
_REFERENCE_SEED = 20_250_404


def _counts_per_nanomaggy():
    sky_per_pixel = 10 ** (-0.4 * (SKY_MAG_PER_ARCSEC2 - 22.5)) * PIXEL_SCALE ** 2
    return sky_per_pixel / SKY_SIGMA ** 2


@dataclass
class MockSkyData:
    """What `MockSky.generate` returns.

    Attributes
    ----------
    labels : astropy.table.Table
        MPA-JHU-like label table (SkyServer column names), including rows each
        select_starforming cut removes and rows with no image.
    images : astropy.table.Table
        Legacy-Survey-like image catalogue as read back from the archive, with ``cutout``.
    truth : astropy.table.Table
        One row per image-catalogue galaxy, in the same order: truth_case, Z_true, Z_best, ...
    """

    labels: Table
    images: Table
    truth: Table
    meta: dict = field(default_factory=dict)

    def write(self, directory, *, rows_per_file=1_000_000, overwrite=False):
        """Write ``labels.fits``, ``truth.fits`` and the archive HDF5 file(s) to ``directory``.

        Parameters
        ----------
        directory : str or path-like
            Created if missing.
        rows_per_file : int, optional
            Galaxies per HDF5 file.
        overwrite : bool, optional
            Replace existing files.

        Returns
        -------
        dict
            ``{"labels": path, "truth": path, "images": [paths]}``.

        Raises
        ------
        ParameterError
            If ``directory`` cannot be created or written.
        """
        from gpm_astro_plugins.legacysurvey.archive import write_archive

        directory = writable_directory(directory)
        labels_path = directory / "labels.fits"
        truth_path = directory / "truth.fits"
        _write_fits(self.labels, labels_path, overwrite)
        _write_fits(self.truth, truth_path, overwrite)
        paths = write_archive(self.images, directory, rows_per_file=rows_per_file)
        return {"labels": labels_path, "truth": truth_path, "images": paths}


def _write_fits(table, path, overwrite):
    out = table.copy(copy_data=False)
    out.meta = {k: v for k, v in table.meta.items() if k != "gpm_astro"}
    # FITS headers cannot hold nested meta: keep the provenance as one JSON card
    if "gpm_astro" in table.meta:
        out.meta["GPMASTRO"] = json.dumps(table.meta["gpm_astro"])
    for key, value in list(out.meta.items()):
        if isinstance(value, (dict, list)):
            out.meta[key] = json.dumps(value)
    if path.exists() and not overwrite:
        msg = f"{str(path)!r} exists; pass overwrite=True to replace it"
        raise ParameterError(msg)
    import warnings

    from astropy.io.fits.verify import VerifyWarning
    from astropy.units import UnitsWarning

    with warnings.catch_warnings():
        # long meta keys become HIERARCH cards; dex and nmgy are stored as TUNIT strings
        # that astropy reads back (with a UnitsWarning unless the units are enabled)
        warnings.simplefilter("ignore", VerifyWarning)
        warnings.simplefilter("ignore", UnitsWarning)
        warnings.filterwarnings("ignore", message="The unit .* could not be saved")
        out.write(path, overwrite=True)


class MockSky(Configurable):
    """A mock Legacy Survey sky with SDSS MPA-JHU-like labels and known truth.

    Parameters
    ----------
    n_galaxies : int
        Galaxies in the image catalogue (each with one cutout).
    seed : int
        Random seed; the same seed gives identical tables and files.
    blend_rate, large_rate, empty_rate, bad_pixel_rate : float
        Fractions of galaxies whose cutout is a close blend, too large for the 6 arcsec cut,
        has no galaxy at its centre, or has NaN blocks / is all zero. The rest are ``clean``.
    labelled_fraction : float
        Fraction of image-catalogue galaxies with a spectroscopic label (bright, r < 17.7);
        the others are fainter (r 18-21) and unlabelled.
    label_defect_rate : float
        Fraction of labelled galaxies whose label row fails exactly one select_starforming
        cut (reliable, z_warning, bptclass, z, snmedian_r, oh_p50), spread evenly over them.
    label_only_fraction : float
        Extra label rows with no image, as a fraction of the labelled galaxies; half of them
        are non-galaxy spectra (QSO, STAR).
    astrometric_offset : float
        Per-axis sigma (arcsec) of the label-minus-image position offset.
    population : PopulationModel, optional
        Coefficients of the galaxy model; None uses the documented defaults.
    progress : bool
        Show a progress bar while drawing cutouts.

    Raises
    ------
    ParameterError
        If a count is negative, a rate is outside [0, 1], or the case rates sum above 1.

    Examples
    --------
    >>> sky = MockSky(n_galaxies=20, seed=3)
    >>> data = sky.generate()
    >>> len(data.images), data.images["cutout"].shape[1:]
    (20, (3, 152, 152))
    >>> set(data.truth["truth_case"]) <= set(TRUTH_CASES)
    True
    """

    name = "mock_sky"

    def __init__(self, n_galaxies=1000, seed=0, *, blend_rate=0.10, large_rate=0.08,
                 empty_rate=0.06, bad_pixel_rate=0.06, labelled_fraction=0.6,
                 label_defect_rate=0.2, label_only_fraction=0.05, astrometric_offset=0.15,
                 population=None, progress=False):
        self.n_galaxies = n_galaxies
        self.seed = seed
        self.blend_rate = blend_rate
        self.large_rate = large_rate
        self.empty_rate = empty_rate
        self.bad_pixel_rate = bad_pixel_rate
        self.labelled_fraction = labelled_fraction
        self.label_defect_rate = label_defect_rate
        self.label_only_fraction = label_only_fraction
        self.astrometric_offset = astrometric_offset
        self.population = population
        self.progress = progress

    # -- validation --------------------------------------------------------------------
    def _validate(self):
        n = self.n_galaxies
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            msg = f"n_galaxies must be a non-negative integer, got {n!r}"
            raise ParameterError(msg)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            msg = f"seed must be a non-negative integer, got {self.seed!r}"
            raise ParameterError(msg)
        for name in ("blend_rate", "large_rate", "empty_rate", "bad_pixel_rate",
                     "labelled_fraction", "label_defect_rate", "label_only_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.number)) or not 0.0 <= value <= 1.0:
                msg = f"{name} must be a number in [0, 1], got {value!r}"
                raise ParameterError(msg)
        total = self.blend_rate + self.large_rate + self.empty_rate + self.bad_pixel_rate
        if total > 1.0 + 1e-12:
            msg = (f"blend_rate + large_rate + empty_rate + bad_pixel_rate must not exceed 1, "
                   f"got {total!r}")
            raise ParameterError(msg)
        if not np.isfinite(self.astrometric_offset) or self.astrometric_offset < 0:
            msg = (f"astrometric_offset must be a non-negative number, got "
                   f"{self.astrometric_offset!r}")
            raise ParameterError(msg)
        population = self.population if self.population is not None else PopulationModel()
        if not isinstance(population, PopulationModel):
            msg = f"population must be a PopulationModel, got {population!r}"
            raise ParameterError(msg)
        return population

    @property
    def case_rates(self):
        """Rates of the truth cases, ``clean`` taking the rest."""
        rates = {"blended": self.blend_rate, "too_large": self.large_rate,
                 "empty_centre": self.empty_rate, "bad_pixels": self.bad_pixel_rate}
        return {"clean": max(0.0, 1.0 - sum(rates.values())), **rates}

    # -- generation --------------------------------------------------------------------
    def catalog(self):
        """Draw the catalogue part only (no cutouts): ``(labels, images, truth)``.

        ``images`` lacks the ``cutout`` column; `render` draws the cutouts of any rows.
        Cheap and vectorised: 100,000 galaxies take seconds.
        """
        population = self._validate()
        rng = np.random.default_rng([self.seed, 0])
        n = int(self.n_galaxies)
        names = list(self.case_rates)
        probabilities = np.array([self.case_rates[k] for k in names])
        picks = rng.choice(len(names), size=n, p=probabilities / probabilities.sum())
        case = np.array(names, dtype="U12")[picks]
        labelled = rng.uniform(size=n) < self.labelled_fraction
        large = case == "too_large"

        gal = _empty_population(population, n)
        for faint in (False, True):
            rows = np.flatnonzero(labelled != faint)
            if len(rows):
                drawn = population.draw(rng, len(rows), faint=faint, large=large[rows])
                for key, values in drawn.items():
                    if key not in gal:
                        gal[key] = np.zeros((n,) + values.shape[1:], dtype=values.dtype)
                    gal[key][rows] = values

        z_best = np.zeros(n)
        for faint in (False, True):
            rows = np.flatnonzero(labelled != faint)
            if len(rows):
                predictor = _noise_floor_predictor(population, faint)
                z_best[rows] = predictor(image_features({k: v[rows] for k, v in gal.items()}))

        observing = _draw_observing(rng, n)
        images = _image_catalog(rng, gal, case, labelled, observing)
        labels, specobjid, defects = self._label_table(rng, population, gal, images, labelled)
        truth = _truth_table(gal, case, labelled, images, specobjid, defects, z_best, observing)

        # the archive is sorted by decreasing z flux
        order = np.argsort(-images["flux_z"], kind="stable")
        images = images[order]
        truth = truth[order]
        for table in (labels, images, truth):
            table.meta["bands"] = BANDS
            table.meta["pixel_scale"] = PIXEL_SCALE
            record_step(table, "mock_sky", **self._params_for_meta(population))
        clean_labelled = (truth["truth_case"] == "clean") & truth["labelled"]
        if clean_labelled.any():
            floor = float(np.std(truth["Z_true"][clean_labelled] - truth["Z_best"][clean_labelled]))
            truth.meta["noise_floor_clean_labelled"] = floor
        return labels, images, truth

    def _params_for_meta(self, population):
        params = {k: v for k, v in self.get_params().items() if k not in ("population",)}
        params["population"] = population.as_dict()
        return params

    def generate(self):
        """Draw the whole mock sky, cutouts included.

        Returns
        -------
        MockSkyData
        """
        labels, images, truth = self.catalog()
        _add_cutouts(images, self.render(images, truth))
        return MockSkyData(labels=labels, images=images, truth=truth,
                           meta={"noise_floor_clean_labelled":
                                 truth.meta.get("noise_floor_clean_labelled")})

    def iter_generate(self, chunk_size=1000):
        """Yield `MockSkyData` chunks of at most ``chunk_size`` image galaxies (bounded memory).

        The catalogue is drawn once (small); cutouts are drawn chunk by chunk. The chunks'
        rows, concatenated, equal `generate`'s. ``labels`` is the whole label table in the
        first chunk and empty (same columns) in the others.

        Raises
        ------
        ParameterError
            If ``chunk_size`` is not a positive integer.
        """
        require_positive_int(chunk_size, "chunk_size")
        labels, images, truth = self.catalog()
        bar = _progress_bar(len(images)) if self.progress else None
        try:
            for start in range(0, max(len(images), 1), chunk_size):
                part_images = images[start:start + chunk_size]
                part_truth = truth[start:start + chunk_size]
                _add_cutouts(part_images, self.render(part_images, part_truth, bar=bar))
                yield MockSkyData(labels=labels if start == 0 else labels[:0],
                                  images=part_images, truth=part_truth)
        finally:
            if bar is not None:
                bar.close()

    def write(self, directory, *, chunk_size=1000, rows_per_file=1_000_000, overwrite=False):
        """Generate and write the sky chunk by chunk (bounded memory).

        Writes ``labels.fits``, ``truth.fits`` and ``images_npix152_*.h5`` into ``directory``.

        Returns
        -------
        dict
            ``{"labels": path, "truth": path, "images": [paths]}``.
        """
        from gpm_astro_plugins.legacysurvey.archive import ArchiveWriter

        directory = writable_directory(directory)
        self._validate()
        labels, images, truth = self.catalog()
        _write_fits(labels, directory / "labels.fits", overwrite)
        _write_fits(truth, directory / "truth.fits", overwrite)
        bar = _progress_bar(len(images)) if self.progress else None
        try:
            with ArchiveWriter(directory, rows_per_file=rows_per_file) as writer:
                for start in range(0, len(images), chunk_size):
                    part = images[start:start + chunk_size]
                    _add_cutouts(part, self.render(part, truth[start:start + chunk_size],
                                                   bar=bar))
                    writer.append(part)
                    del part
        finally:
            if bar is not None:
                bar.close()
        return {"labels": directory / "labels.fits", "truth": directory / "truth.fits",
                "images": writer.paths}

    # -- cutouts -----------------------------------------------------------------------
    def render(self, images, truth, *, bar=None):
        """Draw the cutouts of catalogue rows; returns (n, 3, 152, 152) float32.

        Each galaxy's cutout depends only on the seed and its ``galaxy_id``, so any subset or
        chunking of rows gives the same pixels. ``bar``: a tqdm bar to advance instead of
        opening one (when ``progress`` is set).
        """
        renderer = CutoutRenderer(npix=NPIX, pixel_scale=PIXEL_SCALE,
                                  counts_per_nanomaggy=_counts_per_nanomaggy())
        out = np.empty((len(truth), 3, NPIX, NPIX), dtype=np.float32)
        own_bar = bar is None and self.progress
        if own_bar:
            bar = _progress_bar(len(truth))
        for i in range(len(truth)):
            out[i] = _render_one(renderer, self.seed, truth[i])
            if bar is not None:
                bar.update(1)
        if own_bar:
            bar.close()
        return out

    # -- labels ------------------------------------------------------------------------
    def _label_table(self, rng, population, gal, images, labelled):
        n = len(labelled)
        rows = np.flatnonzero(labelled)
        n_lab = len(rows)
        n_only = int(round(self.label_only_fraction * n_lab))
        if self.label_only_fraction > 0 and n_lab > 0:
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
        offset = rng.normal(0.0, self.astrometric_offset, (n_lab, 2)) / 3600.0
        ra[:n_lab] = (images["ra"][rows] + offset[:, 0] / np.maximum(cos_dec, 1e-3)) % 360.0
        dec[:n_lab] = np.clip(images["dec"][rows] + offset[:, 1], -90, 90)
        ra_only, dec_only = _sky_positions(rng, n_only)
        ra[n_lab:], dec[n_lab:] = ra_only, dec_only

        # exactly one failing cut per defective row, spread evenly over the cuts
        defect = np.full(m, "", dtype="U12")
        cuts = LABEL_CUTS[1:]
        n_defect = int(round(self.label_defect_rate * n_lab))
        if self.label_defect_rate > 0 and n_lab >= 2 * len(cuts):
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


# -- helpers (module level: pure functions of their arguments) ----------------------------
def _progress_bar(total):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="drawing mock cutouts", unit="cutout")


def _add_cutouts(table, cutouts):
    """Add the ``cutout`` column without copying the (large) array."""
    table.add_column(cutouts, name="cutout", copy=False)
    table["cutout"].unit = nanomaggy
    table["cutout"].description = "g, r, z cutout in nanomaggies, 0.262 arcsec / pixel"


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
    nea = 4.0 * np.pi * (psf / 2.3548 / PIXEL_SCALE) ** 2  # noise-equivalent area, pixels
    sigma_pix = observing["sky_sigma"]
    area = nea + 4.0 * np.pi * (hlr[:, None] / PIXEL_SCALE) ** 2
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
        with np.errstate(invalid="ignore", divide="ignore"):
            mag = 22.5 - 2.5 * np.log10(table[f"flux_{band}"].value.astype(np.float64))
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
    truth["Z_mzr"] = mzr_tremonti(col("logmstar")) * u.dex
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


def polynomial_design(x, order):
    """Columns of every product of the columns of ``x`` of total degree 0 to ``order``.

    The design matrix of a full polynomial: (n, k) in, (n, number of terms) out, the constant
    first, then degree 1, 2, ... (used for the noise floor and for polynomial baselines).
    """
    terms = [()] + [c for degree in range(1, order + 1)
                    for c in combinations_with_replacement(range(x.shape[1]), degree)]
    return np.column_stack([np.prod(x[:, list(t)], axis=1) for t in terms])


@lru_cache(maxsize=8)
def _noise_floor_predictor(population, faint):
    """Fit E[Z | image features] on a reference population drawn by the same model.

    A full cubic polynomial in the nine standardised features of `image_features`, fitted by
    least squares to a fixed-seed reference sample of 12,000 galaxies, 10 per cent of them too
    large (the sizes separate those anyway). Returns a function features -> Z_best.
    """
    rng = np.random.default_rng(_REFERENCE_SEED + int(faint))
    large = rng.uniform(size=_REFERENCE_SIZE) < _REFERENCE_LARGE_RATE
    reference = population.draw(rng, _REFERENCE_SIZE, faint=faint, large=large)
    features = image_features(reference)
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale == 0] = 1.0

    def design(x):
        return polynomial_design((x - mean) / scale, 3)

    coefficients, *_ = np.linalg.lstsq(design(features), reference["Z_true"], rcond=None)

    def predict(x):
        if len(x) == 0:
            return np.zeros(0)
        return design(x) @ coefficients

    return predict


def _render_one(renderer, seed, row):
    """Draw the cutout of one truth row."""
    rng = np.random.default_rng([seed, 1, int(row["galaxy_id"])])
    canvas = renderer.blank()
    case = str(row["truth_case"])
    if case == "bad_pixels" and str(row["bad_pixel_kind"]) == "all_zero":
        return canvas  # outside the footprint: the service returns zeros
    psfs = renderer.psf_model(np.asarray(row["psf_fwhm"]))
    centre = renderer.centre
    hlr_px = float(row["hlr_arcsec"]) / PIXEL_SCALE
    x0, y0 = centre + rng.normal(0.0, 0.1, 2)
    target_radius = 2.5 * hlr_px  # isophotal extent, roughly
    if case != "empty_centre":
        renderer.add_galaxy(
            canvas, psfs, x=x0, y=y0, bulge_flux=np.asarray(row["bulge_flux"]),
            disk_flux=np.asarray(row["disk_flux"]), bulge_hlr=float(row["bulge_hlr_arcsec"]),
            disk_hlr=float(row["disk_hlr_arcsec"]), bulge_q=float(row["bulge_q"]),
            disk_q=float(row["disk_q"]), position_angle=float(row["position_angle"]))
    else:
        target_radius = 5.0
    if case == "blended":
        _add_blend_partner(rng, renderer, canvas, psfs, row, x0, y0, hlr_px)
    _add_field(rng, renderer, canvas, psfs, x0, y0, target_radius)
    renderer.add_noise(rng, canvas, np.asarray(row["sky_sigma"]))
    if case == "bad_pixels":
        _add_nan_blocks(rng, canvas, x0, y0)
    return canvas


def _add_blend_partner(rng, renderer, canvas, psfs, row, x0, y0, hlr_px):
    """A comparable galaxy 6-15 px from the target, overlapping it."""
    separation = rng.uniform(6.0, 15.0)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    total = np.asarray(row["bulge_flux"]) + np.asarray(row["disk_flux"])
    ratio = rng.uniform(0.3, 1.0)
    colour_shift = 10 ** (-0.4 * rng.normal(0.0, 0.15, 3))
    renderer.add_galaxy(
        canvas, psfs, x=x0 + separation * np.cos(angle), y=y0 + separation * np.sin(angle),
        bulge_flux=np.zeros(3), disk_flux=total * ratio * colour_shift, bulge_hlr=0.1,
        disk_hlr=max(0.3, hlr_px * PIXEL_SCALE * rng.uniform(0.5, 1.0)),
        bulge_q=1.0, disk_q=rng.uniform(0.4, 1.0), position_angle=rng.uniform(0.0, 180.0))


def _add_field(rng, renderer, canvas, psfs, x0, y0, target_radius):
    """Field galaxies and stars, none within NEIGHBOUR_EXCLUSION_PX of the target's isophote."""
    npix = renderer.npix
    n_galaxies = rng.poisson(1.5)
    n_stars = rng.poisson(0.6)
    for kind in ["galaxy"] * n_galaxies + ["star"] * n_stars:
        for _ in range(20):
            x, y = rng.uniform(-5.0, npix + 5.0, 2)
            if np.hypot(x - x0, y - y0) > target_radius + NEIGHBOUR_EXCLUSION_PX + 6.0:
                break
        else:
            continue
        mag_r = rng.uniform(18.5, 23.0) if kind == "galaxy" else rng.uniform(16.5, 22.0)
        gr = rng.normal(0.9, 0.3) if kind == "galaxy" else rng.normal(0.8, 0.4)
        rz = rng.normal(0.5, 0.2) if kind == "galaxy" else rng.normal(0.4, 0.3)
        flux = 10 ** (-0.4 * (np.array([mag_r + gr, mag_r, mag_r - rz]) - 22.5))
        if kind == "star":
            renderer.add_star(canvas, psfs, x=x, y=y, flux=flux)
        else:  # one exponential component: field galaxies are small and faint
            renderer.add_galaxy(canvas, psfs, x=x, y=y, bulge_flux=np.zeros(3),
                                disk_flux=flux, bulge_hlr=0.1, disk_hlr=rng.uniform(0.3, 1.2),
                                bulge_q=1.0, disk_q=rng.uniform(0.3, 1.0),
                                position_angle=rng.uniform(0.0, 180.0))


def _add_nan_blocks(rng, canvas, x0, y0):
    """1-3 NaN rectangles (masked CCD regions), the first over the target, in some bands."""
    npix = canvas.shape[-1]
    for k in range(rng.integers(1, 4)):
        width, height = rng.integers(8, 41, 2)
        if k == 0:
            cx, cy = x0 + rng.uniform(-3, 3), y0 + rng.uniform(-3, 3)
        else:
            cx, cy = rng.uniform(0, npix, 2)
        xa, ya = int(max(cx - width / 2, 0)), int(max(cy - height / 2, 0))
        bands = np.arange(3) if rng.uniform() < 0.5 else rng.choice(3, size=1)
        canvas[bands, ya:ya + height, xa:xa + width] = np.nan
