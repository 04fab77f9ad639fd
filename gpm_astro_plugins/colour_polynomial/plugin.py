"""Entry point of the colour_polynomial plugin."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_estimators(register):
    from .estimator import ColourPolynomial

    register(ColourPolynomial, name="colour_polynomial")
