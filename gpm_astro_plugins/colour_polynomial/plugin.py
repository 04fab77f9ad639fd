"""Entry point of the colour_polynomial plugin."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_estimators(register):
    register("gpm_astro_plugins.colour_polynomial.estimator:ColourPolynomial",
             name="colour_polynomial")
