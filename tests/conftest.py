"""Shared fixtures. Network tests are marked ``remote_data`` (pytest-remotedata) and skipped
unless ``--remote-data=any`` is given; everything else runs offline."""

import os

import pytest

# Keep torch and BLAS to one thread per test process: CI machines have two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def fresh_plugins():
    """Reload the plugin registry before and after a test that registers plugins by hand."""
    from gpm_astro import plugins

    plugins.reset_plugins()
    yield plugins
    plugins.reset_plugins()
