"""The noise-aware steps of the ``default`` configuration.

They keep the paper's intent (mask the neighbours with a 1.4x enlarged ellipse around the
central galaxy, limit its size to 6", reject blends) but measure the sky level and noise of
each cutout and work on fluxes, not on a clipped colour stretch. All cheap per-pixel work is
done on the whole batch at once; the per-cutout work uses OpenCV on small arrays.
"""

import math

import cv2
import numpy as np

from gpm_astro.base import PreprocessingStep, StepResult
from gpm_astro.survey_constants import PIXEL_SCALE_ARCSEC

from .asymmetry import rotational_asymmetry
from .common import OK, check_choice, check_positive
from .companion import companion_residual
from .imaging import (ellipse_from_moments, ellipse_mask, finite_or_zero, image_centre,
                      label_regions, robust_sky_noise)
from .splitting import split_distant_peaks

__all__ = ["MaskNeighbours", "BlendCheck", "FragmentCheck", "detection_image",
           "rotational_asymmetry"]

TARGET_COLUMNS = ("target_x", "target_y", "target_a", "target_b", "target_theta")
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: how far (px) from the cutout's centre the blend check looks for the target's nucleus: the
#: ``centre_radius`` within which `MaskNeighbours` requires the target to peak (paper: 5 px)
NUCLEUS_RADIUS = 5.0
#: how far (px) the companion test's rotation centre may move from its anchor
COMPANION_SEARCH = 1.0


def detection_image(images, *, smoothing_fwhm=2.0, sample_step=3, clip_sigma=3.0):
    """Noise-weighted, smoothed sum of the bands and its sky level and noise.

    Each band's sky level and noise are measured by clipped median / MAD on every
    ``sample_step``-th pixel; the sky-subtracted bands are combined with inverse-variance
    weights, smoothed with a Gaussian of FWHM ``smoothing_fwhm`` px, and the sky and noise of
    the result are measured again (so correlated noise is accounted for).

    Returns
    -------
    detection : numpy.ndarray
        (n, H, W) float32.
    sky, noise : numpy.ndarray
        (n,) sky level and noise of ``detection`` (noise 0 or NaN when it holds no signal).
    bands : dict
        ``weights`` and ``sky`` (n, bands) of the combination, ``noise`` (n,), the noise
        of the combined image before smoothing, and ``all_finite`` (bool), whether every
        input pixel was finite.
    """
    images = np.asarray(images, dtype=np.float32)
    # copy (and zero NaN / inf) only when some pixel is not finite: a row's sum is finite
    # exactly when all its values are (or it overflows, which only costs the copy)
    with np.errstate(all="ignore"):
        all_finite = bool(np.isfinite(images.sum(axis=(1, 2, 3), dtype=np.float32)).all())
    if not all_finite:
        images = finite_or_zero(images)
    step = max(int(sample_step), 1)
    samples = images[:, :, ::step, ::step].reshape(images.shape[0], images.shape[1], -1)
    band_sky, band_noise = robust_sky_noise(samples, clip_sigma=clip_sigma)
    with np.errstate(all="ignore"):
        band_noise = band_noise.astype(np.float64)
        weights = np.where(np.isfinite(band_noise) & (band_noise > 0),
                           1.0 / band_noise ** 2, 0.0)
        weights = np.where(np.isfinite(weights), weights, 0.0)
        norm = np.sqrt(weights.sum(axis=1, keepdims=True))
        weights = np.where((norm > 0) & np.isfinite(norm),
                           weights / np.where(norm > 0, norm, 1.0), 0.0)
        band_sky = np.where(np.isfinite(band_sky), band_sky, 0.0)
    weights = weights.astype(np.float32)
    detection = np.einsum("nb,nbhw->nhw", weights, images)
    detection -= (weights * band_sky).sum(axis=1).astype(np.float32)[:, None, None]
    _, raw_noise = robust_sky_noise(
        detection[:, ::step, ::step].reshape(detection.shape[0], -1), clip_sigma=clip_sigma)
    bands = {"weights": weights, "sky": band_sky.astype(np.float32), "noise": raw_noise,
             "all_finite": all_finite}
    if smoothing_fwhm > 0:
        sigma = smoothing_fwhm * FWHM_TO_SIGMA
        for i in range(detection.shape[0]):
            cv2.GaussianBlur(detection[i], (0, 0), sigma, dst=detection[i],
                             borderType=cv2.BORDER_REFLECT)
    sky, noise = robust_sky_noise(
        detection[:, ::step, ::step].reshape(detection.shape[0], -1), clip_sigma=clip_sigma)
    return detection, sky, noise, bands


