"""A toy pipeline folder (sample split and cutout store) that the ablation tests share."""

import numpy as np
import pytest

from gpm_astro.io import write_table
from gpm_astro.pipeline import write_cutouts
from gpm_astro.testing import make_estimator_table

#: GPM-ResNet at toy size: trains in a fraction of a second on 32 px cutouts
TOY_NETWORK = {"name": "toy", "width": 0.125, "blocks": [1, 1, 1, 1], "input_size": None,
               "input_scaling": "asinh", "drop_prob": 0.0, "drop_block_size": 3, "epochs": 1,
               "batch_size": 8, "lr": 0.001, "head_hidden": 8, "standardize_target": True}


def toy_settings(**changes):
    settings = {
        "reference": {"estimator": "gpm_resnet",
                      "params": {"config": dict(TOY_NETWORK), "mc_passes": 1, "seed": 0}},
        "architectures": {"names": ["mobilenet_v2"],
                          "params": {"width": 0.125, "recipe": dict(TOY_NETWORK)}},
        "resolution": {"sizes": [16, 32]},
        "bands": {"sets": ["g", "gz", "grz"]},
    }
    settings.update(changes)
    return settings


def make_toy_run(folder, n=48, seed=0):
    """A pipeline output folder holding a sample split 24/12/12 and its 32 px cutouts."""
    table = make_estimator_table(n, seed=seed, cutout_size=32)
    rng = np.random.default_rng(seed)
    table["enclosing_radius"] = rng.uniform(0.5, 5.9, n)
    table["enclosing_radius"].unit = "arcsec"
    table["split"] = np.array(["train"] * (n // 2) + ["validation"] * (n // 4)
                              + ["test"] * (n - n // 2 - n // 4))
    table["cutout_row"] = np.arange(n)
    (folder / "sample").mkdir(parents=True)
    (folder / "preprocess").mkdir()
    write_cutouts(folder / "preprocess/labelled_cutouts.h5", np.asarray(table["cutout"]))
    table.remove_column("cutout")
    write_table(table, folder / "sample/sample.fits")
    return folder


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return make_toy_run(tmp_path_factory.mktemp("toy_run"))


@pytest.fixture(scope="module")
def ablated(toy_run, tmp_path_factory):
    """Every study once, on the toy sample (each test then reads what it needs)."""
    from gpm_astro.ablation import run_ablations

    out = tmp_path_factory.mktemp("ablation")
    settings = toy_settings(sample={"run_dir": str(toy_run)})
    return out, settings, run_ablations(out, settings, progress=False)
