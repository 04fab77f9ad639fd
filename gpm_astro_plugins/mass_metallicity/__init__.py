"""Built-in plugin: mass_metallicity, the Tremonti et al. (2004) relation (paper section 4.6)."""

from gpm_astro.lazy import lazy_attributes

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "MassMetallicity": ".estimator",
}

__all__ = ["MassMetallicity"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
