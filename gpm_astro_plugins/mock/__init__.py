"""Built-in plugin ``mock``: an embedded mock sky on which every stage runs offline.

``MockSky`` draws galaxies (mass, star formation, metallicity, bulge + disk morphology, colours),
renders their g, r, z Legacy-Survey-like cutouts with GalSim, and writes an MPA-JHU-like label
table and a Legacy-Survey-like image catalogue in the ssl-legacysurvey HDF5 layout, with known
truth. ``MockSource`` exposes it as the data source ``mock``. See ``docs/mock_sky.rst``.
"""

from gpm_astro.lazy import lazy_attributes

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "PopulationModel": ".population",
    "mzr_tremonti": ".population",
    "EXPECTED_FLAG": ".sky",
    "LABEL_CUTS": ".sky",
    "TRUTH_CASES": ".sky",
    "MockSky": ".sky",
    "MockSkyData": ".sky",
    "MockSource": ".source",
}

__all__ = ["MockSky", "MockSkyData", "MockSource", "PopulationModel", "EXPECTED_FLAG",
           "TRUTH_CASES", "LABEL_CUTS", "mzr_tremonti"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
