"""Built-in plugin ``files``: your own label table and image catalogue, as a data source."""

from gpm_astro.lazy import lazy_attributes

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "TableFiles": ".source",
}

__all__ = ["TableFiles"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
