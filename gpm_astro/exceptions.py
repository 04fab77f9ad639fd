"""Errors and warnings raised by gpm_astro.

Every message names the offending value, so a user can act on it without reading code.
"""

__all__ = [
    "GPMAstroError",
    "SchemaError",
    "ParameterError",
    "PluginError",
    "UnknownPluginError",
    "DuplicatePluginError",
    "RemoteServiceError",
    "WeightsError",
    "TableIOError",
    "GPMAstroWarning",
    "EmptyResultWarning",
    "UnverifiedWeightsWarning",
]


class GPMAstroError(Exception):
    """Base class of every error raised by gpm_astro."""


class SchemaError(GPMAstroError, ValueError):
    """A table lacks a column, or a column has the wrong shape, unit or type."""


class ParameterError(GPMAstroError, ValueError):
    """A keyword argument has a value outside what it accepts."""


class PluginError(GPMAstroError):
    """A plugin is malformed: wrong base class, bad hook implementation, failed import."""


class UnknownPluginError(PluginError, KeyError):
    """No component of the requested kind has the requested name."""

    def __str__(self):  # KeyError would print the message inside quotes
        return str(self.args[0]) if self.args else ""


class DuplicatePluginError(PluginError):
    """Two plugins registered a component of the same kind under the same name."""


class RemoteServiceError(GPMAstroError, IOError):
    """A remote service failed, answered with an error, or sent a malformed response."""


class WeightsError(GPMAstroError):
    """Model weights are missing, corrupted, or do not match their checksum or card."""


class TableIOError(GPMAstroError, OSError):
    """A table file cannot be read or written (missing, unknown format, unwritable path)."""


class GPMAstroWarning(UserWarning):
    """Base class of every warning issued by gpm_astro."""


class EmptyResultWarning(GPMAstroWarning):
    """A function returned an empty table (with its full schema)."""


class UnverifiedWeightsWarning(GPMAstroWarning):
    """Model weights were loaded without any checksum to check them against."""
