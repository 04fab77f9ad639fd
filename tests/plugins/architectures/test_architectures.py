"""The comparison architectures: reference parameter counts, width multiplier, estimators."""

import numpy as np
import pytest
import torch

from gpm_astro.base import Estimator
from gpm_astro.exceptions import GPMAstroError, ParameterError
from gpm_astro.plugins import get_estimator
from gpm_astro.testing import check_estimator, make_estimator_table
from gpm_astro_plugins.architectures.common import count_parameters, make_divisible
from gpm_astro_plugins.architectures.networks import (ARCHITECTURES, REFERENCE_PARAMETER_COUNTS,
                                                      build_network)

# torchvision's ImageNet models (3 channels, 1000 classes), from its model documentation
TORCHVISION_COUNTS = {"resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
                      "mobilenet_v2": 3_504_872, "efficientnet_b0": 5_288_548,
                      "densenet121": 7_978_856}
TINY_RECIPE = {"input_size": 32, "epochs": 1, "batch_size": 8, "standardize_target": True,
               "input_scaling": "asinh", "lr": 1e-3}


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_parameter_counts_equal_the_reference_models(name):
    with torch.device("meta"):  # no memory, no initialisation cost
        network = build_network(name, num_outputs=1000)
    assert count_parameters(network) == TORCHVISION_COUNTS[name]
    assert REFERENCE_PARAMETER_COUNTS[name] == TORCHVISION_COUNTS[name]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_width_multiplier_shrinks_and_runs(name):
    with torch.device("meta"):
        full = count_parameters(build_network(name))
        lite = count_parameters(build_network(name, width=0.25))
    assert lite < full / 4
    torch.manual_seed(0)
    network = build_network(name, width=0.125).eval()
    with torch.inference_mode():
        out = network(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1) and torch.isfinite(out).all()


def test_channel_rounding_follows_the_reference_rule():
    assert make_divisible(32 * 0.25) == 8
    assert make_divisible(96 * 0.35) == 32  # 33.6 -> 32, not below 90 %
    assert make_divisible(10) == 16  # 8 would be more than 10 % below 10


def test_bad_architecture_or_width_is_named():
    with pytest.raises(ParameterError, match="unknown architecture 'vgg16'"):
        build_network("vgg16")
    with pytest.raises(ParameterError, match="width must be a positive number, got 0"):
        build_network("resnet34", width=0)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_registered_through_entry_points(name):
    cls = get_estimator(name)
    assert issubclass(cls, Estimator) and cls.name == name and cls.architecture == name


def test_estimator_contract():
    estimator = get_estimator("mobilenet_v2")(width=0.125, recipe=TINY_RECIPE, progress=False)
    assert "row_order" in check_estimator(estimator)


def test_fit_predict_records_what_the_studies_need():
    table = make_estimator_table(24, seed=3, cutout_size=32)
    table["preprocess_ok"][0] = False
    table["preprocess_flag"][0] = "blended"
    estimator = get_estimator("resnet34")(width=0.125, recipe=TINY_RECIPE, progress=False)
    with pytest.raises(GPMAstroError, match="not fitted"):
        estimator.predict(table)
    estimator.fit(table[:16], validation=table[16:])
    out = estimator.predict(table)
    assert out["Z_pred_flag"][0] == "preprocess:blended" and out["Z_pred"].mask[0]
    assert np.all(np.isfinite(out["Z_pred"][1:])) and out["Z_pred"].unit == "dex"
    assert estimator.n_parameters_ == count_parameters(estimator.models_[0]) > 0
    assert estimator.training_seconds_ > 0 and len(estimator.history_) == 1
    assert estimator.recipe_.input_size == 32 and estimator.err_constant_ > 0


def test_describe_and_validation_use():
    cls = get_estimator("densenet121")
    assert cls.uses_validation
    assert cls(width=0.5).describe() == "densenet121 at width 0.5, GPM-ResNet recipe paper"
    assert cls(recipe=TINY_RECIPE).describe().endswith("recipe custom")
