"""The training loop: learning, best checkpoint, loss curves, resuming after a crash."""

import os

import numpy as np
import pytest
import torch

from gpm_astro.exceptions import ParameterError
from gpm_astro_plugins.gpm_resnet.model import GPMResNet, InputTransform, get_config
from gpm_astro_plugins.gpm_resnet.training import (
    CHECKPOINT_NAME, HISTORY_CSV, error_head_loss, onecycle_warmup_share, plot_history, resolve_device,
    resolve_precision, train_network)

from .conftest import make_galaxies


def _arrays(table, config):
    x = InputTransform(config, "grz")(table["cutout"]).numpy()
    y = np.asarray(table["oh_p50"], dtype=np.float32)
    return x, (y - y.mean()) / y.std()


def test_lite_model_overfits_a_small_batch(tmp_path):
    config = get_config("lite").replace(epochs=40, batch_size=32, augment=False, drop_prob=0.0,
                                        lr=3e-3, lr_step=100)
    table = make_galaxies(32, seed=3)
    x, y = _arrays(table, config)
    torch.manual_seed(0)
    model = GPMResNet(config)
    result = train_network(model, x, y, x[:8], y[:8], config=config, seed=0, progress=False)
    losses = np.asarray(result.history["train_loss"])
    assert losses[0] / losses[-5:].min() > 10


def _train(config, x, y, directory, *, resume=False, callback=None):
    torch.manual_seed(0)
    model = GPMResNet(config)
    result = train_network(model, x, y, x[:10], y[:10], config=config, seed=7,
                           deterministic=True, checkpoint_dir=directory, resume=resume,
                           progress=False, callback=callback)
    return model, result


def test_resume_after_interruption_matches_uninterrupted(tmp_path, tiny_config):
    config = tiny_config.replace(epochs=4, lr_step=2, augment=True)
    x, y = _arrays(make_galaxies(40, seed=4), config)
    reference, reference_result = _train(config, x, y, tmp_path / "a")

    def crash_after_two(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        _train(config, x, y, tmp_path / "b", callback=crash_after_two)
    state = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 2
    resumed, resumed_result = _train(config, x, y, tmp_path / "b", resume=True)
    assert resumed_result.resumed_from == 2
    assert list(resumed_result.history["epoch"]) == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed_result.history["val_loss"],
                                  reference_result.history["val_loss"])
    assert resumed_result.best_epoch == reference_result.best_epoch
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_best_validation_checkpoint_is_kept_and_history_written(tmp_path, tiny_config):
    config = tiny_config.replace(epochs=3)
    x, y = _arrays(make_galaxies(30, seed=5), config)
    torch.manual_seed(0)
    model = GPMResNet(config)
    result = train_network(model, x, y, x[:8], y[:8], config=config, checkpoint_dir=tmp_path,
                           progress=False)
    best = int(np.argmin(result.history["val_loss"])) + 1
    assert result.best_epoch == best
    model.eval()
    with torch.inference_mode():
        pred = model(torch.as_tensor(x[:8])).squeeze(1).numpy()
    assert np.mean((pred - y[:8]) ** 2) == pytest.approx(result.best_val_loss, rel=1e-4)
    csv = (tmp_path / HISTORY_CSV).read_text().splitlines()
    assert csv[0].startswith("epoch,lr,") and len(csv) == 4
    png = plot_history(result.history, str(tmp_path / "curves.png"))
    assert os.path.getsize(png) > 1000


@pytest.mark.parametrize("n_galaxies, batch_size", [(40, 8), (10, 8)])
def test_one_cycle_with_a_one_step_warm_up_trains(tiny_config, n_galaxies, batch_size):
    # 0.2 of 5 steps (or 0.5 of 2) is a one-step warm-up: OneCycleLR divides by zero there
    warmup = 0.2 if n_galaxies == 40 else 0.5
    config = tiny_config.replace(epochs=1, batch_size=batch_size, lr_schedule="onecycle",
                                 lr_warmup=warmup)
    x, y = _arrays(make_galaxies(n_galaxies, seed=2), config)
    result = train_network(GPMResNet(config), x, y, x[:4], y[:4], config=config,
                           progress=False)
    assert np.isfinite(result.history["train_loss"]).all()
    steps = -(-n_galaxies // batch_size)
    assert onecycle_warmup_share(warmup, steps) * steps > 1
    assert onecycle_warmup_share(0.2, 7) == 0.2


def test_checkpoint_of_another_configuration_is_refused(tmp_path, tiny_config):
    config = tiny_config.replace(epochs=1)
    x, y = _arrays(make_galaxies(12, seed=6), config)
    _train(config, x, y, tmp_path)
    with pytest.raises(ParameterError, match="another configuration"):
        _train(config.replace(lr=0.5), x, y, tmp_path, resume=True)


def _mean_gradients(log_variances, beta):
    """Gradient of `error_head_loss` on the means and log-variances of galaxies that all miss
    their label by +1."""
    output = torch.tensor([[1.0, v] for v in log_variances], requires_grad=True)
    error_head_loss(output, torch.zeros(len(log_variances)), beta).backward()
    return output.grad[:, 0], output.grad[:, 1]


def test_the_mean_learns_from_plain_squared_errors_by_default():
    mean_grad, variance_grad = _mean_gradients([-4.0, 0.0, 2.0], beta=1.0)
    # equal misses, equal pulls on the mean whatever the predicted variances
    torch.testing.assert_close(mean_grad, torch.full((3,), 2.0 / 3))
    # the variance learns the likelihood of the residual: small variances are pushed up
    assert variance_grad[0] < 0 < variance_grad[2]


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_beta_below_one_weights_the_mean_by_the_inverse_predicted_variance(beta):
    log_variances = [-4.0, 0.0, 2.0]
    mean_grad, _ = _mean_gradients(log_variances, beta)
    expected = torch.exp((beta - 1) * torch.tensor(log_variances))
    torch.testing.assert_close(mean_grad / mean_grad.sum(), expected / expected.sum())
    # weights averaging 1: the gradients add up to those of plain MSE
    torch.testing.assert_close(mean_grad.sum(), torch.tensor(2.0))


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan")])
def test_a_mean_loss_beta_outside_zero_to_one_is_refused(beta):
    with pytest.raises(ParameterError, match=f"mean_loss_beta must be in \\[0, 1\\], got {beta}"):
        get_config("lite").replace(mean_loss_beta=beta)


def test_bad_training_input():
    config = get_config("lite").replace(epochs=1)
    model = GPMResNet(config)
    x = np.zeros((4, 3, 64, 64), np.float32)
    with pytest.raises(ParameterError, match="differ in length"):
        train_network(model, x, np.zeros(3, np.float32), x, np.zeros(4, np.float32),
                      config=config, progress=False)
    with pytest.raises(ParameterError, match="got 0 and"):
        train_network(model, x[:0], np.zeros(0, np.float32), x, np.zeros(4, np.float32),
                      config=config, progress=False)


def test_device_and_precision_resolution():
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ParameterError, match="'fp8'"):
        resolve_precision("fp8", torch.device("cpu"))
    with pytest.raises(ParameterError, match="'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="CUDA is not available"):
            resolve_device("cuda")
