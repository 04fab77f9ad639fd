"""Entry point of the mock plugin."""

from gpm_astro import hookimpl  # noqa: F401
