"""Entry point of the combined plugin: registers the ``combined`` data source."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_data_sources(register):
    """Register `CombinedSky` as the data source ``combined``."""
    register("gpm_astro_plugins.combined.source:CombinedSky", name="combined")
