"""Entry point of the legacysurvey plugin: the viewer's cutout service and the
ssl-legacysurvey HDF5 archive."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_data_sources(register):
    register("gpm_astro_plugins.legacysurvey.cutouts:LegacySurveyCutouts",
             name="legacysurvey_cutouts")
    register("gpm_astro_plugins.legacysurvey.archive_source:LegacySurveyArchive",
             name="legacysurvey_archive")
