"""Image operations shared by the preprocessing steps.

Everything here works on plain numpy arrays and never raises on NaN, inf, constant or
all-zero input: callers get a defined (possibly empty) answer instead.
"""

import math

import cv2
import numpy as np

__all__ = [
    "LS_RGB_SCALES",
    "GREY_WEIGHTS",
    "ls_rgb",
    "grey_image",
    "isodata_threshold",
    "robust_sky_noise",
    "finite_or_zero",
    "ellipse_mask",
    "ellipse_from_moments",
    "cv_ellipse_to_axes",
    "enclosing_circle",
    "largest_component",
    "label_regions",
    "image_centre",
]

#: Legacy Survey viewer RGB: band -> (RGB plane, scale); plane 0 = R holds z, 2 = B holds g.
LS_RGB_SCALES = {"g": (2, 6.0), "r": (1, 3.4), "z": (0, 2.2)}
#: |flux| (nanomaggies) above which `ls_rgb` clips a pixel: its planes saturate long before
RGB_FLUX_LIMIT = np.float32(1e10)

#: Weights of the (R, G, B) planes of the viewer RGB (R = z, G = r, B = g) in the grey image.
#: ``luminance`` is the ITU-R BT.601 luminance of that RGB (what the paper describes);
#: ``published`` is what the published code computes (OpenCV BGR-to-grey on an RGB array, so
#: the weights of R and B are swapped: 0.114 z + 0.587 r + 0.299 g).
GREY_WEIGHTS = {"luminance": (0.299, 0.587, 0.114), "published": (0.114, 0.587, 0.299)}


def image_centre(height, width, convention="pixel"):
    """Return the (x, y) centre of an image in 0-based pixel coordinates.

    ``"pixel"``: the geometric centre, ((width - 1) / 2, (height - 1) / 2), where the Legacy
    Survey cutout service puts the requested position. ``"published"``: (width / 2,
    height / 2), i.e. (76.0, 76.0) for 152 px, as the published code does.
    """
    if convention == "pixel":
        return (width - 1) / 2.0, (height - 1) / 2.0
    if convention == "published":
        return width / 2.0, height / 2.0
    msg = f"centre convention must be 'pixel' or 'published', got {convention!r}"
    raise ValueError(msg)


def ls_rgb(images, *, bands="grz", q=20.0, offset=0.03, scales=None):
    """Map g, r, z fluxes (n, 3, H, W) to the Legacy Survey viewer's asinh RGB.

    The mean of the scaled, offset bands sets an arcsinh stretch (softening ``q``); each plane
    is scaled by the same stretch factor and clipped to [0, 1]. Returns (n, 3, H, W) float32
    with planes (R, G, B) = (z, r, g).
    """
    scales = LS_RGB_SCALES if scales is None else scales
    images = finite_or_zero(images)
    # far beyond any real flux every plane saturates (0 or 1); clipping there leaves the RGB
    # unchanged and keeps the float32 arithmetic below finite for absurd inputs (1e30)
    np.clip(images, -RGB_FLUX_LIMIT, RGB_FLUX_LIMIT, out=images)
    n, _, height, width = images.shape
    rgb = np.zeros((n, 3, height, width), np.float32)
    planes = []
    total = np.zeros((n, height, width), np.float32)
    for index, band in enumerate(bands):
        plane, scale = scales[band]
        scaled = images[:, index] * np.float32(scale) + np.float32(offset)
        planes.append((plane, scaled))
        total += np.maximum(scaled, 0.0)
    mean = total / len(bands)
    stretch = np.arcsinh(q * mean) / math.sqrt(q)
    factor = np.where(mean > 0, stretch / np.where(mean > 0, mean, 1.0), 0.0)
    for plane, scaled in planes:
        rgb[:, plane] = scaled * factor
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return rgb


def grey_image(rgb, weights="luminance"):
    """Weighted sum of the (R, G, B) planes of ``rgb`` (n, 3, H, W); ``weights`` is a name in
    `GREY_WEIGHTS` or three numbers."""
    w = GREY_WEIGHTS[weights] if isinstance(weights, str) else tuple(weights)
    return (w[0] * rgb[:, 0] + w[1] * rgb[:, 1] + w[2] * rgb[:, 2]).astype(np.float32)


