"""The paper's preprocessing steps (GPM-ResNet paper, section 2.2; METHOD.md section 3).

Each step reproduces the paper's recipe; where the published scripts do something else
(METHOD.md section 12) a parameter selects the published behaviour.
"""

import functools
import math
import warnings

import cv2
import numpy as np

from gpm_astro.base import PreprocessingStep, StepResult

from gpm_astro.exceptions import ParameterError

from .common import OK, check_choice, check_positive
from .imaging import (GREY_WEIGHTS, cv_ellipse_to_axes, ellipse_mask, finite_or_zero, grey_image,
                      image_centre, isodata_threshold, ls_rgb)

__all__ = ["PaperMaskNeighbours", "PhotutilsBlendCheck", "PaperFragmentCheck",
           "stretched_grey"]

TARGET_COLUMNS = ("target_x", "target_y", "target_a", "target_b", "target_theta")


def stretched_grey(images, *, bands="grz", weights="luminance", q=20.0, offset=0.03):
    """8-bit grey image (n, H, W) of the Legacy Survey viewer's asinh RGB of ``images``.

    As in the published code, the RGB in [0, 1] is scaled to 0-255 and truncated to 8 bits
    before the planes are combined with ``weights`` (rounded, like OpenCV's conversion).
    """
    rgb8 = np.floor(ls_rgb(images, bands=bands, q=q, offset=offset) * 255.0)
    return np.clip(np.rint(grey_image(rgb8, weights)), 0, 255).astype(np.uint8)


