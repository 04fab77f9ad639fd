"""Entry point of the colour_polynomial plugin."""

from gpm_astro import hookimpl  # noqa: F401
