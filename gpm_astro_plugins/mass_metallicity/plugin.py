"""Entry point of the mass_metallicity plugin."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_estimators(register):
    from .estimator import MassMetallicity

    register(MassMetallicity, name="mass_metallicity")