def _disk_offsets(height, width, cx, cy, radius):
    """Pixel (row, column) indices within ``radius`` of (cx, cy), nearest first."""
    y, x = np.mgrid[0:height, 0:width]
    distance = np.hypot(x - cx, y - cy)
    inside = np.flatnonzero(distance.ravel() <= radius)
    order = inside[np.argsort(distance.ravel()[inside], kind="stable")]
    return np.unravel_index(order, (height, width))


def _label_maxima(labels, values, wanted):
    """Largest value of each label in ``wanted`` (each present in ``labels``); a loop over
    the few labels is faster than a sort of all pixels by label."""
    return np.array([values[labels == label].max() for label in wanted], dtype=np.float64)


def _central_peak_position(detection, labels, label, near_rows, near_cols):
    """(x, y) of region ``label``'s highest pixel near the centre."""
    inside = labels[near_rows, near_cols] == label
    best = int(np.argmax(np.where(inside, detection[near_rows, near_cols], -np.inf)))
    return float(near_cols[best]), float(near_rows[best])


def _central_peak(detection, labels, label, near_rows, near_cols):
    """Height of region ``label``'s highest pixel near the centre, or -inf when that pixel is
    not a local maximum (the region only reaches the centre with its wing)."""
    col, row = (int(v) for v in _central_peak_position(detection, labels, label, near_rows,
                                                      near_cols))
    if labels[row, col] != label:  # the region reaches no pixel near the centre
        return -np.inf
    window = detection[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2]
    return float(detection[row, col]) if detection[row, col] >= window.max() else -np.inf


def _centre_on_a_slope(detection, labels, area, near_rows, near_cols, lowest, min_area):
    """Whether the pixels nearest the centre are bright (``lowest`` or more) and belong to a
    detected region that has no local maximum near the centre: the centre lies on the slope
    of a source peaking further away. The target, if there is one, is then a shoulder of
    that source (a blend), not missing."""
    rows, cols = near_rows[:4], near_cols[:4]  # nearest first: the 4 around an even centre
    inside = (labels[rows, cols] > 0) & (area[labels[rows, cols]] >= min_area)
    return bool(np.any(inside & (detection[rows, cols] >= lowest)))


