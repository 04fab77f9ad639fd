"""Integrated photometry of GPM-ResNet's input: the optional side input of its PG block.

A convolutional network that reads asinh-scaled pixels cannot easily sum linear fluxes, yet the
integrated colours of a galaxy are what a colour polynomial, and much of the metallicity signal,
rests on. With ``GPMResNetConfig.photometry_apertures`` set, `AperturePhotometry` measures the
flux of every band in circular apertures centred on the image and hands asinh magnitudes and
colours to the PG block, concatenated to the pooled convolutional features.

It is measured on the network input itself, the scaling undone (``softening * sinh(x)`` for the
asinh scaling), so that every path that feeds the network — training arrays, HDF5 batches read
from disk, flips and rotations (the apertures are symmetric under all eight), Monte-Carlo passes,
mixed precision — gives it the same numbers without a second input stream.
"""

import math

import torch
from torch import nn

__all__ = ["AperturePhotometry", "photometry_feature_count", "aperture_masks"]

#: Pogson's constant: 2.5 / ln 10
POGSON = 2.5 / math.log(10.0)


def photometry_feature_count(config):
    """Side-input features of a configuration: per aperture, the mean asinh magnitude of the
    bands and the colours of neighbouring bands (0 without apertures)."""
    return len(config.photometry_apertures) * len(config.bands)


def aperture_masks(height, width, radii, *, device=None, dtype=torch.float32):
    """(len(radii), height, width) masks of the pixels whose centres lie within each radius of
    the image centre ``((height - 1) / 2, (width - 1) / 2)``; symmetric under flips and
    quarter turns of a square image."""
    yy = torch.arange(height, device=device, dtype=dtype) - (height - 1) / 2.0
    xx = torch.arange(width, device=device, dtype=dtype) - (width - 1) / 2.0
    r2 = yy[:, None] ** 2 + xx[None, :] ** 2
    return torch.stack([(r2 <= radius * radius).to(dtype) for radius in radii])


class AperturePhotometry(nn.Module):
    """Asinh magnitudes and colours in circular apertures of the network input, normalised.

    For each aperture of radius ``R`` (network-input pixels, centred on the image), the flux
    ``F_b`` of each band is summed over the pixels within ``R`` and turned into an asinh
    magnitude (Lupton et al. 1999) ``mu_b = -2.5 / ln 10 * asinh(F_b / (2 beta))`` with the
    softening ``beta = softening * sqrt(N_pix)`` (the softening flux of one pixel grown as the
    noise of ``N_pix`` pixels): ``mu_g - mu_r`` is the usual ``g - r`` for bright galaxies and
    stays finite for zero or negative flux. The features are, per aperture, the mean of the
    bands' ``mu_b`` and the colours of neighbouring bands (g - r, r - z), then a
    ``BatchNorm1d`` puts them on the scale of the pooled features (it also absorbs the
    magnitudes' zero point).

    Parameters
    ----------
    radii : tuple of float
        Aperture radii in network-input pixels.
    n_bands : int
        Bands (channels) of the input.
    input_scaling : str
        ``"asinh"`` (input ``asinh(flux / softening)``) or ``"none"`` (flux).
    softening : float
        Softening flux of one pixel, nanomaggies (``asinh_softening``).

    Examples
    --------
    >>> import torch
    >>> phot = AperturePhotometry((2.0,), 3, "none", 0.01)
    >>> x = torch.zeros(1, 3, 8, 8)
    >>> x[0, :, 3:5, 3:5] = torch.tensor([1.0, 2.0, 5.0])[:, None, None]
    >>> [round(v, 3) for v in phot.raw_features(x)[0].tolist()]   # mean mag, g - r, r - z
    [-5.99, 0.753, 0.995]
    """

    def __init__(self, radii, n_bands, input_scaling, softening):
        super().__init__()
        self.radii = tuple(float(r) for r in radii)
        self.n_bands = int(n_bands)
        self.input_scaling = input_scaling
        self.softening = float(softening)
        self.norm = nn.BatchNorm1d(len(self.radii) * self.n_bands)

    def extra_repr(self):
        return f"radii={self.radii}, n_bands={self.n_bands}, input_scaling={self.input_scaling!r}"

    def raw_features(self, x):
        """The un-normalised features (n, apertures * bands) of network input ``x``, in fp32
        whatever autocast is active (the sums must not be rounded to bf16)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            flux = self.softening * torch.sinh(x) if self.input_scaling == "asinh" else x
            masks = aperture_masks(x.shape[-2], x.shape[-1], self.radii, device=x.device)
            fluxes = torch.einsum("nbhw,ahw->nab", flux, masks)
            beta = self.softening * masks.sum(dim=(1, 2)).clamp(min=1.0).sqrt()
            mags = -POGSON * torch.asinh(fluxes / (2.0 * beta[None, :, None]))
            parts = [mags.mean(dim=-1, keepdim=True), mags[..., :-1] - mags[..., 1:]]
            return torch.cat(parts, dim=-1).flatten(1)

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.norm(self.raw_features(x))
