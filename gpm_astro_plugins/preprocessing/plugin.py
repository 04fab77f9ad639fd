"""Entry point of the preprocessing plugin."""

from gpm_astro import hookimpl  # noqa: F401