class PaperMaskNeighbours(PreprocessingStep):
    """Mask everything but the central galaxy, the paper's way (steps 1-6 of METHOD.md §3).

    Grey image of the viewer's asinh RGB, iterative (isodata) threshold, binary image, Canny
    edges, external contours, an ellipse fitted to each contour of at least
    ``min_contour_points`` points; ellipses with a semi-axis of at most ``min_semi_axis`` px
    are ignored. The target is the ellipse nearest the image centre, within
    ``centre_tolerance`` px, that contains the centre. It is enlarged by ``enlarge`` and every
    pixel outside it is set to 0 in all bands (the output stays in nanomaggies).

    Parameters
    ----------
    grey_weights : {"luminance", "published"} or tuple of 3 floats
        Weights of the RGB planes (R = z, G = r, B = g). ``luminance`` is what the paper
        describes; ``published`` swaps the g and z weights as the published code does.
    rgb_q, rgb_offset : float
        Softening and offset of the viewer's arcsinh stretch (20, 0.03).
    threshold_tolerance : float
        The threshold iteration stops when T changes by at most this much (grey levels). The
        paper iterates until T is unchanged, which never ends on some images.
    max_iterations : int
        Cap on the threshold iterations.
    canny_low, canny_high : float
        Canny hysteresis thresholds (published: 30, 90).
    min_contour_points : int
        Fewest contour points for an ellipse fit (OpenCV needs 5).
    min_semi_axis : float
        Ellipses with a semi-axis of at most this many pixels are ignored.
    centre_tolerance : float
        Largest distance, px, between the ellipse centre and the image centre.
    centre_convention : {"pixel", "published"}
        ``pixel``: the geometric centre ((W - 1) / 2, (H - 1) / 2) = (75.5, 75.5) for 152 px;
        ``published``: (W / 2, H / 2) = (76, 76).
    rotation_aware : bool
        Test "contains the centre" with the rotated ellipse (True) or, as the published code,
        with the axes laid along x and y.
    enlarge : float
        Factor applied to both semi-axes before masking (paper: 1.4).
    integer_ellipse : bool
        Truncate the ellipse's centre, axes and angle to integers before masking (published).

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[:64, :64]
    >>> galaxy = 2.0 * np.exp(-((x - 31.5) ** 2 + (y - 31.5) ** 2) / 18.0)
    >>> images = np.repeat(galaxy[None, None], 3, axis=1).astype("f4")
    >>> result = PaperMaskNeighbours().process(images, {"bands": "grz"})
    >>> result.flags.tolist()
    ['ok']
    """

    name = "mask_neighbours_paper"
    provides = TARGET_COLUMNS + ("target_mask", "binary", "grey")

    def __init__(self, *, grey_weights="luminance", rgb_q=20.0, rgb_offset=0.03,
                 threshold_tolerance=1e-3, max_iterations=100, canny_low=30.0,
                 canny_high=90.0, min_contour_points=5, min_semi_axis=3.0,
                 centre_tolerance=5.0, centre_convention="pixel", rotation_aware=True,
                 enlarge=1.4, integer_ellipse=False):
        self.grey_weights = grey_weights
        self.rgb_q = rgb_q
        self.rgb_offset = rgb_offset
        self.threshold_tolerance = threshold_tolerance
        self.max_iterations = max_iterations
        self.canny_low = canny_low
        self.canny_high = canny_high
        self.min_contour_points = min_contour_points
        self.min_semi_axis = min_semi_axis
        self.centre_tolerance = centre_tolerance
        self.centre_convention = centre_convention
        self.rotation_aware = rotation_aware
        self.enlarge = enlarge
        self.integer_ellipse = integer_ellipse

    def _validate(self):
        if isinstance(self.grey_weights, str):
            check_choice(self.name, "grey_weights", self.grey_weights, tuple(GREY_WEIGHTS))
        check_positive(self.name, rgb_q=self.rgb_q, threshold_tolerance=self.threshold_tolerance,
                       max_iterations=self.max_iterations, canny_high=self.canny_high,
                       centre_tolerance=self.centre_tolerance, enlarge=self.enlarge)
        if self.min_contour_points < 5:
            msg = f"{self.name}: min_contour_points must be >= 5, got {self.min_contour_points!r}"
            raise ParameterError(msg)
        check_choice(self.name, "centre_convention", self.centre_convention,
                     ("pixel", "published"))

    def process(self, images, context):
        self._validate()
        n, _, height, width = images.shape
        grey = stretched_grey(images, bands=context.get("bands", "grz"),
                              weights=self.grey_weights, q=self.rgb_q, offset=self.rgb_offset)
        cx, cy = image_centre(height, width, self.centre_convention)
        flags = np.full(n, OK, dtype="<U20")
        binary = np.zeros((n, height, width), bool)
        masks = np.zeros((n, height, width), bool)
        ellipses = np.full((n, 5), np.nan)
        for i in range(n):
            threshold, _ = isodata_threshold(grey[i], tolerance=self.threshold_tolerance,
                                             max_iterations=int(self.max_iterations))
            binary[i] = grey[i] > threshold
            target = self._central_ellipse(binary[i], cx, cy)
            if target is None:
                flags[i] = "no_central_source"
                continue
            x, y, a, b, theta = target
            a, b = a * self.enlarge, b * self.enlarge
            if self.integer_ellipse:
                x, y, a, b, theta = (float(int(v)) for v in (x, y, a, b, theta))
            ellipses[i] = x, y, a, b, theta
            masks[i] = ellipse_mask((height, width), x, y, a, b, theta)
        keep = masks[:, None] & np.isfinite(images)
        cleaned = np.where(keep, images.astype(np.float32, copy=False), np.float32(0))
        columns = {name: ellipses[:, k] for k, name in enumerate(TARGET_COLUMNS)}
        extras = {"target_mask": masks, "binary": binary, "grey": grey}
        return StepResult(images=cleaned, flags=flags, columns=columns, extras=extras)

    def _central_ellipse(self, binary, cx, cy):
        if not binary.any() or binary.all():
            return None
        edges = cv2.Canny(binary.astype(np.uint8) * 255, self.canny_low, self.canny_high)
        contours, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        best, best_distance = None, math.inf
        for contour in contours:
            if len(contour) < self.min_contour_points:
                continue
            (ex, ey), (w, h), angle = cv2.fitEllipse(contour)
            if not all(math.isfinite(v) for v in (ex, ey, w, h, angle)):
                continue
            if min(w, h) / 2.0 <= self.min_semi_axis:
                continue
            distance = math.hypot(ex - cx, ey - cy)
            if distance > self.centre_tolerance or distance >= best_distance:
                continue
            if not self._contains(ex, ey, w / 2.0, h / 2.0, angle, cx, cy):
                continue
            best, best_distance = cv_ellipse_to_axes(((ex, ey), (w, h), angle)), distance
        return best

    def _contains(self, ex, ey, half_w, half_h, angle, cx, cy):
        dx, dy = cx - ex, cy - ey
        if self.rotation_aware:
            c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            dx, dy = dx * c + dy * s, -dx * s + dy * c
        return (dx / half_w) ** 2 + (dy / half_h) ** 2 <= 1.0


