"""Small synthetic cutouts whose label is carried by morphology (size and ellipticity)."""

import numpy as np
import pytest
from astropy.table import Table


def make_galaxies(n, *, size=24, seed=0, noise=0.002):
    """Exponential discs: label = 8.4 + 0.08 * half-light radius (px) + 0.3 * axis ratio."""
    rng = np.random.default_rng(seed)
    radius = rng.uniform(1.5, 5.0, n)
    axis_ratio = rng.uniform(0.4, 1.0, n)
    angle = rng.uniform(0, np.pi, n)
    brightness = rng.uniform(0.5, 2.0, n)
    colour = np.array([0.6, 1.0, 1.4], dtype=np.float32)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    images = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        c, s = np.cos(angle[i]), np.sin(angle[i])
        u = (xx * c + yy * s)
        v = (-xx * s + yy * c) / axis_ratio[i]
        profile = brightness[i] * np.exp(-1.68 * np.hypot(u, v) / radius[i])
        images[i] = colour[:, None, None] * profile
    images += rng.normal(0, noise, images.shape).astype(np.float32)
    label = 8.4 + 0.08 * radius + 0.3 * axis_ratio
    table = Table({"cutout": images, "oh_p50": label,
                   "lgm_fib_p50": 8.5 + 0.4 * radius})
    table.meta["bands"] = "grz"
    table.meta["pixel_scale"] = 0.262
    return table


def error_head_config(**changes):
    """A minimal network with the error head, AdamW and a one-cycle schedule (2 epochs)."""
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    params = dict(name="test", width=0.125, blocks=(1, 1, 1, 1), input_size=None,
                  input_scaling="asinh", drop_prob=0.0, epochs=2, batch_size=32, lr=3e-3,
                  optimizer="adamw", lr_schedule="onecycle", standardize_target=True,
                  error_head=True, head_hidden=16)
    return GPMResNetConfig(**{**params, **changes})


@pytest.fixture
def galaxies():
    return make_galaxies(64, seed=1)


@pytest.fixture
def tiny_config():
    """A minimal network for fast tests: 24 px input, width 1/8, one block per stage."""
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    return GPMResNetConfig(name="test", width=0.125, blocks=(1, 1, 1, 1), input_size=None,
                           input_scaling="asinh", drop_prob=0.1, drop_block_size=3,
                           epochs=3, batch_size=16, lr=2e-3, standardize_target=True,
                           head_hidden=16)
