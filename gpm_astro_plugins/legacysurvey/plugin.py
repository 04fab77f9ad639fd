"""Entry point of the legacysurvey plugin: the viewer's cutout service and the
ssl-legacysurvey HDF5 archive."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_data_sources(register):
    from .archive_source import LegacySurveyArchive
    from .cutouts import LegacySurveyCutouts

    register(LegacySurveyCutouts, name="legacysurvey_cutouts")
    register(LegacySurveyArchive, name="legacysurvey_archive")
