"""Entry point of the gpm_resnet plugin."""

from gpm_astro import hookimpl  # noqa: F401