class PhotutilsBlendCheck(PreprocessingStep):
    """The paper's blending test with photutils (step 8 of METHOD.md §3).

    Background2D (``box_size``, ``filter_size``, median estimator) on the detection image,
    threshold = ``threshold_sigma`` x background RMS above the background, Gaussian smoothing
    (FWHM ``kernel_fwhm``, ``kernel_size`` px), `~photutils.segmentation.detect_sources` with
    ``n_pixels`` and `~photutils.segmentation.deblend_sources` (``n_levels``, ``contrast``).
    More than one source -> ``blended``; none -> ``no_central_source`` (the published code
    keeps exactly one). A cutout on which photutils cannot estimate a background (every box
    loses too many pixels to sigma clipping: a nearly constant image) has no measurable
    source and is ``no_central_source`` too.

    Parameters
    ----------
    image : {"grey", "flux"}
        ``grey``: the 8-bit grey of the viewer's asinh RGB of the masked cutout, as the
        published code; ``flux``: the mean of the masked g, r, z fluxes.
    grey_weights : {"luminance", "published"} or tuple of 3 floats
        As in `PaperMaskNeighbours`.
    box_size, filter_size : int
        Background2D box and median-filter sizes (50, 3).
    threshold_sigma : float
        Detection threshold in units of the background RMS (1.5).
    kernel_fwhm : float
        FWHM of the Gaussian smoothing kernel, px (3).
    kernel_size : int
        Side of the kernel, px (5).
    n_pixels : int
        Fewest connected pixels of a source (10).
    n_levels : int
        Multi-threshold levels of the deblending (90).
    contrast : float
        Smallest flux fraction of a deblended component (1e-6).

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[:64, :64]
    >>> pair = sum(np.exp(-((x - 31.5 - d) ** 2 + (y - 31.5) ** 2) / 8.0) for d in (-8, 8))
    >>> images = np.repeat(pair[None, None], 3, axis=1).astype("f4")
    >>> step = PhotutilsBlendCheck(image="flux", box_size=16)
    >>> step.process(images, {"bands": "grz"}).flags.tolist()
    ['blended']
    """

    name = "blend_check_photutils"
    provides = ("n_sources",)

    def __init__(self, *, image="grey", grey_weights="luminance", box_size=50, filter_size=3,
                 threshold_sigma=1.5, kernel_fwhm=3.0, kernel_size=5, n_pixels=10,
                 n_levels=90, contrast=1e-6):
        self.image = image
        self.grey_weights = grey_weights
        self.box_size = box_size
        self.filter_size = filter_size
        self.threshold_sigma = threshold_sigma
        self.kernel_fwhm = kernel_fwhm
        self.kernel_size = kernel_size
        self.n_pixels = n_pixels
        self.n_levels = n_levels
        self.contrast = contrast

    def process(self, images, context):
        check_choice(self.name, "image", self.image, ("grey", "flux"))
        check_positive(self.name, box_size=self.box_size, filter_size=self.filter_size,
                       threshold_sigma=self.threshold_sigma, kernel_fwhm=self.kernel_fwhm,
                       kernel_size=self.kernel_size, n_pixels=self.n_pixels,
                       n_levels=self.n_levels, contrast=self.contrast)
        from astropy.convolution import Gaussian2DKernel, convolve
        from astropy.stats import gaussian_fwhm_to_sigma

        safe = finite_or_zero(images)
        if self.image == "grey":
            detection = stretched_grey(safe, bands=context.get("bands", "grz"),
                                       weights=self.grey_weights).astype(np.float64)
        else:
            detection = safe.mean(axis=1, dtype=np.float64)
        kernel = Gaussian2DKernel(self.kernel_fwhm * gaussian_fwhm_to_sigma,
                                  x_size=int(self.kernel_size), y_size=int(self.kernel_size))
        kernel.normalize()
        n = images.shape[0]
        counts = np.zeros(n, dtype=np.int64)
        for i in range(n):
            counts[i] = self._count_sources(detection[i], kernel, convolve)
        flags = np.where(counts > 1, "blended", np.where(counts == 0, "no_central_source", OK))
        return StepResult(images=images, flags=flags.astype("<U20"),
                          columns={"n_sources": counts})

    def _count_sources(self, image, kernel, convolve):
        from photutils.background import Background2D, MedianBackground
        from photutils.segmentation import deblend_sources, detect_sources

        if not np.isfinite(image).all() or image.max() == image.min():
            return 0
        box = int(min(self.box_size, *image.shape))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # photutils warns on boxes of masked (zero) pixels
            try:
                background = Background2D(image, box, filter_size=int(self.filter_size),
                                          bkg_estimator=MedianBackground())
            except ValueError:
                # every box lost too many pixels to sigma clipping (a nearly constant
                # image): no background, hence no source can be measured
                return 0
            data = image - background.background
            threshold = self.threshold_sigma * background.background_rms
            smoothed = convolve(data, kernel)
            segments = detect_sources(smoothed, threshold, int(self.n_pixels))
            if segments is None:
                return 0
            # photutils 3.0 renamed nlevels -> n_levels; 2.x (also accepted) has the old name
            levels = "nlevels" if "nlevels" in _parameters(deblend_sources) else "n_levels"
            segments = deblend_sources(smoothed, segments, int(self.n_pixels),
                                       contrast=self.contrast, progress_bar=False,
                                       **{levels: int(self.n_levels)})
        return int(segments.n_labels)


