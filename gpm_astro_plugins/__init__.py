"""The built-in plugins of gpm_astro: estimators, preprocessing steps and data sources.

Each subpackage has a ``plugin`` module declared under the ``gpm_astro`` entry-point group in
pyproject.toml, exactly as a third-party plugin would be.
"""
