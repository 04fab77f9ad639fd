"""DenseNet-121 (Huang et al. 2017) in plain torch, laid out as the reference model.

Four dense blocks of 6, 12, 24 and 16 layers; each layer (BN, ReLU, 1x1 convolution to
4 x growth channels, BN, ReLU, 3x3 convolution to ``growth`` channels) sees the concatenation
of every earlier layer's output in its block. Transitions halve the channels (1x1 convolution)
and the resolution (2x2 average pool). With ``width=1`` (growth 32, 64 stem channels), three
input channels and 1000 outputs the parameter count equals the reference ImageNet model's
(tested).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .common import RegressionNetwork, init_weights

__all__ = ["DenseNet121", "DenseLayer", "DENSENET121_BLOCKS"]

DENSENET121_BLOCKS = (6, 12, 24, 16)


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bottleneck) then BN-ReLU-3x3 conv; returns only the new channels."""

    def __init__(self, in_channels, growth, bottleneck=4):
        super().__init__()
        hidden = bottleneck * growth
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, growth, 3, padding=1, bias=False))

    def forward(self, features):
        return self.body(torch.cat(features, dim=1))


class DenseBlock(nn.Module):
    """Layers that each read every earlier output of the block."""

    def __init__(self, n_layers, in_channels, growth):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(in_channels + i * growth, growth)
                                    for i in range(n_layers))

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, dim=1)


class DenseNet121(RegressionNetwork):
    """DenseNet-121.

    Parameters
    ----------
    in_channels : int, optional
        Image channels.
    num_outputs : int, optional
        Outputs of the final linear layer.
    width : float, optional
        Multiplier on the growth rate (32) and the stem channels (64).
    """

    def __init__(self, *, in_channels=3, num_outputs=1, width=1.0):
        super().__init__()
        growth = max(1, round(32 * width))
        channels = max(1, round(64 * width))
        layers = [nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False),
                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                  nn.MaxPool2d(3, stride=2, padding=1)]
        for index, n_layers in enumerate(DENSENET121_BLOCKS):
            layers.append(DenseBlock(n_layers, channels, growth))
            channels += n_layers * growth
            if index < len(DENSENET121_BLOCKS) - 1:
                layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                           nn.Conv2d(channels, channels // 2, 1, bias=False),
                           nn.AvgPool2d(2, stride=2)]
                channels //= 2
        layers.append(nn.BatchNorm2d(channels))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_outputs)
        init_weights(self, conv_mode="fan_in")

    def forward(self, x):
        pooled = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1).flatten(1)
        return self.head(pooled)
