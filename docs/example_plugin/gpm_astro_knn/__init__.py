"""Example gpm_astro plugin: Z from g - r, r - z colours by k nearest neighbours."""

from .estimator import NearestNeighbourZ

__all__ = ["NearestNeighbourZ"]
