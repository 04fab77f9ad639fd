"""MobileNetV2 (Sandler et al. 2018) in plain torch, laid out as the reference model.

Inverted residual blocks: a 1x1 expansion (ratio t) with ReLU6, a 3x3 depthwise convolution
with ReLU6, a linear 1x1 projection, and a residual connection where the shape is kept.
Channel counts are multiplied by ``width`` and rounded to multiples of 8; the last layer keeps
at least 1280 channels. With ``width=1``, three input channels and 1000 outputs the parameter
count equals the reference ImageNet model's (tested).
"""

from torch import nn

from .common import RegressionNetwork, conv_bn_act, init_weights, make_divisible

__all__ = ["MobileNetV2", "InvertedResidual", "MOBILENET_V2_SETTING"]

#: (expansion t, output channels c, repeats n, first stride s) of each stage
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); residual when the shape is kept."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(in_channels, hidden, kernel=1))
        layers += [conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        out = self.body(x)
        return x + out if self.use_residual else out


class MobileNetV2(RegressionNetwork):
    """MobileNetV2.

    Parameters
    ----------
    in_channels : int, optional
        Image channels.
    num_outputs : int, optional
        Outputs of the final linear layer.
    width : float, optional
        Width multiplier (1 is the reference network).
    dropout : float, optional
        Dropout before the final linear layer (0.2 in the reference).
    """

    def __init__(self, *, in_channels=3, num_outputs=1, width=1.0, dropout=0.2):
        super().__init__()
        channels = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        layers = [conv_bn_act(in_channels, channels, stride=2)]
        for expand, out, repeats, stride in MOBILENET_V2_SETTING:
            out = make_divisible(out * width)
            for index in range(repeats):
                layers.append(InvertedResidual(channels, out, stride if index == 0 else 1,
                                               expand))
                channels = out
        layers.append(conv_bn_act(channels, last, kernel=1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(last, num_outputs))
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))
