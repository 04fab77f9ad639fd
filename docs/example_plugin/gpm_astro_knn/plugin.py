"""Entry point of the plugin: registers the estimator with gpm_astro."""

from gpm_astro import hookimpl

from .estimator import NearestNeighbourZ


@hookimpl
def gpm_astro_register_estimators(register):
    register(NearestNeighbourZ, name="nearest_neighbour_z")
