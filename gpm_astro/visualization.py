"""Colour images of g, r, z cutouts as the Legacy Survey viewer draws them.

The viewer's colour images (and the published GPM-ResNet preprocessing, METHOD.md §3.1) use an
arcsinh stretch of the summed intensity (Lupton et al. 2004 style) with per-band scales
g 6.0, r 3.4, z 2.2, an offset m = 0.03 and softening Q = 20, clipped to [0, 1], with
red = z, green = r, blue = g.
"""

import numpy as np

from .exceptions import ParameterError

__all__ = ["lupton_rgb_grz", "plot_cutout_grid", "VIEWER_SCALES", "VIEWER_Q", "VIEWER_M"]

#: per-band multipliers of the Legacy Survey viewer (g, r, z)
VIEWER_SCALES = (6.0, 3.4, 2.2)
#: arcsinh softening of the viewer
VIEWER_Q = 20.0
#: offset added to every scaled band before the stretch
VIEWER_M = 0.03


def lupton_rgb_grz(cutout, *, q=VIEWER_Q, scales=VIEWER_SCALES, m=VIEWER_M):
    """Map g, r, z fluxes to an RGB image the way the Legacy Survey viewer does.

    For each band b, ``x_b = max(0, flux_b * scale_b + m)``; the mean ``I`` of the three is
    stretched to ``f(I) = arcsinh(q I) / sqrt(q)`` and every band becomes
    ``x_b * f(I) / I``, clipped to [0, 1]. Red is z, green r, blue g.

    Parameters
    ----------
    cutout : array-like, shape (..., 3, H, W)
        g, r, z fluxes in nanomaggies (any leading batch axes). NaN is treated as 0.
    q : float, optional
        arcsinh softening.
    scales : sequence of 3 floats, optional
        Multipliers of g, r, z.
    m : float, optional
        Offset added after scaling.

    Returns
    -------
    numpy.ndarray, shape (..., H, W, 3)
        float32 RGB in [0, 1] with channels (R, G, B) = (z, r, g), ready for ``imshow``.

    Raises
    ------
    ParameterError
        If the band axis is not of length 3, or ``q`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = lupton_rgb_grz(np.zeros((3, 4, 4)))
    >>> rgb.shape, float(rgb.min()) >= 0.0
    ((4, 4, 3), True)
    """
    fluxes = np.asarray(cutout, dtype=np.float64)
    if fluxes.ndim < 3 or fluxes.shape[-3] != 3:
        msg = f"cutout must have shape (..., 3, H, W) with bands g, r, z, got {fluxes.shape}"
        raise ParameterError(msg)
    if not q > 0:
        msg = f"q must be positive, got {q!r}"
        raise ParameterError(msg)
    scales = np.asarray(scales, dtype=np.float64)
    if scales.shape != (3,):
        msg = f"scales must hold 3 numbers (g, r, z), got {scales!r}"
        raise ParameterError(msg)
    fluxes = np.nan_to_num(fluxes, nan=0.0, posinf=0.0, neginf=0.0)
    scaled = np.maximum(0.0, fluxes * scales[:, None, None] + m)
    intensity = scaled.mean(axis=-3, keepdims=True)
    safe = np.where(intensity > 0, intensity, 1.0)
    stretch = np.where(intensity > 0, np.arcsinh(q * intensity) / np.sqrt(q) / safe, 0.0)
    rgb = np.clip(scaled * stretch, 0.0, 1.0)
    # bands (g, r, z) -> channels (R, G, B) = (z, r, g), channel axis last
    return np.moveaxis(rgb[..., ::-1, :, :], -3, -1).astype(np.float32)


def plot_cutout_grid(cutouts, *, row_labels=None, n_columns=None, panel_size=1.3, **rgb):
    """Draw cutouts as viewer-style colour images in a grid, one row per group.

    Parameters
    ----------
    cutouts : sequence of sequences of arrays (3, H, W)
        ``cutouts[i][j]`` is row i, column j.
    row_labels : sequence of str, optional
        Label written left of each row.
    n_columns : int, optional
        Columns (default: the longest row).
    panel_size : float, optional
        Inches per panel.
    **rgb
        Passed to `lupton_rgb_grz`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    n_rows = len(cutouts)
    n_columns = n_columns or max((len(r) for r in cutouts), default=1)
    fig, axes = plt.subplots(n_rows, n_columns, squeeze=False,
                             figsize=(panel_size * n_columns + 0.8, panel_size * n_rows))
    for i, row in enumerate(cutouts):
        for j in range(n_columns):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(row):
                ax.imshow(lupton_rgb_grz(row[j], **rgb), origin="lower", interpolation="nearest")
            else:
                ax.axis("off")
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.99, top=0.99, bottom=0.01, wspace=0.03, hspace=0.03)
    return fig
