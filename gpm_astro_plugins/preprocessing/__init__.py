"""Built-in plugin: the preprocessing steps of the ``paper`` and ``default`` configurations.

Steps (registered names): ``check_pixels``, ``mask_neighbours`` / ``mask_neighbours_paper``,
``size_limit``, ``blend_check`` / ``blend_check_photutils``, ``fragment_check`` /
``fragment_check_paper``. The configurations are in `CONFIGURATIONS`.
"""


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


def __getattr__(name):
    """Import a public name's module on first use (the plugin's entry point stays light)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
