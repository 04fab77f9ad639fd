"""Entry point of the mass_metallicity plugin."""

from gpm_astro import hookimpl  # noqa: F401