@functools.lru_cache(maxsize=None)
def _parameters(function):
    """The names of ``function``'s parameters (empty when they cannot be read); read once."""
    import inspect

    try:
        return inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}


class PaperFragmentCheck(PreprocessingStep):
    """Reject a masked target that falls apart into several pieces (``fragmented``).

    The published code's second check: the grey of the raw masked fluxes (weights
    0.114 g + 0.587 r + 0.299 z), thresholded with the iterative threshold, must form one
    connected region.

    Parameters
    ----------
    band_weights : tuple of 3 floats
        Weights of the g, r, z bands in the grey image.
    threshold_tolerance, max_iterations : float, int
        As in `PaperMaskNeighbours`.
    min_area : int
        Regions smaller than this many pixels are not counted (published: 1, all count).

    Examples
    --------
    >>> import numpy as np
    >>> images = np.zeros((1, 3, 32, 32), "f4")
    >>> images[0, :, 5:9, 5:9] = 1.0
    >>> images[0, :, 20:25, 20:25] = 1.0
    >>> PaperFragmentCheck().process(images, {}).flags.tolist()
    ['fragmented']
    """

    name = "fragment_check_paper"
    provides = ("n_fragments",)

    def __init__(self, *, band_weights=(0.114, 0.587, 0.299), threshold_tolerance=1e-6,
                 max_iterations=100, min_area=1):
        self.band_weights = band_weights
        self.threshold_tolerance = threshold_tolerance
        self.max_iterations = max_iterations
        self.min_area = min_area

    def process(self, images, context):
        if len(self.band_weights) != images.shape[1]:
            msg = (f"{self.name}: band_weights needs one weight per band "
                   f"({images.shape[1]}), got {self.band_weights!r}")
            raise ParameterError(msg)
        check_positive(self.name, threshold_tolerance=self.threshold_tolerance,
                       max_iterations=self.max_iterations, min_area=self.min_area)
        safe = finite_or_zero(images)
        grey = np.tensordot(np.asarray(self.band_weights, np.float32), safe, axes=([0], [1]))
        n = images.shape[0]
        counts = np.zeros(n, dtype=np.int64)
        for i in range(n):
            threshold, _ = isodata_threshold(grey[i], tolerance=self.threshold_tolerance,
                                             max_iterations=int(self.max_iterations))
            if not math.isfinite(threshold):
                continue
            count, _, stats, _ = cv2.connectedComponentsWithStats(
                (grey[i] > threshold).astype(np.uint8), connectivity=8)
            counts[i] = int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] >= self.min_area))
        flags = np.where(counts > 1, "fragmented", OK).astype("<U20")
        return StepResult(images=images, flags=flags, columns={"n_fragments": counts})
