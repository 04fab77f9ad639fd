"""A tiny trained GPM-ResNet shared by the robustness tests (trained once per session)."""

import pytest

from gpm_astro.testing import make_estimator_table

#: Cutout side of the shared model and of the tables the tests give it.
SIZE = 16


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """A 1-epoch GPM-ResNet on 16 px cutouts with one deterministic pass, saved to a folder."""
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    config = GPMResNetConfig(name="test", width=0.125, blocks=(1, 1, 1, 1), input_size=None,
                             epochs=1, batch_size=8, head_hidden=8, standardize_target=True)
    table = make_estimator_table(24, seed=3, cutout_size=SIZE)
    estimator = GPMResNetEstimator(config=config, mc_passes=1, progress=False).fit(table)
    folder = tmp_path_factory.mktemp("model")
    estimator.save(folder)
    return folder
