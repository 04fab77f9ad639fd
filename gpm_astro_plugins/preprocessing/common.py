"""Steps used by both configurations: the pixel check and the size limit."""

import math

import numpy as np

from gpm_astro.base import PreprocessingStep, StepResult
from gpm_astro.exceptions import ParameterError
from gpm_astro.survey_constants import PIXEL_SCALE_ARCSEC

from .imaging import enclosing_circle, image_centre, largest_component

__all__ = ["CheckPixels", "SizeLimit", "OK", "check_positive", "check_choice"]

OK = "ok"


def check_positive(owner, **values):
    """Raise ParameterError unless every value is a finite number > 0."""
    for key, value in values.items():
        if not isinstance(value, (int, float, np.number)) or isinstance(value, bool) \
                or not math.isfinite(value) or value <= 0:
            msg = f"{owner}: {key} must be a positive number, got {value!r}"
            raise ParameterError(msg)


def check_choice(owner, key, value, choices):
    if value not in choices:
        msg = f"{owner}: {key} must be one of {list(choices)}, got {value!r}"
        raise ParameterError(msg)


class CheckPixels(PreprocessingStep):
    """Flag cutouts whose pixels cannot be trusted (``invalid_pixels``).

    A cutout is rejected when any band holds a non-finite value (NaN, inf), a value whose
    absolute size exceeds ``max_abs_value`` (corrupt), a saturated source, more than
    ``max_zero_fraction`` of exact zeros (no data: off the survey footprint or a masked CCD
    region; sky-subtracted noise is essentially never exactly 0) or any exact zero within
    ``zero_radius`` of the cutout's centre (no data where the target lies: a masked
    column or a CCD gap in one band would give the network a galaxy with a hole in one
    colour, however few the zeros), or is constant. Which of
    these it was is the per-row ``pixel_problem`` column of the output (``nonfinite``,
    ``zero_pixels``, ``saturated``, ``corrupt``, ``constant_band``; empty when none).

    Saturation is found by its shape, not its level: saturated stars in DR9 coadds peak at
    only tens of nanomaggies, but with a flat top and bleed trails at the saturation level.
    A band's brightest pixel that is at least ``saturation_min_sigma`` x the band's noise
    above its median, and that lies on a plateau of at least ``saturation_plateau``
    connected pixels all within ``plateau_tolerance`` (relative) of it, is saturated: an
    unsaturated peak falls off by far more than that from one pixel to the next.

    Parameters
    ----------
    max_nonfinite_fraction : float
        Largest allowed fraction of non-finite pixels per band (default 0: none).
    max_zero_fraction : float
        Largest allowed fraction of pixels exactly equal to 0 per band.
    zero_radius : float or None
        Radius, arcsec, of the central disc in which no pixel of any band may be exactly 0
        (default 6: the largest target `SizeLimit` keeps, paper); None: no such test.
    max_abs_value : float
        Largest allowed absolute pixel value, nanomaggies (larger: ``corrupt``).
    saturation_plateau : int or None
        Fewest pixels of a flat top that means saturation; None: no saturation test.
    plateau_tolerance : float
        How close to the peak (relative) a pixel must be to belong to its flat top.
    saturation_min_sigma : float
        Least height of a saturated peak above the band's median, in noise units.

    Examples
    --------
    >>> import numpy as np
    >>> step = CheckPixels()
    >>> images = np.random.default_rng(0).normal(0, 0.01, (2, 3, 32, 32)).astype("f4")
    >>> images[1, 0, :4, :4] = np.nan
    >>> step.process(images, {}).flags.tolist()
    ['ok', 'invalid_pixels']
    """

    name = "check_pixels"
    provides = ("pixel_problem",)

    def __init__(self, *, max_nonfinite_fraction=0.0, max_zero_fraction=0.05,
                 zero_radius=6.0, max_abs_value=1e6, saturation_plateau=6,
                 plateau_tolerance=0.01, saturation_min_sigma=50.0):
        self.max_nonfinite_fraction = max_nonfinite_fraction
        self.max_zero_fraction = max_zero_fraction
        self.zero_radius = zero_radius
        self.max_abs_value = max_abs_value
        self.saturation_plateau = saturation_plateau
        self.plateau_tolerance = plateau_tolerance
        self.saturation_min_sigma = saturation_min_sigma

    def _validate(self):
        for key in ("max_nonfinite_fraction", "max_zero_fraction"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                msg = f"{self.name}: {key} must be a fraction in [0, 1], got {value!r}"
                raise ParameterError(msg)
        check_positive(self.name, max_abs_value=self.max_abs_value,
                       plateau_tolerance=self.plateau_tolerance,
                       saturation_min_sigma=self.saturation_min_sigma)
        if self.saturation_plateau is not None:
            check_positive(self.name, saturation_plateau=self.saturation_plateau)
        if self.zero_radius is not None:
            check_positive(self.name, zero_radius=self.zero_radius)

    def process(self, images, context):
        self._validate()
        n = images.shape[0]
        pixels = images.reshape(n, images.shape[1], -1)
        per_band = pixels.shape[-1]
        # min / max carry NaN and inf, so one pass each finds most problems
        with np.errstate(invalid="ignore"):
            low, high = pixels.min(axis=-1), pixels.max(axis=-1)
        nonfinite = ~(np.isfinite(low) & np.isfinite(high))
        if self.max_nonfinite_fraction > 0 and nonfinite.any():
            rows = np.flatnonzero(nonfinite.any(-1))
            fraction = (~np.isfinite(pixels[rows])).sum(-1) / per_band
            nonfinite[rows] = fraction > self.max_nonfinite_fraction
            if (~nonfinite[rows]).any():  # tolerated non-finite pixels: min / max of the rest
                finite_rows = pixels[rows]
                masked = np.ma.masked_invalid(finite_rows)
                low[rows], high[rows] = masked.min(-1).filled(0), masked.max(-1).filled(0)
        zeros = (pixels == 0).sum(-1) / per_band
        central_zeros = self._central_zeros(images, zeros, context)
        with np.errstate(invalid="ignore"):
            huge = np.maximum(np.abs(low), np.abs(high)) > self.max_abs_value
            constant = high == low
        problem = np.full(n, "", dtype="<U16")
        problem[(constant & ~nonfinite).any(-1)] = "constant_band"
        if self.saturation_plateau is not None:
            problem[self._saturated(images, high, ~nonfinite)] = "saturated"
        problem[(huge & ~nonfinite).any(-1)] = "corrupt"
        problem[(zeros > self.max_zero_fraction).any(-1) | central_zeros] = "zero_pixels"
        problem[nonfinite.any(-1)] = "nonfinite"
        flags = np.where(problem == "", OK, "invalid_pixels")
        return StepResult(images=images, flags=flags, columns={"pixel_problem": problem},
                          extras={"pixel_problem": problem})

    def _central_zeros(self, images, zeros, context):
        """(n,) bool: a pixel of some band is exactly 0 within ``zero_radius`` of the centre."""
        found = np.zeros(images.shape[0], bool)
        rows = np.flatnonzero((zeros > 0).any(-1))
        if self.zero_radius is None or rows.size == 0:
            return found
        height, width = images.shape[2:]
        radius = self.zero_radius / context.get("pixel_scale", PIXEL_SCALE_ARCSEC)
        cx, cy = image_centre(height, width)
        x0, x1 = max(int(math.floor(cx - radius)), 0), min(int(math.ceil(cx + radius)) + 1, width)
        y0, y1 = max(int(math.floor(cy - radius)), 0), min(int(math.ceil(cy + radius)) + 1, height)
        y, x = np.mgrid[y0:y1, x0:x1]
        disc = np.hypot(x - cx, y - cy) <= radius
        found[rows] = ((images[rows, :, y0:y1, x0:x1] == 0) & disc).any(axis=(1, 2, 3))
        return found

    def _saturated(self, images, high, finite):
        """(n,) bool: a band whose peak sits on a flat top (see the class docstring)."""
        import cv2

        n, n_bands = high.shape
        pixels = images.reshape(n, n_bands, -1)
        with np.errstate(invalid="ignore"):
            near_top = pixels >= (high * (1.0 - self.plateau_tolerance))[..., None]
            candidate = finite & (high > 0) & \
                (near_top.sum(-1) >= self.saturation_plateau)
        saturated = np.zeros(n, bool)
        for i, band in zip(*np.nonzero(candidate)):
            if saturated[i]:
                continue
            plane = images[i, band]
            sample = plane[::3, ::3].astype(np.float64)  # absurd values must not overflow
            median = float(np.median(sample))
            with np.errstate(over="ignore", invalid="ignore"):
                noise = 1.4826 * float(np.median(np.abs(sample - median)))
                height = float(high[i, band]) - median
            if not (noise > 0 and height >= self.saturation_min_sigma * noise):
                continue
            top = near_top[i, band].reshape(plane.shape).view(np.uint8)
            _, labels = cv2.connectedComponents(top, connectivity=8)
            peak = labels.flat[int(np.argmax(plane))]
            saturated[i] = np.count_nonzero(labels == peak) >= self.saturation_plateau
        return saturated


def _brightest_share(region, image, sky, fraction):
    """The brightest pixels of ``region`` that hold ``fraction`` of its flux above ``sky``."""
    values = image[region] - sky
    if values.size == 0:
        return region
    ordered = np.sort(values)[::-1]
    cumulative = np.cumsum(np.maximum(ordered, 0.0))
    if cumulative[-1] <= 0:
        return region
    count = int(np.searchsorted(cumulative, fraction * cumulative[-1])) + 1
    level = ordered[min(count, ordered.size) - 1]
    return region & (image - sky >= level)


class SizeLimit(PreprocessingStep):
    """Reject targets larger than ``max_radius`` (``too_large``).

    The radius is that of the minimum enclosing circle of the target's pixels: with
    ``region="largest_component"`` (the paper) the largest 8-connected component of the
    thresholded image inside the target mask; with ``region="segment"`` the central segment
    found by `mask_neighbours` inside the mask; with ``region="flux_fraction"`` the brightest
    pixels of that segment that together hold ``flux_fraction`` of its flux (on the detection
    image), which measures the galaxy's light rather than how deep the isophote goes, so a
    bright compact galaxy is not "too large" only because its faint wings are detected far
    out. A target with no pixels, or a single pixel (radius 0), is ``no_central_source``: the
    paper keeps radii in (0, 6"] only.

    Parameters
    ----------
    max_radius : float
        Largest radius kept, arcsec (paper: 6).
    region : {"largest_component", "segment", "flux_fraction"}
        Which pixels define the target.
    flux_fraction : float
        Share of the segment's flux the ``flux_fraction`` region holds.
    truncate_radius : bool
        Truncate the radius to whole pixels before comparing, as the published code does
        (``int(r) < 23``); the paper compares the radius itself.

    Examples
    --------
    >>> import numpy as np
    >>> binary = np.zeros((1, 40, 40), bool); binary[0, 10:30, 18:22] = True
    >>> rows = {"binary": binary, "target_mask": np.ones_like(binary)}
    >>> result = SizeLimit(max_radius=2.0).process(np.zeros((1, 3, 40, 40), "f4"),
    ...                                             {"rows": rows, "pixel_scale": 0.262})
    >>> result.flags.tolist(), round(float(result.columns["enclosing_radius"][0]), 2)
    (['too_large'], 2.52)
    """

    name = "size_limit"
    provides = ("enclosing_radius",)
    reads_images = False

    def __init__(self, *, max_radius=6.0, region="largest_component", flux_fraction=0.9,
                 truncate_radius=False):
        self.max_radius = max_radius
        self.region = region
        self.flux_fraction = flux_fraction
        self.truncate_radius = truncate_radius

    @property
    def requires(self):
        return {"largest_component": ("binary", "target_mask"),
                "segment": ("segment", "target_mask"),
                "flux_fraction": ("segment", "target_mask", "detection", "detection_sky"),
                }.get(self.region, ())

    def process(self, images, context):
        check_positive(self.name, max_radius=self.max_radius)
        check_choice(self.name, "region", self.region,
                     ("largest_component", "segment", "flux_fraction"))
        if not (isinstance(self.flux_fraction, (int, float)) and 0 < self.flux_fraction <= 1):
            msg = f"{self.name}: flux_fraction must be in (0, 1], got {self.flux_fraction!r}"
            raise ParameterError(msg)
        rows = context["rows"]
        pixel_scale = context.get("pixel_scale", PIXEL_SCALE_ARCSEC)
        n = images.shape[0]
        radius = np.full(n, np.nan)
        flags = np.full(n, OK, dtype="<U20")
        for i in range(n):
            if self.region == "largest_component":
                target = largest_component(rows["binary"][i] & rows["target_mask"][i])
            else:
                target = rows["segment"][i] & rows["target_mask"][i]
                if self.region == "flux_fraction":
                    target = _brightest_share(target, rows["detection"][i],
                                              float(rows["detection_sky"][i]),
                                              self.flux_fraction)
            _, _, r_px = enclosing_circle(target)
            if self.truncate_radius and math.isfinite(r_px):
                r_px = float(int(r_px))
            if not math.isfinite(r_px) or r_px <= 0:
                flags[i] = "no_central_source"
                continue
            radius[i] = r_px * pixel_scale
            if radius[i] > self.max_radius:
                flags[i] = "too_large"
        return StepResult(images=images, flags=flags, columns={"enclosing_radius": radius})
