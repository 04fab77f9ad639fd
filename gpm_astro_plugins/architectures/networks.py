"""The architectures by name: `build_network` and the reference parameter counts."""

from gpm_astro.exceptions import ParameterError

from .densenet import DenseNet121
from .efficientnet import EfficientNetB0
from .mobilenet import MobileNetV2
from .resnet import RESNET_BLOCKS, ResNet

__all__ = ["ARCHITECTURES", "REFERENCE_PARAMETER_COUNTS", "build_network"]

#: architecture name -> network class (ResNets take the depth as first argument)
ARCHITECTURES = {"resnet34": ResNet, "resnet50": ResNet, "resnet101": ResNet,
                 "mobilenet_v2": MobileNetV2, "efficientnet_b0": EfficientNetB0,
                 "densenet121": DenseNet121}

#: Parameters of the reference ImageNet models (3 input channels, 1000 classes), as published
#: with torchvision's pretrained weights; our networks at width 1 match them exactly.
REFERENCE_PARAMETER_COUNTS = {"resnet34": 21_797_672, "resnet50": 25_557_032,
                              "resnet101": 44_549_160, "mobilenet_v2": 3_504_872,
                              "efficientnet_b0": 5_288_548, "densenet121": 7_978_856}


def build_network(architecture, *, in_channels=3, num_outputs=1, width=1.0):
    """Return a freshly initialised network.

    Parameters
    ----------
    architecture : str
        A key of `ARCHITECTURES`.
    in_channels : int, optional
        Image channels.
    num_outputs : int, optional
        Outputs (1 for a regression, 1000 for the ImageNet layout).
    width : float, optional
        Channel multiplier; 1 is the reference network.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ParameterError
        Unknown architecture or a non-positive width.

    Examples
    --------
    >>> from gpm_astro_plugins.architectures.networks import build_network
    >>> from gpm_astro_plugins.architectures.common import count_parameters
    >>> count_parameters(build_network("mobilenet_v2", num_outputs=1000))
    3504872
    """
    if architecture not in ARCHITECTURES:
        msg = f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}"
        raise ParameterError(msg)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ParameterError(f"width must be a positive number, got {width!r}")
    kwargs = {"in_channels": in_channels, "num_outputs": num_outputs, "width": float(width)}
    if architecture in RESNET_BLOCKS:
        return ResNet(architecture, **kwargs)
    return ARCHITECTURES[architecture](**kwargs)
