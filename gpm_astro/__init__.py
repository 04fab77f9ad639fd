"""gpm_astro: gas-phase metallicity of galaxies from DESI Legacy Survey images.

The four Table-in / Table-out functions follow the paper's stages::

    from gpm_astro import (select_starforming, crossmatch, preprocess_cutouts,
                           predict_metallicity)
"""

import pluggy

from .lazy import lazy_attributes
from .tables import package_version

__version__ = package_version()

hookimpl = pluggy.HookimplMarker("gpm_astro")

__all__ = ["hookimpl", "select_starforming", "crossmatch", "preprocess_cutouts",
           "predict_metallicity", "__version__"]

#: public name -> the module that defines it (heavy modules, torch and photutils, load on use)
_lazy = {
    "select_starforming": ".catalog",
    "crossmatch": ".catalog",
    "preprocess_cutouts": ".preprocessing",
    "predict_metallicity": ".estimation",
}

__getattr__, __dir__ = lazy_attributes(__name__, _lazy)
