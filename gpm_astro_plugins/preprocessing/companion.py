"""Asymmetry tests for companions that leave no saddle: the total rotational asymmetry, and
the largest piece of the rotation residual, which clumpy discs pass.

A companion that leaves no saddle above the noise still shows when the target is rotated by
180 degrees about its own nucleus: the residual (image minus its rotation) holds the companion
as one coherent piece, of a sizeable share of the target's flux. HII-region knots and spiral
arms make a disc asymmetric too, but their residual is many small pieces, and two-armed
spirals are nearly point-symmetric: so the statistic is the share of the flux held by the
*largest single piece* of the positive residual, not the total asymmetry (which knots raise
as much as a faint companion does; see docs/preprocessing.rst, "Clumpy discs").
"""

import math

import cv2
import numpy as np

from .asymmetry import rotation_window, rotational_asymmetry
from .imaging import label_regions

__all__ = ["companion_residual", "rotational_asymmetry"]

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def companion_residual(image, segment, noise, *, centre, smoothing_fwhm=3.0,
                       threshold_sigma=3.0, search=1.0):
    """Share of the target's flux in the largest piece of its 180-degree rotation residual.

    The rotation centre is searched on the half-pixel grid within ``search`` px of
    ``centre`` (the cutout is centred on the catalogued target; 1 px: 25 centres), where
    a rotation is an exact array flip; the centre that leaves the least summed absolute
    residual over the segment and its rotation is kept. Anchoring at the target keeps a pair
    from being rotated about its light centre, between the two galaxies, where it looks
    symmetric. The residual is smoothed (Gaussian of FWHM ``smoothing_fwhm`` px), its positive
    part above ``threshold_sigma`` times its noise, inside the segment and its rotation, is cut
    into 8-connected pieces, and the largest piece's residual flux is compared with the flux
    of the segment.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) float32 sky-subtracted flux.
    segment : numpy.ndarray
        (H, W) bool, the target's pixels.
    noise : float
        Per-pixel noise of ``image``.
    centre : (float, float)
        Where the target should be (x, y), 0-based pixels: the cutout's centre.

    Returns
    -------
    fraction : float
        The largest piece's flux over the segment's absolute flux (0 when no piece).
    significance : float
        That piece's flux over its noise (noise x sqrt(2 x its pixels)).
        Both NaN when the segment is empty or cannot be rotated within the image.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[:64, :64]
    >>> disc = np.exp(-np.hypot(x - 31.5, y - 31.5) / 3.0).astype("f4")
    >>> pair = disc + 0.4 * np.exp(-np.hypot(x - 39.5, y - 31.5) / 2.0).astype("f4")
    >>> [round(companion_residual(im, im > 0.01, 1e-4, centre=(31.5, 31.5))[0], 2)
    ...  for im in (disc, pair)]
    [0.0, 0.09]
    """
    if not segment.any() or not (math.isfinite(noise) and noise > 0):
        return math.nan, math.nan
    # absurd pixel values (the fuzz tests) overflow float32 sums to inf: a value, not a fault
    with np.errstate(over="ignore", invalid="ignore"):
        return _companion_residual(image, segment, noise, centre, smoothing_fwhm,
                                   threshold_sigma, search)


def _companion_residual(image, segment, noise, centre, smoothing_fwhm, threshold_sigma,
                        search):
    best = _best_rotation(image, segment, centre, search)
    if best is None:
        return math.nan, math.nan
    _, window, union = best
    flux = image[window]
    residual = np.ascontiguousarray(flux - flux[::-1, ::-1], dtype=np.float32)
    total = float(np.abs(flux[segment[window]]).sum())
    sigma = smoothing_fwhm * FWHM_TO_SIGMA
    shrink = 1.0
    if sigma > 0:
        smooth = cv2.GaussianBlur(residual, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        kernel = cv2.getGaussianKernel(2 * math.ceil(4 * sigma) + 1, sigma)
        shrink = float(np.sum(kernel ** 2))  # 2-D: the 1-D sum squared, rooted
    else:
        smooth = residual
    level = threshold_sigma * noise * math.sqrt(2.0) * shrink
    pieces = (smooth > level) & union
    count, labels, areas = label_regions(pieces)
    if count <= 1:
        return 0.0, 0.0
    fluxes = np.bincount(labels.ravel(), weights=np.where(pieces, residual, 0.0).ravel(),
                         minlength=count)[1:]
    largest = int(np.argmax(fluxes))
    area = int(areas[largest + 1])
    return (float(fluxes[largest]) / max(total, 1e-30),
            float(fluxes[largest]) / (noise * math.sqrt(2.0 * area)))


def _rotation_residual(image, segment, box, x_twice, y_twice):
    """(summed |image - rotation| over the segment and its rotation, window, union) for the
    rotation about (x_twice / 2, y_twice / 2); None when the window leaves the image."""
    window = rotation_window(segment, box, x_twice, y_twice)
    if window is None:
        return None
    flux, seg = image[window], segment[window]
    union = seg | seg[::-1, ::-1]
    difference = flux - flux[::-1, ::-1]
    np.abs(difference, out=difference)
    return float(np.sum(difference, where=union)), window, union


def _best_rotation(image, segment, centre, search):
    """The half-pixel centre within ``search`` px of ``centre`` that leaves the least residual,
    found by descent: from the nearest half-pixel centre, move to the best of the eight
    neighbours until none is better (each centre is evaluated once)."""
    box = cv2.boundingRect(segment.view(np.uint8))
    start = (int(round(2 * centre[0])), int(round(2 * centre[1])))
    reach = int(round(2 * search))
    seen = {}

    def value(point):
        if point not in seen:
            inside = max(abs(point[0] - start[0]), abs(point[1] - start[1])) <= reach
            seen[point] = _rotation_residual(image, segment, box, *point) if inside else None
        return seen[point]

    current = start
    if value(current) is None:
        candidates = [(dx, dy) for dx in range(-reach, reach + 1)
                      for dy in range(-reach, reach + 1)]
        found = [(value((start[0] + dx, start[1] + dy)), (start[0] + dx, start[1] + dy))
                 for dx, dy in candidates]
        found = [(v, point) for v, point in found if v is not None]
        if not found:
            return None
        current = min(found, key=lambda item: item[0][0])[1]
    while True:
        neighbours = [(current[0] + dx, current[1] + dy) for dx in (-1, 0, 1)
                      for dy in (-1, 0, 1) if dx or dy]
        better = [point for point in neighbours
                  if value(point) is not None and value(point)[0] < value(current)[0]]
        if not better:
            return value(current)
        current = min(better, key=lambda point: value(point)[0])
