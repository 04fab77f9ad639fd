"""Entry point of the datalab plugin."""

from gpm_astro import hookimpl  # noqa: F401
