"""gpm_astro: gas-phase metallicity of galaxies from DESI Legacy Survey images.

The four Table-in / Table-out functions follow the paper's stages::

    from gpm_astro import (select_starforming, crossmatch, preprocess_cutouts,
                           predict_metallicity)
"""

import pluggy

from .tables import package_version

__version__ = package_version()

hookimpl = pluggy.HookimplMarker("gpm_astro")

__all__ = ["hookimpl", "select_starforming", "crossmatch", "preprocess_cutouts",
           "predict_metallicity", "__version__"]

_lazy = {
    "select_starforming": "catalog",
    "crossmatch": "catalog",
    "preprocess_cutouts": "preprocessing",
    "predict_metallicity": "estimation",
}


def __getattr__(name):  # heavy modules (torch, photutils) load on first use
    if name in _lazy:
        from importlib import import_module

        return getattr(import_module(f".{_lazy[name]}", __name__), name)
    raise AttributeError(f"module 'gpm_astro' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_lazy))
