"""Tests of the Legacy-Survey-viewer colour mapping."""

import numpy as np
import pytest

from gpm_astro.exceptions import ParameterError
from gpm_astro.visualization import lupton_rgb_grz, plot_cutout_grid


def test_blank_sky_is_the_viewer_grey():
    rgb = lupton_rgb_grz(np.zeros((3, 2, 2)))
    # every band is m = 0.03 after scaling: I = 0.03 and each channel is asinh(20 I) / sqrt(20)
    expected = np.arcsinh(20 * 0.03) / np.sqrt(20)
    np.testing.assert_allclose(rgb, expected, rtol=1e-6)


def test_channels_are_z_r_g():
    for band, channel in ((0, 2), (1, 1), (2, 0)):  # g -> blue, r -> green, z -> red
        cutout = np.zeros((3, 1, 1))
        cutout[band] = 0.2
        rgb = lupton_rgb_grz(cutout)[0, 0]
        assert np.argmax(rgb) == channel


def test_formula_clipping_nan_and_batches():
    cutout = np.array([0.1, 0.2, 0.3])[:, None, None] * np.ones((3, 2, 2))
    scaled = np.array([0.1 * 6.0, 0.2 * 3.4, 0.3 * 2.2]) + 0.03
    intensity = scaled.mean()
    expected = scaled * np.arcsinh(20 * intensity) / np.sqrt(20) / intensity
    np.testing.assert_allclose(lupton_rgb_grz(cutout)[0, 0], np.clip(expected[::-1], 0, 1),
                               rtol=1e-6)
    bright = lupton_rgb_grz(np.full((3, 1, 1), 1e4))
    assert bright.max() == 1.0
    batch = np.stack([cutout, np.full((3, 2, 2), np.nan)])
    rgb = lupton_rgb_grz(batch)
    assert rgb.shape == (2, 2, 2, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[1], lupton_rgb_grz(np.zeros((3, 2, 2))))


def test_bad_inputs():
    with pytest.raises(ParameterError, match="shape"):
        lupton_rgb_grz(np.zeros((4, 2, 2)))
    with pytest.raises(ParameterError, match="q must"):
        lupton_rgb_grz(np.zeros((3, 2, 2)), q=0)
    with pytest.raises(ParameterError, match="scales"):
        lupton_rgb_grz(np.zeros((3, 2, 2)), scales=(1, 2))


def test_grid_figure():
    import matplotlib

    matplotlib.use("Agg")
    fig = plot_cutout_grid([[np.zeros((3, 8, 8))] * 2, [np.zeros((3, 8, 8))]],
                           row_labels=["a", "b"])
    assert len(fig.axes) == 4
    assert fig.axes[0].get_ylabel() == "a"
