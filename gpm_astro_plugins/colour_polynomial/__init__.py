"""Built-in plugin: colour_polynomial, the colour-metallicity polynomial (paper section 4.1)."""


#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "ColourPolynomial": ".estimator",
}

__all__ = ["ColourPolynomial"]


def __getattr__(name):
    """Import a public name's module on first use (the plugin's entry point stays light)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