def _nucleus(image, segment, weights, centre, *, radius=NUCLEUS_RADIUS,
             smoothing_fwhm=2.0):
    """(x, y) of the brightest pixel of the segment within ``radius`` px of ``centre``, on
    the combined flux smoothed by a Gaussian of FWHM ``smoothing_fwhm`` px (noise peaks do
    not count); ``centre`` itself when the segment has no pixel there."""
    height, width = segment.shape
    sigma = smoothing_fwhm * FWHM_TO_SIGMA
    pad = int(math.ceil(3 * sigma)) + 1
    xa = max(int(math.floor(centre[0] - radius)) - pad, 0)
    ya = max(int(math.floor(centre[1] - radius)) - pad, 0)
    xb = min(int(math.ceil(centre[0] + radius)) + pad + 1, width)
    yb = min(int(math.ceil(centre[1] + radius)) + pad + 1, height)
    if xb <= xa or yb <= ya:
        return centre
    with np.errstate(over="ignore", invalid="ignore"):
        combined = np.tensordot(weights, np.nan_to_num(image[:, ya:yb, xa:xb]),
                                axes=1).astype(np.float32)
        combined = np.nan_to_num(combined)
    if sigma > 0:
        combined = cv2.GaussianBlur(combined, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    y, x = np.mgrid[ya:yb, xa:xb]
    near = segment[ya:yb, xa:xb] & (np.hypot(x - centre[0], y - centre[1]) <= radius)
    if not near.any():
        return centre
    best = int(np.argmax(np.where(near, combined, -np.inf)))
    return float(x.flat[best]), float(y.flat[best])


class MaskNeighbours(PreprocessingStep):
    """Find the central galaxy on the flux image and mask everything else.

    The bands are combined into a smoothed, noise-weighted detection image (see
    `detection_image`); pixels more than ``threshold_sigma`` x its noise above its sky level
    are segmented into 8-connected regions; the target is the region (of at least
    ``min_area`` px) that covers the pixel nearest the image centre within ``centre_radius``
    px (with ``require_peak``, the region must also peak there, clearly above the noise: a
    neighbour's wing that merely reaches the centre, or a noise bump, does not count). With
    no such region the row is ``no_central_source``, unless the pixels nearest the centre
    stand ``min_peak_sigma`` above the sky in a detected region: the centre then lies on the
    slope of a source peaking further away, and the target is at best a shoulder of it
    (``blended``). Its ellipse has the region's first and second moments; it is enlarged by
    ``enlarge`` and every pixel outside it, and every pixel of another detected source inside
    it (one that peaks ``min_peak_sigma`` above the sky; grown by ``neighbour_dilation`` px)
    when ``mask_other_sources``, is set to 0 in all bands.

    Parameters
    ----------
    threshold_sigma : float
        Detection threshold above the sky, in units of the detection image's noise.
    smoothing_fwhm : float
        FWHM, px, of the Gaussian applied to the detection image.
    min_area : int
        Fewest pixels of a detected region.
    centre_radius : float
        The target region must reach within this many pixels of the image centre (paper: 5).
    require_peak : bool
        The target region must have a local maximum within ``centre_radius``, at least
        ``min_peak_sigma`` x noise above the sky (noise peaks are not galaxies).
    min_peak_sigma : float
        Least height of that maximum, in units of the detection image's noise.
    centre_convention : {"pixel", "published"}
        See `PaperMaskNeighbours`.
    enlarge : float
        Factor applied to both semi-axes of the ellipse (paper: 1.4).
    mask_other_sources : bool
        Also zero other detected sources that fall inside the enlarged ellipse.
    neighbour_dilation : int
        Grow those sources by this many pixels before masking them.
    sample_step : int
        Use every ``sample_step``-th pixel (in x and y) to measure the sky and noise.
    split_beyond : float or None
        A peak of the target's region more than this many arcsec from the target's own peak,
        standing ``split_prominence_sigma`` x noise above its saddle with the target, is a
        neighbour joined by faint wings: its part of the region (`split_distant_peaks`) is
        masked as another source (default 6, the largest target `SizeLimit` keeps; None: the
        region is kept whole, and such a galaxy comes out ``too_large`` or ``blended``).
    split_prominence_sigma : float
        Least height of such a peak above its saddle, in units of the detection noise.
    split_min_own_share : float
        Least share of such a piece's flux that lies above its saddle with the target: a knot
        in a large galaxy's outer disc stands above the saddle too, but its piece is mostly
        the disc's light, which stays with the target (see `split_distant_peaks`).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> y, x = np.mgrid[:64, :64]
    >>> galaxy = 0.5 * np.exp(-((x - 31.5) ** 2 + (y - 31.5) ** 2) / 18.0)
    >>> images = (galaxy + rng.normal(0, 0.01, (1, 3, 64, 64))).astype("f4")
    >>> result = MaskNeighbours().process(images, {})
    >>> result.flags.tolist(), bool(result.images[0, 0, 0, 0] == 0)
    (['ok'], True)
    """

    name = "mask_neighbours"
    provides = TARGET_COLUMNS + ("target_mask", "binary", "segment", "detection",
                                 "detection_sky", "detection_noise", "detection_threshold",
                                 "band_weights", "band_sky", "combined_noise")

    def __init__(self, *, threshold_sigma=1.5, smoothing_fwhm=2.0, min_area=5,
                 centre_radius=5.0, require_peak=True, min_peak_sigma=5.0,
                 centre_convention="pixel", enlarge=1.4,
                 mask_other_sources=True, neighbour_dilation=1, sample_step=3,
                 split_beyond=6.0, split_prominence_sigma=3.0, split_min_own_share=0.3):
        self.threshold_sigma = threshold_sigma
        self.smoothing_fwhm = smoothing_fwhm
        self.min_area = min_area
        self.centre_radius = centre_radius
        self.require_peak = require_peak
        self.min_peak_sigma = min_peak_sigma
        self.centre_convention = centre_convention
        self.enlarge = enlarge
        self.mask_other_sources = mask_other_sources
        self.neighbour_dilation = neighbour_dilation
        self.sample_step = sample_step
        self.split_beyond = split_beyond
        self.split_prominence_sigma = split_prominence_sigma
        self.split_min_own_share = split_min_own_share

    def _validate(self):
        if self.split_beyond is not None:
            check_positive(self.name, split_beyond=self.split_beyond,
                           split_prominence_sigma=self.split_prominence_sigma)
            share = self.split_min_own_share
            if isinstance(share, bool) or not isinstance(share, (int, float, np.number)) \
                    or not 0.0 <= share <= 1.0:
                from gpm_astro.exceptions import ParameterError

                msg = f"{self.name}: split_min_own_share must be a number in [0, 1], got " \
                      f"{share!r}"
                raise ParameterError(msg)
        check_positive(self.name, threshold_sigma=self.threshold_sigma, min_area=self.min_area,
                       centre_radius=self.centre_radius, enlarge=self.enlarge,
                       sample_step=self.sample_step)
        if not (isinstance(self.smoothing_fwhm, (int, float)) and self.smoothing_fwhm >= 0):
            from gpm_astro.exceptions import ParameterError

            msg = f"{self.name}: smoothing_fwhm must be >= 0, got {self.smoothing_fwhm!r}"
            raise ParameterError(msg)
        check_choice(self.name, "centre_convention", self.centre_convention,
                     ("pixel", "published"))

    def _mask_others(self, mask, labels, area, label, detection, segment, lowest, kernel):
        """Zero, in ``mask`` (in place), the other real sources inside it; the work is done
        on the mask's bounding box only (the mask is empty outside it)."""
        x0, y0, w, h = cv2.boundingRect(mask.view(np.uint8))
        if w == 0 or h == 0:
            return
        box = (slice(y0, y0 + h), slice(x0, x0 + w))
        box_mask, box_labels = mask[box], labels[box]
        inside_labels = np.where(box_mask, box_labels, 0)
        # other sources inside the ellipse: large enough and peaking clearly above
        # the noise (noise bumps are left alone)
        inside = np.unique(inside_labels)
        inside = inside[(inside > 0) & (inside != label) & (area[inside] >= self.min_area)]
        if inside.size == 0:
            return
        peaks = _label_maxima(inside_labels, detection[box], inside)
        real = inside[peaks >= lowest]
        if real.size == 0:
            return
        others = np.isin(inside_labels, real)
        if kernel is not None:
            others = cv2.dilate(others.view(np.uint8), kernel).view(bool)
        box_mask &= ~others | segment[box]

    def process(self, images, context):
        self._validate()
        n, _, height, width = images.shape
        detection, sky, noise, bands = detection_image(
            images, smoothing_fwhm=self.smoothing_fwhm, sample_step=self.sample_step)
        threshold = sky + self.threshold_sigma * noise
        cx, cy = image_centre(height, width, self.centre_convention)
        near_rows, near_cols = _disk_offsets(height, width, cx, cy, self.centre_radius)
        flags = np.full(n, OK, dtype="<U20")
        ellipses = np.full((n, 5), np.nan)
        usable = np.isfinite(noise) & (noise > 0)
        with np.errstate(invalid="ignore"):
            binary = detection > threshold[:, None, None]  # the whole batch at once
        binary[~usable] = False
        flags[~usable] = "no_central_source"
        segment = np.zeros((n, height, width), bool)
        masks = np.zeros((n, height, width), bool)
        kernel = None
        if self.neighbour_dilation > 0:
            side = 2 * int(self.neighbour_dilation) + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        lowest_peak = sky + self.min_peak_sigma * noise
        pixel_scale = context.get("pixel_scale", PIXEL_SCALE_ARCSEC)
        for i in np.flatnonzero(usable):
            count, labels, area = label_regions(binary[i])
            near = labels[near_rows, near_cols]
            candidates = near[(near > 0) & (area[near] >= self.min_area)]
            if self.require_peak:
                lowest = sky[i] + self.min_peak_sigma * noise[i]
                candidates = [c for c in dict.fromkeys(candidates.tolist())
                              if _central_peak(detection[i], labels, c, near_rows,
                                               near_cols) >= lowest]
            if len(candidates) == 0:
                slope = self.require_peak and _centre_on_a_slope(
                    detection[i], labels, area, near_rows, near_cols, lowest, self.min_area)
                flags[i] = "blended" if slope else "no_central_source"
                continue
            label = candidates[0]
            if self.split_beyond is not None:
                peak = _central_peak_position(detection[i], labels, label, near_rows, near_cols)
                labels, area = split_distant_peaks(
                    labels, area, label, detection[i], centre=peak, lowest=lowest_peak[i],
                    prominence=self.split_prominence_sigma * noise[i],
                    min_distance=self.split_beyond / pixel_scale,
                    min_own_share=self.split_min_own_share)
                count = len(area)
            np.equal(labels, label, out=segment[i])
            x, y, a, b, theta = ellipse_from_moments(segment[i])
            a, b = a * self.enlarge, b * self.enlarge
            ellipses[i] = x, y, a, b, theta
            mask = ellipse_mask((height, width), x, y, a, b, theta)
            if self.mask_other_sources and count > 2:
                self._mask_others(mask, labels, area, label, detection[i], segment[i],
                                  sky[i] + self.min_peak_sigma * noise[i], kernel)
            masks[i] = mask
        if bands["all_finite"]:
            cleaned = np.where(masks[:, None], images, np.float32(0))
        else:
            keep = masks[:, None] & np.isfinite(images)
            cleaned = np.where(keep, images.astype(np.float32, copy=False), np.float32(0))
        columns = {name: ellipses[:, k] for k, name in enumerate(TARGET_COLUMNS)}
        extras = {"target_mask": masks, "binary": binary, "segment": segment,
                  "detection": detection, "detection_sky": sky, "detection_noise": noise,
                  "detection_threshold": threshold, "band_weights": bands["weights"],
                  "band_sky": bands["sky"], "combined_noise": bands["noise"]}
        return StepResult(images=cleaned, flags=flags, columns=columns, extras=extras)


class BlendCheck(PreprocessingStep):
    """Reject a target whose segment holds more than one peak separated by a saddle.

    A fast deblending restricted to the central segment, on the noise-weighted sum of the
    masked flux bands (the weights of `mask_neighbours`), smoothed only lightly
    (``smoothing_fwhm``) so that the saddle between close galaxies survives. A quick test
    first keeps segments with a single significant local maximum; otherwise the segment is cut
    at ``n_levels`` levels between ``low_sigma`` x noise and its peak (spaced as ``mode``),
    and at each level the pieces of at least ``n_pixels`` px whose peak rises at least
    ``prominence_sigma`` x noise above that level and which hold at least ``contrast`` of the
    segment's flux are counted. Two or more at any level -> ``blended``.

    A close or faint companion often leaves no saddle above the noise, only a shoulder. So a
    segment with one source is also tested for 180-degree rotational asymmetry (see
    `rotational_asymmetry`, on the unsmoothed combined flux): asymmetry above
    ``max_asymmetry`` at a significance above ``asymmetry_sigma`` -> ``blended`` (and
    ``n_sources`` 2). A smooth galaxy (bulge + disc, any inclination) is point-symmetric;
    its noise is removed from the statistic. The ``asymmetry`` column holds the value (the
    refined one above ``max_asymmetry``, the best half-pixel one below it; NaN where the
    deblending already found several sources). Mock galaxies are symmetric, real spirals
    less so: check the limit on real isolated galaxies before trusting it there.

    Parameters
    ----------
    smoothing_fwhm : float
        FWHM, px, of the Gaussian applied before deblending (0: none).
    n_levels : int
        Number of levels (photutils' deblending: 32 by default, the paper 90).
    n_pixels : int
        Fewest pixels of a piece.
    contrast : float
        Smallest fraction of the segment's flux a piece must hold.
    prominence_sigma : float
        How far, in noise units, a piece's peak must rise above the saddle level.
    low_sigma : float
        Lowest level, in noise units above the sky.
    mode : {"exponential", "linear"}
        Spacing of the levels.
    peak_footprint : int
        Side, px, of the window in which a local maximum must be the highest value.
    max_asymmetry : float or None
        Largest rotational asymmetry of a single source; None (the default) runs no asymmetry
        test. The ``strict_blends`` configuration uses 0.06, chosen on the mock sky with seed 7,
        where no clean galaxy's refined asymmetry exceeds 0.045; real spirals are often more
        asymmetric than that, so it is off unless asked for.
    asymmetry_sigma : float
        Least significance (noise units) of the asymmetry for a blend.
    max_companion : float or None
        Largest share of the target's flux the largest piece of its rotation residual may
        hold (see `~gpm_astro_plugins.preprocessing.companion.companion_residual`); above it,
        at a significance above ``asymmetry_sigma`` -> ``blended``. Unlike the total
        asymmetry, clumpy discs (knots, arms) pass it. None: no such test.

    Examples
    --------
    >>> import numpy as np
    >>> from gpm_astro_plugins.preprocessing.noise_aware import MaskNeighbours
    >>> rng = np.random.default_rng(2)
    >>> y, x = np.mgrid[:64, :64]
    >>> pair = sum(np.exp(-((x - 31.5 - d) ** 2 + (y - 31.5) ** 2) / 8.0) for d in (-4, 4))
    >>> images = (pair + rng.normal(0, 0.01, (1, 3, 64, 64))).astype("f4")
    >>> masked = MaskNeighbours().process(images, {})
    >>> rows = dict(masked.columns, **masked.extras)
    >>> BlendCheck().process(masked.images, {"rows": rows}).flags.tolist()
    ['blended']
    """

    name = "blend_check"
    requires = ("segment", "band_weights", "band_sky", "combined_noise")
    provides = ("n_sources", "asymmetry", "companion")

    def __init__(self, *, smoothing_fwhm=1.0, n_levels=32, n_pixels=5, contrast=1e-3,
                 prominence_sigma=3.0, low_sigma=2.0, mode="exponential", peak_footprint=5,
                 max_asymmetry=None, asymmetry_sigma=5.0, max_companion=None):
        self.max_asymmetry = max_asymmetry
        self.max_companion = max_companion
        self.asymmetry_sigma = asymmetry_sigma
        self.smoothing_fwhm = smoothing_fwhm
        self.n_levels = n_levels
        self.n_pixels = n_pixels
        self.contrast = contrast
        self.prominence_sigma = prominence_sigma
        self.low_sigma = low_sigma
        self.mode = mode
        self.peak_footprint = peak_footprint

    def process(self, images, context):
        check_positive(self.name, n_levels=self.n_levels, n_pixels=self.n_pixels,
                       contrast=self.contrast, prominence_sigma=self.prominence_sigma,
                       low_sigma=self.low_sigma, peak_footprint=self.peak_footprint)
        check_choice(self.name, "mode", self.mode, ("exponential", "linear"))
        if self.max_asymmetry is not None:
            check_positive(self.name, max_asymmetry=self.max_asymmetry)
        if self.max_companion is not None:
            check_positive(self.name, max_companion=self.max_companion)
        if not (isinstance(self.asymmetry_sigma, (int, float)) and
                math.isfinite(self.asymmetry_sigma)):
            from gpm_astro.exceptions import ParameterError

            msg = f"{self.name}: asymmetry_sigma must be a finite number, got " \
                  f"{self.asymmetry_sigma!r}"
            raise ParameterError(msg)
        if not (isinstance(self.smoothing_fwhm, (int, float)) and self.smoothing_fwhm >= 0):
            from gpm_astro.exceptions import ParameterError

            msg = f"{self.name}: smoothing_fwhm must be >= 0, got {self.smoothing_fwhm!r}"
            raise ParameterError(msg)
        rows = context["rows"]
        n = images.shape[0]
        counts = np.zeros(n, dtype=np.int64)
        side = int(self.peak_footprint) | 1
        kernel = np.ones((side, side), np.uint8)
        sigma = self.smoothing_fwhm * FWHM_TO_SIGMA
        # white noise shrinks by the root of the sum of the squared 2-D kernel weights
        shrink = float(np.sum(cv2.getGaussianKernel(2 * math.ceil(4 * sigma) + 1, sigma) ** 2)) \
            if sigma > 0 else 1.0
        asymmetry = np.full(n, np.nan)
        companion = np.full(n, np.nan)
        centre = image_centre(images.shape[2], images.shape[3])
        for i in range(n):
            segment, weights = rows["segment"][i], rows["band_weights"][i]
            band_sky, noise = rows["band_sky"][i], float(rows["combined_noise"][i])
            counts[i] = self._count(images[i], segment, weights, band_sky, noise * shrink,
                                    sigma, kernel)
            if counts[i] == 1 and self.max_asymmetry is not None:
                # one peak, but a companion without a saddle can still show as asymmetry
                asymmetry[i], significance = self._asymmetry(images[i], segment, weights,
                                                             band_sky, noise)
                if asymmetry[i] > self.max_asymmetry and significance > self.asymmetry_sigma:
                    counts[i] = 2
            if counts[i] == 1 and self.max_companion is not None:
                # a companion without a saddle: one large piece of the rotation residual
                companion[i], significance = self._companion(images[i], segment, weights,
                                                             band_sky, noise, centre)
                if companion[i] > self.max_companion and significance > self.asymmetry_sigma:
                    counts[i] = 2
        flags = np.where(counts > 1, "blended", np.where(counts == 0, "no_central_source", OK))
        return StepResult(images=images, flags=flags.astype("<U20"),
                          columns={"n_sources": counts, "asymmetry": asymmetry,
                                   "companion": companion})

    def _companion(self, image, segment, weights, band_sky, noise, centre):
        """`companion_residual` of the unsmoothed combined flux, on a crop that holds the
        segment and its rotation about any centre searched (the same result, less work).

        The rotation centre is searched within ``COMPANION_SEARCH`` px of an anchor: the
        image centre moved towards the target's nucleus (its brightest pixel, see
        `_nucleus`) until it is within half a pixel of it. A real galaxy sits a pixel or two
        off the centre of its cutout, and rotated about the centre it would leave a residual
        as large as a companion's; a search that strays further from the nucleus would rotate
        a pair about its light centre."""
        height, width = segment.shape
        nucleus = _nucleus(image, segment, weights, centre)
        centre = tuple(c + math.copysign(max(abs(n - c) - 0.5, 0.0), n - c)
                       for n, c in zip(nucleus, centre))
        x0, y0, w, h = cv2.boundingRect(segment.view(np.uint8))
        margin = 3
        xa = max(int(math.floor(min(x0, 2 * centre[0] - (x0 + w - 1)))) - margin, 0)
        xb = min(int(math.ceil(max(x0 + w - 1, 2 * centre[0] - x0))) + margin + 1, width)
        ya = max(int(math.floor(min(y0, 2 * centre[1] - (y0 + h - 1)))) - margin, 0)
        yb = min(int(math.ceil(max(y0 + h - 1, 2 * centre[1] - y0))) + margin + 1, height)
        crop = image[:, ya:yb, xa:xb]
        if not np.isfinite(crop).all():
            crop = np.nan_to_num(crop)
        combined = np.tensordot(weights, crop, axes=1)
        combined -= np.float32(np.dot(weights, band_sky))
        return companion_residual(combined.astype(np.float32), segment[ya:yb, xa:xb], noise,
                                  centre=(centre[0] - xa, centre[1] - ya),
                                  search=COMPANION_SEARCH)

    def _asymmetry(self, image, segment, weights, band_sky, noise):
        """Rotational asymmetry of the unsmoothed combined flux, on a window that holds the
        segment and its rotation about any centre inside it."""
        height, width = segment.shape
        x0, y0, w, h = cv2.boundingRect(segment.view(np.uint8))
        pad = max(w, h) // 2 + 8
        ya, yb = max(y0 - pad, 0), min(y0 + h + pad, height)
        xa, xb = max(x0 - pad, 0), min(x0 + w + pad, width)
        crop = image[:, ya:yb, xa:xb]
        if not np.isfinite(crop).all():
            crop = np.nan_to_num(crop)
        combined = np.tensordot(weights, crop, axes=1)
        combined -= np.float32(np.dot(weights, band_sky))
        return rotational_asymmetry(combined.astype(np.float32), segment[ya:yb, xa:xb],
                                    noise, refine_above=self.max_asymmetry)

    def _count(self, image, segment, weights, band_sky, noise, sigma, kernel):
        if not segment.any() or not (math.isfinite(noise) and noise > 0):
            return 0
        height, width = segment.shape
        x0, y0, w, h = cv2.boundingRect(segment.view(np.uint8))
        pad = int(math.ceil(3 * sigma)) + 1  # room for the smoothing at the crop's edge
        xa, ya = max(x0 - pad, 0), max(y0 - pad, 0)
        xb, yb = min(x0 + w + pad, width), min(y0 + h + pad, height)
        crop = np.tensordot(weights, np.nan_to_num(image[:, ya:yb, xa:xb]), axes=1)
        crop -= float(np.dot(weights, band_sky))
        if sigma > 0:
            crop = cv2.GaussianBlur(crop.astype(np.float32), (0, 0), sigma,
                                    borderType=cv2.BORDER_REFLECT)
        seg = segment[ya:yb, xa:xb]
        values = np.where(seg, crop, 0.0).astype(np.float32)
        prominence = self.prominence_sigma * noise
        low = self.low_sigma * noise
        peak = float(values.max())
        if peak <= low + prominence:
            return 1
        # quick exit: a single significant local maximum cannot be a blend
        local_max = (values >= cv2.dilate(values, kernel)) & seg & (values > low + prominence)
        if np.count_nonzero(local_max) <= 1:
            return 1
        total = float(np.sum(np.maximum(values[seg] - low, 0.0)))
        steps = np.arange(1, self.n_levels + 1) / (self.n_levels + 1)
        if self.mode == "exponential":
            levels = low * (peak / low) ** steps
        else:
            levels = low + (peak - low) * steps
        best = 1
        for level in levels:
            if level + prominence > peak:
                break
            count, labels, area = label_regions(values > level)
            big = np.flatnonzero(area[1:] >= self.n_pixels) + 1
            if big.size < 2:
                continue
            peaks = _label_maxima(labels, values, big)
            fluxes = np.bincount(labels.ravel(), weights=(values - low).ravel(),
                                 minlength=count)[big]
            significant = (peaks - level >= prominence) & \
                (fluxes >= self.contrast * max(total, 1e-30))
            best = max(best, int(np.count_nonzero(significant)))
        return best


class FragmentCheck(PreprocessingStep):
    """Reject a target whose aperture holds several separate significant pieces.

    Counts the 8-connected regions of the thresholded detection image inside the target's
    mask (after neighbours were masked) that have at least ``min_area`` px and peak at least
    ``min_peak_sigma`` x noise above the sky (noise bumps do not count); more than one ->
    ``fragmented``.

    Parameters
    ----------
    min_area : int
        Fewest pixels of a region that counts.
    min_peak_sigma : float
        Least peak height of a region that counts, in units of the detection noise.

    Examples
    --------
    >>> import numpy as np
    >>> binary = np.zeros((1, 32, 32), bool)
    >>> binary[0, 5:10, 5:10] = binary[0, 20:25, 20:25] = True
    >>> rows = {"binary": binary, "target_mask": np.ones_like(binary),
    ...         "detection": binary * 10.0, "detection_sky": np.zeros(1),
    ...         "detection_noise": np.ones(1)}
    >>> FragmentCheck().process(np.zeros((1, 3, 32, 32), "f4"), {"rows": rows}).flags.tolist()
    ['fragmented']
    """

    name = "fragment_check"
    requires = ("binary", "target_mask", "detection", "detection_sky", "detection_noise")
    provides = ("n_fragments",)
    reads_images = False

    def __init__(self, *, min_area=10, min_peak_sigma=5.0):
        self.min_area = min_area
        self.min_peak_sigma = min_peak_sigma

    def process(self, images, context):
        check_positive(self.name, min_area=self.min_area, min_peak_sigma=self.min_peak_sigma)
        rows = context["rows"]
        n = images.shape[0]
        counts = np.zeros(n, dtype=np.int64)
        for i in range(n):
            mask = rows["target_mask"][i]
            x0, y0, w, h = cv2.boundingRect(mask.view(np.uint8))
            region = rows["binary"][i][y0:y0 + h, x0:x0 + w] & mask[y0:y0 + h, x0:x0 + w]
            if not region.any():
                continue
            count, labels, area = label_regions(region)
            big = np.flatnonzero(area[1:] >= self.min_area) + 1
            if big.size == 0:
                continue
            detection = rows["detection"][i][y0:y0 + h, x0:x0 + w]
            peaks = _label_maxima(labels, detection, big)
            lowest = float(rows["detection_sky"][i]) + \
                self.min_peak_sigma * float(rows["detection_noise"][i])
            counts[i] = int(np.count_nonzero(peaks >= lowest))
        flags = np.where(counts > 1, "fragmented", OK).astype("<U20")
        return StepResult(images=images, flags=flags, columns={"n_fragments": counts})
