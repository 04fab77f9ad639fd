"""Tests of gpm_astro.lazy: public names imported on first use."""

import subprocess
import sys

import pytest

import gpm_astro_plugins.mock as mock_plugin


def test_a_lazy_name_imports_its_module_only_on_use():
    code = ("import sys; import gpm_astro_plugins.mock as m; "
            "before = 'gpm_astro_plugins.mock.population' in sys.modules; "
            "m.mzr_tremonti; print(before, 'gpm_astro_plugins.mock.population' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "True"]


def test_lazy_names_are_listed_and_unknown_names_are_named_in_the_error():
    from gpm_astro_plugins.mock.population import mzr_tremonti

    assert mock_plugin.mzr_tremonti is mzr_tremonti
    assert set(mock_plugin.__all__) <= set(dir(mock_plugin))
    with pytest.raises(AttributeError, match="gpm_astro_plugins.mock.*'no_such_name'"):
        mock_plugin.no_such_name
