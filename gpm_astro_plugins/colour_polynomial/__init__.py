"""Built-in plugin: colour_polynomial, the colour-metallicity polynomial (paper section 4.1)."""

from .estimator import ColourPolynomial

__all__ = ["ColourPolynomial"]
