"""Entry point of the mock plugin: registers the ``mock`` data source."""

from gpm_astro import hookimpl

from .source import MockSource


@hookimpl
def gpm_astro_register_data_sources(register):
    """Register `MockSource` as the data source ``mock``."""
    register(MockSource, name="mock")
