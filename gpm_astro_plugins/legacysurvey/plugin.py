"""Entry point of the legacysurvey plugin."""

from gpm_astro import hookimpl  # noqa: F401
