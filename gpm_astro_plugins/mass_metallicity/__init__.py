"""Built-in plugin: mass_metallicity, the Tremonti et al. (2004) relation (paper section 4.6)."""

from .estimator import MassMetallicity

__all__ = ["MassMetallicity"]
