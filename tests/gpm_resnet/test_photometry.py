"""GPM-ResNet's optional side input: aperture photometry of the network input."""

import json
import math

import numpy as np
import pytest
import torch

from gpm_astro.exceptions import ParameterError
from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator
from gpm_astro_plugins.gpm_resnet.model import (NAMED_CONFIGS, GPMResNetConfig, InputTransform,
                                                build_model, get_config)
from gpm_astro_plugins.gpm_resnet.photometry import AperturePhotometry, aperture_masks
from gpm_astro_plugins.gpm_resnet.training import dihedral_view

from .conftest import make_galaxies


def _asinh_mag(flux, n_pixels, softening=0.01):
    beta = softening * math.sqrt(n_pixels)
    return -2.5 / math.log(10) * math.asinh(flux / (2 * beta))


def test_aperture_photometry_of_a_known_image():
    # 10 x 10 image, centre (4.5, 4.5): the 2 x 2 core lies within 1 px of it, the pixel at
    # row 2, column 4 (2.55 px away) only within the 3 px aperture
    image = np.zeros((1, 3, 10, 10), np.float32)
    image[0, :, 4:6, 4:6] = np.array([1.0, 2.0, 5.0])[:, None, None]
    image[0, 1, 2, 4] = 3.0                                   # r band only
    masks = aperture_masks(10, 10, (1.0, 3.0))
    assert masks[0].sum() == 4 and masks[1].sum() == 32
    phot = AperturePhotometry((1.0, 3.0), 3, "none", 0.01)
    got = phot.raw_features(torch.as_tensor(image))[0].numpy()
    expected = []
    for n_pixels, fluxes in ((4, (4.0, 8.0, 20.0)), (32, (4.0, 11.0, 20.0))):
        mags = [_asinh_mag(f, n_pixels) for f in fluxes]
        expected += [np.mean(mags), mags[0] - mags[1], mags[1] - mags[2]]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # bright: the colour is the ordinary g - r = 2.5 log10(8 / 4)
    assert abs(got[1] - 2.5 * math.log10(2.0)) < 1e-3
    # the same numbers from the asinh-scaled input (the scaling undone inside)
    scaled = torch.asinh(torch.as_tensor(image) / 0.01)
    from_scaled = AperturePhotometry((1.0, 3.0), 3, "asinh", 0.01).raw_features(scaled)
    np.testing.assert_allclose(from_scaled[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    # all eight flips and rotations give the same photometry
    for view in range(8):
        view_features = phot.raw_features(dihedral_view(torch.as_tensor(image), view))
        np.testing.assert_allclose(view_features[0].numpy(), got, rtol=1e-6, atol=1e-6)
    # zero and negative flux: finite, and negative flux is fainter than none
    blank = phot.raw_features(torch.zeros(1, 3, 10, 10))
    negative = phot.raw_features(torch.full((1, 3, 10, 10), -0.5))
    assert torch.isfinite(blank).all() and torch.isfinite(negative).all()
    assert negative[0, 0] > blank[0, 0] == 0.0
    # autocast does not round the sums to bf16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = phot.raw_features(torch.as_tensor(image))
    assert under_autocast.dtype == torch.float32
    np.testing.assert_array_equal(under_autocast[0].numpy(), got)


def test_photometry_config_round_trip_and_the_paper_untouched():
    config = get_config("lite").replace(photometry_apertures=(4, 8.5))
    card = json.loads(json.dumps(config.to_dict()))
    assert card["photometry_apertures"] == [4, 8.5]
    assert GPMResNetConfig.from_dict(card) == config
    # a card written before the field existed loads without a side input
    del card["photometry_apertures"]
    assert GPMResNetConfig.from_dict(card).photometry_apertures == ()
    for name in ("paper", "paper_recipe"):
        assert NAMED_CONFIGS[name].photometry_apertures == ()
        assert build_model(name).photometry is None
    for bad in ((0,), (-3.0,), (float("nan"),), ("4",), (True,)):
        with pytest.raises(ParameterError, match="photometry_apertures"):
            get_config("lite").replace(photometry_apertures=bad)
    # two apertures x three bands widen the head's input by 6
    plain, side = build_model("lite"), build_model(config)
    assert side.pg[3].in_features == plain.pg[3].in_features + 6
    x = torch.randn(4, 3, 48, 48)
    side.eval()
    assert side(x).shape == (4, 2) and side.features(x).shape == (4, 128)
    # the side input reaches the output
    hidden = side.dho(side.ilo(x))
    assert not torch.allclose(side.penultimate(hidden, side.side_input(x)),
                              side.penultimate(hidden, torch.zeros(4, 6)))


def test_side_input_through_fit_predict_save_and_load(tmp_path):
    config = GPMResNetConfig(name="test", width=0.125, blocks=(1, 1, 1, 1),
                             input_scaling="asinh", drop_prob=0.1, drop_block_size=3, epochs=2,
                             batch_size=16, lr=2e-3, standardize_target=True, head_hidden=16,
                             error_head=True, test_time_augmentation=True,
                             photometry_apertures=(3.0, 8.0))
    estimator = GPMResNetEstimator(config=config, progress=False, predict_batch_size=8)
    estimator.fit(make_galaxies(40, seed=1))
    assert estimator.models_[0].photometry is not None
    table = make_galaxies(10, seed=5)
    out = estimator.predict(table)
    assert len(out) == 10 and np.all(out["Z_pred_flag"] == "ok")
    assert np.all(np.isfinite(out["Z_pred"])) and np.all(out["Z_pred_err"] > 0)
    # predict's engine (photometry measured once for the eight views) is the plain forward
    model = estimator.models_[0]
    x = InputTransform(estimator.config_, "grz")(table["cutout"])
    with torch.inference_mode():
        direct = torch.stack([model(dihedral_view(x, v))[:, 0] for v in range(8)]).mean(0)
    direct = direct.double().numpy() * estimator.target_std_ + estimator.target_mean_
    np.testing.assert_allclose(np.asarray(out["Z_pred"]), direct, atol=1e-5)
    mixed = estimator.predict(table, precision="mixed")
    assert np.max(np.abs(mixed["Z_pred"] - out["Z_pred"])) < 0.02
    estimator.save(tmp_path / "model")
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["architecture"]["photometry_apertures"] == [3.0, 8.0]
    loaded = GPMResNetEstimator.load(tmp_path / "model", progress=False, predict_batch_size=8)
    assert loaded.config_.photometry_apertures == (3.0, 8.0)
    again = loaded.predict(table)
    for name in ("Z_pred", "Z_pred_err"):
        np.testing.assert_array_equal(again[name], out[name])
