"""The external example plugin (docs/example_plugin) installed for real and found by its
entry point: proof that a plugin outside our tree works end to end."""

import doctest
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from gpm_astro import plugins
from gpm_astro.testing import check_estimator, make_estimator_table

SOURCE = Path(__file__).resolve().parents[1] / "docs" / "example_plugin"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """pip-install the example into a private folder and put it on sys.path."""
    work = tmp_path_factory.mktemp("example_plugin")
    source = work / "source"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                   "__pycache__"))
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    sys.path.insert(0, str(target))
    plugins.reset_plugins()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.split(".")[0] == "gpm_astro_knn"]:
        del sys.modules[name]
    plugins.reset_plugins()


def test_installed_distribution_advertises_the_entry_point(installed_plugin):
    dist = metadata.distribution("gpm-astro-knn")
    assert dist.version == "0.2.0"
    points = [ep for ep in dist.entry_points if ep.group == "gpm_astro"]
    assert [(ep.name, ep.value) for ep in points] == [("knn", "gpm_astro_knn.plugin")]
    assert Path(dist.locate_file("gpm_astro_knn")).is_relative_to(installed_plugin)


def test_discovered_through_entry_point_and_listed(installed_plugin, monkeypatch):
    monkeypatch.setenv(plugins.PLUGINS_ENV_VAR, "knn")  # only the example: independent of
    plugins.reset_plugins()                             # the state of the built-ins
    listed = plugins.list_plugins()
    assert len(listed) == 1
    row = listed[0]
    assert (row["kind"], row["name"], row["plugin"]) == ("estimator", "nearest_neighbour_z",
                                                         "knn")
    assert (row["package"], row["version"]) == ("gpm-astro-knn", "0.2.0")
    assert row["class"] == "gpm_astro_knn.estimator.NearestNeighbourZ"
    plugins.reset_plugins()


def test_used_through_get_estimator(installed_plugin, monkeypatch):
    monkeypatch.setenv(plugins.PLUGINS_ENV_VAR, "knn")
    plugins.reset_plugins()
    cls = plugins.get_estimator("nearest_neighbour_z")
    assert cls.__module__ == "gpm_astro_knn.estimator"
    train = make_estimator_table(200, seed=5, cutout_size=8)
    test = make_estimator_table(60, seed=6, cutout_size=8)
    test["flux_g"][0] = -1.0  # a non-positive flux cannot give a colour
    knn = cls(k=7).fit(train)
    result = knn.predict(test)
    assert len(result) == len(test)
    assert result["Z_pred_flag"][0] == "invalid_flux" and result["Z_pred"].mask[0]
    good = result["Z_pred_flag"] == "ok"
    assert good[1:].all()
    # colours carry metallicity in this table: the kNN beats predicting the training mean
    error = np.std(result["Z_pred"][good] - test["oh_p50"][good])
    baseline = np.std(np.mean(train["oh_p50"]) - test["oh_p50"][good])
    assert error < 0.8 * baseline
    assert "row_order" in check_estimator(cls(k=3))
    plugins.reset_plugins()


def test_plugins_command_lists_the_example(installed_plugin):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(installed_plugin)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env[plugins.PLUGINS_ENV_VAR] = "knn"
    done = subprocess.run([sys.executable, "-m", "gpm_astro", "plugins"], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert ["estimator", "nearest_neighbour_z", "knn", "gpm-astro-knn", "0.2.0"] in [
        line.split() for line in done.stdout.splitlines()]


def test_example_doctests(installed_plugin):
    import gpm_astro_knn.estimator

    result = doctest.testmod(gpm_astro_knn.estimator)
    assert result.attempted > 0 and result.failed == 0
