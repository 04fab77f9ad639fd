"""Units used by the Legacy Survey and SDSS catalogues (astropy's own definitions)."""

import astropy.units as u

__all__ = ["nanomaggy", "dex"]

#: Legacy Survey / SDSS flux unit: AB magnitude 22.5 (astropy's photometric ``nanomaggy``).
nanomaggy = u.nanomaggy
dex = u.dex
