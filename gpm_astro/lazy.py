"""Lazy public names for packages whose modules are heavy (torch, GalSim, photutils).

A package lists its public names and the module that defines each; the names are imported on
first use, so importing the package (a plugin's entry point, ``gpm_astro`` itself) stays light.
This module imports nothing beyond the standard library.
"""

import importlib
import sys


def lazy_attributes(package, origins):
    """Build a package's ``__getattr__`` and ``__dir__`` that import public names on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    origins : dict of str to str
        Public name -> the module defining it, relative to ``package`` (``".networks"``).

    Returns
    -------
    getattr_, dir_ : callable, callable
        Assign them to the package's ``__getattr__`` and ``__dir__``.

    Examples
    --------
    In a package's ``__init__.py``::

        __getattr__, __dir__ = lazy_attributes(__name__, {"MockSky": ".sky"})
    """

    def getattr_(name):
        """Import a public name's module on first use (the package import stays light)."""
        if name in origins:
            return getattr(importlib.import_module(origins[name], package), name)
        msg = f"module {package!r} has no attribute {name!r}"
        raise AttributeError(msg)

    def dir_():
        return sorted(set(vars(sys.modules[package])) | set(origins))

    return getattr_, dir_
