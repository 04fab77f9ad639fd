"""Entry point of the files plugin: registers the ``files`` data source."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_data_sources(register):
    """Register `TableFiles` as the data source ``files``."""
    register("gpm_astro_plugins.files.source:TableFiles", name="files")
