"""EfficientNet-B0 (Tan & Le 2019) in plain torch, laid out as the reference model.

MBConv blocks: a 1x1 expansion with SiLU (skipped at ratio 1), a depthwise k x k convolution
with SiLU, squeeze-and-excitation (to a quarter of the block's input channels), a linear 1x1
projection, and stochastic depth on the residual branch (rate rising linearly to 0.2 over the
blocks). Channel counts are multiplied by ``width`` and rounded to multiples of 8. With
``width=1``, three input channels and 1000 outputs the parameter count equals the reference
ImageNet model's (tested).
"""

import torch
from torch import nn

from .common import RegressionNetwork, conv_bn_act, init_weights, make_divisible

__all__ = ["EfficientNetB0", "MBConv", "SqueezeExcitation", "EFFICIENTNET_B0_SETTING"]

#: (expansion, kernel, first stride, input channels, output channels, repeats) of each stage
EFFICIENTNET_B0_SETTING = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                           (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                           (6, 3, 1, 192, 320, 1))
_BN_EPS = 1e-3


class SqueezeExcitation(nn.Module):
    """Global average pool, 1x1 reduce with SiLU, 1x1 expand, sigmoid, rescale the channels."""

    def __init__(self, channels, squeeze):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        scale = self.expand(self.act(self.reduce(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(scale)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation and stochastic depth."""

    def __init__(self, in_channels, out_channels, *, expand_ratio, kernel, stride,
                 drop_path):
        super().__init__()
        expanded = make_divisible(in_channels * expand_ratio)
        layers = []
        if expanded != in_channels:
            layers.append(conv_bn_act(in_channels, expanded, kernel=1, activation=nn.SiLU,
                                      eps=_BN_EPS))
        layers += [conv_bn_act(expanded, expanded, kernel=kernel, stride=stride,
                               groups=expanded, activation=nn.SiLU, eps=_BN_EPS),
                   SqueezeExcitation(expanded, max(1, in_channels // 4)),
                   conv_bn_act(expanded, out_channels, kernel=1, activation=None, eps=_BN_EPS)]
        self.body = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path = float(drop_path)

    def forward(self, x):
        out = self.body(x)
        if not self.use_residual:
            return out
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.empty(out.shape[0], 1, 1, 1, device=out.device,
                               dtype=out.dtype).bernoulli_(keep)
            out = out * mask / keep
        return x + out


class EfficientNetB0(RegressionNetwork):
    """EfficientNet-B0.

    Parameters
    ----------
    in_channels : int, optional
        Image channels.
    num_outputs : int, optional
        Outputs of the final linear layer.
    width : float, optional
        Width multiplier (1 is B0).
    dropout : float, optional
        Dropout before the final linear layer (0.2 in the reference).
    drop_path : float, optional
        Stochastic-depth rate of the last block (0.2 in the reference).
    """

    def __init__(self, *, in_channels=3, num_outputs=1, width=1.0, dropout=0.2,
                 drop_path=0.2):
        super().__init__()
        first = make_divisible(EFFICIENTNET_B0_SETTING[0][3] * width)
        layers = [conv_bn_act(in_channels, first, stride=2, activation=nn.SiLU, eps=_BN_EPS)]
        total = sum(stage[5] for stage in EFFICIENTNET_B0_SETTING)
        index, channels = 0, first
        for expand, kernel, stride, _, out, repeats in EFFICIENTNET_B0_SETTING:
            out = make_divisible(out * width)
            stage = []
            for repeat in range(repeats):
                stage.append(MBConv(channels, out, expand_ratio=expand, kernel=kernel,
                                    stride=stride if repeat == 0 else 1,
                                    drop_path=drop_path * index / total))
                channels = out
                index += 1
            layers.append(nn.Sequential(*stage))
        last = 4 * channels
        layers.append(conv_bn_act(channels, last, kernel=1, activation=nn.SiLU, eps=_BN_EPS))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(last, num_outputs))
        init_weights(self)

    def forward(self, x):
        return self.head(self.features(x))
