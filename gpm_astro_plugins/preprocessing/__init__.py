"""Built-in plugin: the preprocessing steps of the ``paper`` and ``default`` configurations.

Steps (registered names): ``check_pixels``, ``mask_neighbours`` / ``mask_neighbours_paper``,
``size_limit``, ``blend_check`` / ``blend_check_photutils``, ``fragment_check`` /
``fragment_check_paper``. The configurations are in `CONFIGURATIONS`.
"""

from gpm_astro.lazy import lazy_attributes

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "CheckPixels": ".common",
    "SizeLimit": ".common",
    "CONFIGURATIONS": ".configs",
    "BlendCheck": ".noise_aware",
    "FragmentCheck": ".noise_aware",
    "MaskNeighbours": ".noise_aware",
    "PaperFragmentCheck": ".paper",
    "PaperMaskNeighbours": ".paper",
    "PhotutilsBlendCheck": ".paper",
}

__all__ = ["CONFIGURATIONS", "CheckPixels", "SizeLimit", "MaskNeighbours", "BlendCheck",
           "FragmentCheck", "PaperMaskNeighbours", "PhotutilsBlendCheck",
           "PaperFragmentCheck"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
