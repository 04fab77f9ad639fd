"""ResNet-34, -50 and -101 (He et al. 2016) in plain torch, laid out as the reference models.

Basic blocks (two 3x3 convolutions) for ResNet-34, bottlenecks (1x1, 3x3 with the stride,
1x1, expansion 4) for ResNet-50/101; a 1x1 projection where the shape changes. With
``width=1``, three input channels and 1000 outputs the parameter counts equal the reference
ImageNet models' (tested). Unlike GPM-ResNet these have no ECA and no DropBlock, and their head
is one linear layer.
"""

from torch import nn

from .common import RegressionNetwork, init_weights

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "RESNET_BLOCKS"]

#: (block type, blocks per stage) of the named depths
RESNET_BLOCKS = {
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def _conv_bn(in_channels, out_channels, kernel, stride=1):
    return [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                      bias=False), nn.BatchNorm2d(out_channels)]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    expansion = 1

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        out_channels = width * self.expansion
        self.body = nn.Sequential(*_conv_bn(in_channels, width, 3, stride),
                                  nn.ReLU(inplace=True), *_conv_bn(width, out_channels, 3))
        self.shortcut = (nn.Sequential(*_conv_bn(in_channels, out_channels, 1, stride))
                         if stride != 1 or in_channels != out_channels else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(BasicBlock):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, with a residual connection."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1):
        nn.Module.__init__(self)
        out_channels = width * self.expansion
        self.body = nn.Sequential(
            *_conv_bn(in_channels, width, 1), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, out_channels, 1))
        self.shortcut = (nn.Sequential(*_conv_bn(in_channels, out_channels, 1, stride))
                         if stride != 1 or in_channels != out_channels else nn.Identity())
        self.relu = nn.ReLU(inplace=True)


class ResNet(RegressionNetwork):
    """A ResNet of a named depth.

    Parameters
    ----------
    depth : str
        ``resnet34``, ``resnet50`` or ``resnet101``.
    in_channels : int, optional
        Image channels.
    num_outputs : int, optional
        Outputs of the final linear layer (1 for a regression).
    width : float, optional
        Multiplier on every channel count (1 is the reference network).
    """

    def __init__(self, depth="resnet50", *, in_channels=3, num_outputs=1, width=1.0):
        super().__init__()
        kind, blocks = RESNET_BLOCKS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        stem = max(1, round(64 * width))
        self.stem = nn.Sequential(*_conv_bn(in_channels, stem, 7, 2), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        stages, channels = [], stem
        for index, n_blocks in enumerate(blocks):
            stage_width = max(1, round(64 * 2 ** index * width))
            layers = []
            for block_index in range(n_blocks):
                stride = 2 if index > 0 and block_index == 0 else 1
                layers.append(block(channels, stage_width, stride))
                channels = stage_width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels, num_outputs))
        init_weights(self)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))
