"""Built-in plugin: colour_polynomial, the colour-metallicity polynomial (paper section 4.1)."""

from gpm_astro.lazy import lazy_attributes

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "ColourPolynomial": ".estimator",
}

__all__ = ["ColourPolynomial"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
