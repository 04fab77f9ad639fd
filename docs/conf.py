"""Sphinx configuration of the gpm_astro documentation (build: ``make docs``)."""

import datetime

from gpm_astro import __version__

project = "gpm_astro"
author = "gpm_astro developers"
copyright = f"{datetime.date.today().year}, {author}"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_validation_checks = set()
autodoc_default_options = {"members": True, "undoc-members": False}
default_role = "py:obj"
nitpicky = False

# no intersphinx: the documentation builds offline

templates_path = []
exclude_patterns = ["_build", "_static", "example_plugin"]
html_theme = "alabaster"
# a page wide enough for 100-character code lines; longer ones wrap instead of being cut off
html_theme_options = {"page_width": "1240px", "body_max_width": "none"}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = f"gpm_astro {version}"
