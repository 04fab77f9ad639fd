"""Entry point of the sdss plugin."""

from gpm_astro import hookimpl  # noqa: F401
