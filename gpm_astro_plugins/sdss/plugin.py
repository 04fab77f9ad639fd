"""Entry point of the sdss plugin: the MPA-JHU DR8 label catalogue from SkyServer."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_data_sources(register):
    register("gpm_astro_plugins.sdss.mpajhu:SDSSMPAJHU", name="sdss_mpajhu")
