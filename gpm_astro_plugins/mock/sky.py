"""The mock sky: a population of galaxies, their cutouts, and catalogues in the real formats.

`MockSky` draws a survey of ``n_galaxies`` image-catalogue galaxies, a fraction of which have
MPA-JHU-like spectroscopic labels, with known truth (``truth_case``, Z_true, the noise-floor
prediction Z_best, ...). See ``docs/mock_sky.rst`` for the model and the numbers it reaches.
"""

import json
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.table import Table

from gpm_astro.base import Configurable
from gpm_astro.exceptions import ParameterError
from gpm_astro.io import writable_directory
from gpm_astro.survey_constants import BANDS, polynomial_design
from gpm_astro.tables import record_step, require_positive_int

from .catalogues import (EXPECTED_FLAG, LABEL_CUTS, TRUTH_CASES, _add_cutouts, _draw_observing,
                         _empty_population, _image_catalog, _label_table, _truth_table)
from .noise_floor import _noise_floor_predictor
from .noise_floor import per_galaxy_floor as _galaxy_floors
from .population import PopulationModel, image_features
from .rendering import (MOFFAT_BETA, NPIX, PIXEL_SCALE, CutoutRenderer, _counts_per_nanomaggy,
                        _render_one)

__all__ = ["MockSky", "MockSkyData", "EXPECTED_FLAG", "TRUTH_CASES", "LABEL_CUTS",
           "polynomial_design"]


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
    clumpy_rate : float
        Fraction of galaxies whose disc is clumpy: HII-region knots (GalSim ``RandomKnots``)
        and two spiral arms, as star-forming discs have. The truth table records
        ``knot_fraction``, ``arm_fraction`` and ``n_knots`` of each (0 for smooth discs).
    knot_fraction : float
        Share of a clumpy disc's r-band light in its knots (bluer than the disc).
    arm_fraction : float
        Share of a clumpy disc's light in its spiral arms.
    population : PopulationModel, optional
        Coefficients of the galaxy model; None uses the documented defaults.
    per_galaxy_floor : bool
        Compute each galaxy's own noise floor, the truth column ``Z_floor`` (a Fisher-matrix
        calculation, `gpm_astro_plugins.mock.measurement`: ~2 ms a galaxy); False leaves it NaN.
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
                 clumpy_rate=0.5, knot_fraction=0.25, arm_fraction=0.1, population=None,
                 per_galaxy_floor=True, progress=False):
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
        self.clumpy_rate = clumpy_rate
        self.knot_fraction = knot_fraction
        self.arm_fraction = arm_fraction
        self.population = population
        self.per_galaxy_floor = per_galaxy_floor
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
                     "labelled_fraction", "label_defect_rate", "label_only_fraction",
                     "clumpy_rate", "knot_fraction", "arm_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.number)) or not 0.0 <= value <= 1.0:
                msg = f"{name} must be a number in [0, 1], got {value!r}"
                raise ParameterError(msg)
        total = self.blend_rate + self.large_rate + self.empty_rate + self.bad_pixel_rate
        if total > 1.0 + 1e-12:
            msg = (f"blend_rate + large_rate + empty_rate + bad_pixel_rate must not exceed 1, "
                   f"got {total!r}")
            raise ParameterError(msg)
        if self.knot_fraction + self.arm_fraction > 0.9:
            msg = (f"knot_fraction + arm_fraction must not exceed 0.9 (the smooth disc keeps "
                   f"the rest), got {self.knot_fraction!r} + {self.arm_fraction!r}")
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
        z_floor = np.full(n, np.nan)
        if self.per_galaxy_floor:
            for faint in (False, True):
                rows = np.flatnonzero(labelled != faint)
                if len(rows):
                    z_floor[rows] = _galaxy_floors(
                        population, faint, {k: v[rows] for k, v in gal.items()},
                        {k: v[rows] for k, v in observing.items()}, pixel_scale=PIXEL_SCALE,
                        gains=_counts_per_nanomaggy(), moffat_beta=MOFFAT_BETA)
        images = _image_catalog(rng, gal, case, labelled, observing)
        labels, specobjid, defects = _label_table(self, rng, population, gal, images, labelled)
        truth = _truth_table(gal, case, labelled, images, specobjid, defects, z_best, observing)
        truth["Z_floor"] = z_floor * u.dex
        truth["Z_floor"].description = ("posterior std of Z given the cutout: the galaxy's own "
                                        "noise floor (NaN if not computed)")
        _add_clumps(truth, self, np.random.default_rng([self.seed, 4]))

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
            if self.per_galaxy_floor:
                rms = float(np.sqrt(np.mean(np.square(truth["Z_floor"][clean_labelled]))))
                truth.meta["per_galaxy_floor_rms_clean_labelled"] = rms
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


def _add_clumps(truth, sky, rng):
    """Truth columns of the clumpy discs, from a stream of their own (other columns and the
    smooth galaxies' pixels do not depend on them)."""
    n = len(truth)
    has_disc = np.asarray(truth["disk_flux"])[:, 1] > 0 if n else np.zeros(0, bool)
    clumpy = (rng.uniform(size=n) < sky.clumpy_rate) & has_disc
    n_knots = rng.integers(8, 25, size=n)
    truth["clumpy"] = clumpy
    truth["knot_fraction"] = np.where(clumpy, float(sky.knot_fraction), 0.0)
    truth["arm_fraction"] = np.where(clumpy, float(sky.arm_fraction), 0.0)
    truth["n_knots"] = np.where(clumpy, n_knots, 0).astype(np.int64)
    truth["clumpy"].description = "the disc carries HII-region knots and spiral arms"
    truth["knot_fraction"].description = "share of the disc's r-band light in knots"
    truth["arm_fraction"].description = "share of the disc's light in spiral arms"
    truth["n_knots"].description = "number of HII-region knots"


def _progress_bar(total):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="drawing mock cutouts", unit="cutout")