def isodata_threshold(values, *, tolerance=1e-3, max_iterations=100):
    """Ridler-Calvard iterative threshold of an array of numbers.

    T0 = (max + min) / 2; then T <- (mean(values >= T) + mean(values < T)) / 2 until T
    changes by at most ``tolerance`` or ``max_iterations`` passes were made.

    Returns
    -------
    threshold : float
        NaN when there are no finite values; the single value of a constant array.
    iterations : int
        The number of updates made (``max_iterations`` means the cap stopped it).
    """
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[np.isfinite(data)]
    if data.size == 0:
        return math.nan, 0
    low, high = float(data.min()), float(data.max())
    threshold = (low + high) / 2.0
    if high == low:
        return threshold, 0
    # integer images (the 8-bit grey of the published code) iterate on a histogram
    if np.all(data == np.round(data)) and high - low < 65536:
        counts = np.bincount((data - low).astype(np.int64)).astype(np.float64)
        levels = np.arange(counts.size, dtype=np.float64) + low
        cum_n = np.cumsum(counts)
        cum_s = np.cumsum(counts * levels)
        total_n, total_s = cum_n[-1], cum_s[-1]

        def split(t):
            k = int(math.ceil(t - low))  # values >= t start at histogram index k
            k = min(max(k, 0), counts.size)
            below_n = cum_n[k - 1] if k > 0 else 0.0
            below_s = cum_s[k - 1] if k > 0 else 0.0
            return below_n, below_s, total_n - below_n, total_s - below_s
    else:
        def split(t):
            above = data >= t
            above_n = float(np.count_nonzero(above))
            above_s = float(data[above].sum())
            return (data.size - above_n, float(data.sum()) - above_s, above_n, above_s)

    for iteration in range(1, max_iterations + 1):
        below_n, below_s, above_n, above_s = split(threshold)
        if below_n == 0 or above_n == 0:
            return threshold, iteration
        new = (below_s / below_n + above_s / above_n) / 2.0
        if abs(new - threshold) <= tolerance:
            return new, iteration
        threshold = new
    return threshold, max_iterations


def robust_sky_noise(samples, *, clip_sigma=3.0, iterations=2):
    """Sky level and noise of many images at once, by sigma-clipped percentiles.

    Each row is sorted once; the sky is the median of the values kept, the noise half the
    distance between their 15.87th and 84.13th percentiles (one sigma for Gaussian noise).
    Values further than ``clip_sigma`` noise from the sky (sources, mostly) are dropped and the
    statistics taken again, ``iterations`` times. Fully vectorised: no Python loop over rows.

    Parameters
    ----------
    samples : numpy.ndarray
        (..., k) pixel values; the statistics are taken over the last axis. Non-finite values
        are ignored.
    clip_sigma : float
        Values further than this many sigma from the sky are dropped before the next pass.
    iterations : int
        Number of clipping passes.

    Returns
    -------
    sky, noise : numpy.ndarray
        Arrays of shape ``samples.shape[:-1]``; noise is 0 for constant input; both are NaN
        when no value is finite.

    Examples
    --------
    >>> import numpy as np
    >>> values = np.random.default_rng(0).normal(5.0, 2.0, (1, 20000))
    >>> values[0, :500] = 1e4  # a bright source
    >>> sky, noise = robust_sky_noise(values)
    >>> round(float(sky[0]), 1), round(float(noise[0]), 1)
    (5.0, 2.0)
    """
    data = np.asarray(samples, dtype=np.float32)
    lead = data.shape[:-1]
    data = data.reshape(-1, data.shape[-1])
    finite = np.isfinite(data)
    data = np.sort(np.where(finite, data, np.inf), axis=-1)  # non-finite values sort last
    rows = np.arange(data.shape[0])
    low = np.zeros(data.shape[0], np.int64)
    high = finite.sum(axis=-1)

    last = data.shape[-1] - 1

    def percentile(fraction):
        position = low + fraction * np.maximum(high - low - 1, 0)
        below = np.clip(np.floor(position).astype(np.int64), 0, last)
        above = np.clip(np.minimum(below + 1, high - 1), 0, last)
        weight = position - below
        with np.errstate(invalid="ignore", over="ignore"):
            return (data[rows, below].astype(np.float64) * (1 - weight)
                    + data[rows, above].astype(np.float64) * weight)

    for iteration in range(iterations + 1):
        sky = percentile(0.5)
        noise = (percentile(0.841345) - percentile(0.158655)) / 2.0
        if iteration == iterations:
            break
        with np.errstate(invalid="ignore"):
            cut_low = (sky - clip_sigma * noise)[:, None]
            cut_high = (sky + clip_sigma * noise)[:, None]
            low = (data < cut_low).sum(axis=-1)
            high = (data <= cut_high).sum(axis=-1)
    empty = (high <= low) | ~np.isfinite(sky) | ~np.isfinite(noise)
    sky = np.where(empty, np.nan, sky).astype(np.float32).reshape(lead)
    noise = np.where(empty, np.nan, noise).astype(np.float32).reshape(lead)
    return sky, noise


def finite_or_zero(images):
    """A float32 copy of ``images`` with NaN and inf replaced by 0."""
    out = np.array(images, dtype=np.float32, copy=True)
    out[~np.isfinite(out)] = 0.0
    return out


