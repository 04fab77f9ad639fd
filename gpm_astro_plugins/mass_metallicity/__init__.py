"""Built-in plugin: mass_metallicity, the Tremonti et al. (2004) relation (paper section 4.6)."""


#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "MassMetallicity": ".estimator",
}

__all__ = ["MassMetallicity"]


def __getattr__(name):
    """Import a public name's module on first use (the plugin's entry point stays light)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
