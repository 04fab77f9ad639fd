"""Entry point of the mock plugin: the ``mock`` data source and the ``gpm-astro mock`` command.

Nothing heavy is imported here: the source (GalSim) loads when it is first used.
"""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_data_sources(register):
    """Register `MockSource` as the data source ``mock``."""
    register("gpm_astro_plugins.mock.source:MockSource", name="mock")


@hookimpl
def gpm_astro_register_commands(register):
    """Register ``gpm-astro mock``."""
    register("gpm_astro_plugins.mock.cli:MockCommand", name="mock")
