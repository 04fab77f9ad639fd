"""Built-in plugin: the preprocessing steps of the ``paper`` and ``default`` configurations.

Steps (registered names): ``check_pixels``, ``mask_neighbours`` / ``mask_neighbours_paper``,
``size_limit``, ``blend_check`` / ``blend_check_photutils``, ``fragment_check`` /
``fragment_check_paper``. The configurations are in `CONFIGURATIONS`.
"""

from .common import CheckPixels, SizeLimit
from .configs import CONFIGURATIONS
from .noise_aware import BlendCheck, FragmentCheck, MaskNeighbours
from .paper import PaperFragmentCheck, PaperMaskNeighbours, PhotutilsBlendCheck

__all__ = ["CONFIGURATIONS", "CheckPixels", "SizeLimit", "MaskNeighbours", "BlendCheck",
           "FragmentCheck", "PaperMaskNeighbours", "PhotutilsBlendCheck",
           "PaperFragmentCheck"]
