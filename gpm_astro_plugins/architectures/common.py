"""What every architecture of this plugin shares: the regression-network interface, the
convolution-BatchNorm-activation block, channel rounding and weight initialisation.

GPM-ResNet's training loop (`gpm_astro_plugins.gpm_resnet.training.train_network`) calls
``set_drop_progress`` on the network it trains, and its estimator ``set_mc_dropout`` for
Monte-Carlo passes; these networks have no DropBlock, so both do nothing here.
"""

from torch import nn

__all__ = ["RegressionNetwork", "conv_bn_act", "make_divisible", "count_parameters",
           "init_weights"]


class RegressionNetwork(nn.Module):
    """Base of the networks: image (n, c, s, s) in, ``num_outputs`` numbers out."""

    def set_drop_progress(self, fraction):
        """No DropBlock to ramp (the training loop's interface)."""

    def set_mc_dropout(self, active):
        """No Monte-Carlo DropBlock (the estimator interface)."""


def make_divisible(value, divisor=8, min_value=None):
    """Round a channel count to a multiple of ``divisor``, never more than 10 % below ``value``.

    The rule of the MobileNet and EfficientNet reference code, so that width multipliers give
    the published channel counts.

    Examples
    --------
    >>> make_divisible(32 * 0.25), make_divisible(1280 * 1.0), make_divisible(24 * 0.5)
    (8, 1280, 16)
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def conv_bn_act(in_channels, out_channels, kernel=3, stride=1, groups=1, activation=nn.ReLU6,
                eps=1e-5):
    """Convolution (no bias), BatchNorm and an activation (none when ``activation`` is None)."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                        groups=groups, bias=False), nn.BatchNorm2d(out_channels, eps=eps)]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


def count_parameters(model):
    """Number of parameters (weights and biases; BatchNorm running statistics are buffers)."""
    return sum(p.numel() for p in model.parameters())


def init_weights(model, *, conv_mode="fan_out"):
    """He-normal convolutions, BatchNorm weight 1 and bias 0, zero biases elsewhere."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode=conv_mode, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
