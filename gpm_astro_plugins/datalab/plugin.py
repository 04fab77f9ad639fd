"""Entry point of the datalab plugin: Legacy Survey DR9 sources and photo-z from Data Lab TAP."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_data_sources(register):
    register("gpm_astro_plugins.datalab.tap:DataLabTAP", name="datalab_tap")
