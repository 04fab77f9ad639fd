"""Entry point of the mass_metallicity plugin."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_estimators(register):
    register("gpm_astro_plugins.mass_metallicity.estimator:MassMetallicity",
             name="mass_metallicity")