def as_uint8(region):
    """A boolean image as uint8 for OpenCV, without a copy when it is contiguous."""
    region = np.asarray(region)
    if region.dtype == bool and region.flags.c_contiguous:
        return region.view(np.uint8)
    return region.astype(np.uint8)


_GRID_CACHE = {}


def _grid(height, width):
    key = (height, width)
    if key not in _GRID_CACHE:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        _GRID_CACHE[key] = (x, y)
    return _GRID_CACHE[key]


def ellipse_mask(shape, x, y, a, b, theta_deg):
    """Boolean (H, W) mask of the pixels whose centres lie inside an ellipse.

    ``a`` is the semi-axis along direction ``theta_deg`` (from +x towards +y), ``b`` the other.
    A non-finite or non-positive axis gives an empty mask.
    """
    height, width = shape
    if not all(math.isfinite(v) for v in (x, y, a, b, theta_deg)) or a <= 0 or b <= 0:
        return np.zeros(shape, bool)
    gx, gy = _grid(height, width)
    # restrict the work to the ellipse's bounding box
    reach = max(a, b)
    x0, x1 = max(int(math.floor(x - reach)), 0), min(int(math.ceil(x + reach)) + 1, width)
    y0, y1 = max(int(math.floor(y - reach)), 0), min(int(math.ceil(y + reach)) + 1, height)
    mask = np.zeros(shape, bool)
    if x0 >= x1 or y0 >= y1:
        return mask
    dx = gx[y0:y1, x0:x1] - np.float32(x)
    dy = gy[y0:y1, x0:x1] - np.float32(y)
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    mask[y0:y1, x0:x1] = u * u + v * v <= 1.0
    return mask


def ellipse_from_moments(region):
    """Ellipse with the same first and second moments as a boolean region.

    For a filled ellipse the semi-axes equal twice the square roots of the eigenvalues of the
    pixel-coordinate covariance, so the result traces the region's outline.

    Returns
    -------
    tuple
        (x, y, a, b, theta_deg) with a >= b and theta in [0, 180); NaNs for an empty region.
    """
    m = cv2.moments(as_uint8(region), binaryImage=True)
    if m["m00"] <= 0:
        return (math.nan,) * 5
    x, y = m["m10"] / m["m00"], m["m01"] / m["m00"]
    # +1/12 per axis: the variance of a uniform unit pixel, so one pixel is not a point
    cxx = m["mu20"] / m["m00"] + 1.0 / 12.0
    cyy = m["mu02"] / m["m00"] + 1.0 / 12.0
    cxy = m["mu11"] / m["m00"]
    half_trace = (cxx + cyy) / 2.0
    root = math.sqrt(max(((cxx - cyy) / 2.0) ** 2 + cxy * cxy, 0.0))
    major, minor = half_trace + root, max(half_trace - root, 0.0)
    theta = 0.5 * math.degrees(math.atan2(2.0 * cxy, cxx - cyy)) % 180.0
    return x, y, 2.0 * math.sqrt(major), 2.0 * math.sqrt(minor), theta


def cv_ellipse_to_axes(rotated_rect):
    """Convert OpenCV's ``((cx, cy), (width, height), angle)`` to (x, y, a, b, theta_deg) with
    a >= b and theta the direction of the major axis in [0, 180)."""
    (cx, cy), (w, h), angle = rotated_rect
    if w >= h:
        return cx, cy, w / 2.0, h / 2.0, angle % 180.0
    return cx, cy, h / 2.0, w / 2.0, (angle + 90.0) % 180.0


def enclosing_circle(region):
    """Minimum enclosing circle (x, y, radius) of the pixel centres of a boolean region.

    Returns NaNs for an empty region and radius 0 for a single pixel.
    """
    contours, _ = cv2.findContours(as_uint8(region), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return math.nan, math.nan, math.nan
    points = np.concatenate(contours, axis=0)
    (x, y), radius = cv2.minEnclosingCircle(points)
    return float(x), float(y), float(radius)


def label_regions(region):
    """8-connected regions of a boolean image: ``(count, labels, areas)``.

    The labels of `cv2.connectedComponents` (label 0 the background) and each label's pixel
    count: the same numbers as ``connectedComponentsWithStats`` gives (its ``CC_STAT_AREA``),
    in about 60 % of its time on a 152 x 152 cutout, since no other statistic is computed.
    """
    count, labels = cv2.connectedComponents(as_uint8(region), connectivity=8)
    return count, labels, np.bincount(labels.ravel(), minlength=count)


def largest_component(region, connectivity=8):
    """The largest connected component of a boolean region (empty when the region is)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        as_uint8(region), connectivity=connectivity)
    if count <= 1:
        return np.zeros(region.shape, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best
