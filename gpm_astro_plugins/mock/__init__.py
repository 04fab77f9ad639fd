"""Built-in plugin ``mock``: an embedded mock sky on which every stage runs offline.

``MockSky`` draws galaxies (mass, star formation, metallicity, bulge + disk morphology, colours),
renders their g, r, z Legacy-Survey-like cutouts with GalSim, and writes an MPA-JHU-like label
table and a Legacy-Survey-like image catalogue in the ssl-legacysurvey HDF5 layout, with known
truth. ``MockSource`` exposes it as the data source ``mock``. See ``docs/mock_sky.rst``.
"""

from .population import PopulationModel, mzr_tremonti
from .sky import EXPECTED_FLAG, LABEL_CUTS, TRUTH_CASES, MockSky, MockSkyData
from .source import MockSource

__all__ = ["MockSky", "MockSkyData", "MockSource", "PopulationModel", "EXPECTED_FLAG",
           "TRUTH_CASES", "LABEL_CUTS", "mzr_tremonti"]
