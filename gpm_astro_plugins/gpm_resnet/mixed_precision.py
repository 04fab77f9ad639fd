"""Inference copies of a trained GPM-ResNet: BatchNorm folded into the convolutions, and a
mixed-precision copy (bf16 bulk, fp32 ends; docs/gpm_resnet.rst, "Inference speed")."""

import numpy as np
import torch
from torch import nn

from gpm_astro.exceptions import ParameterError

__all__ = ["CastTo", "fold_batchnorm", "mixed_precision_copy"]


class CastTo(nn.Module):
    """Cast the input to ``dtype`` (a precision boundary inside a mixed-precision network)."""

    dropblock = None  # a stage member without DropBlock

    def __init__(self, dtype):
        super().__init__()
        self.dtype = dtype

    def extra_repr(self):
        return str(self.dtype)

    def forward(self, x):
        return x.to(self.dtype)


def _fused(conv, norm):
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    return fuse_conv_bn_eval(conv, norm)


def fold_batchnorm(model):
    """Return an eval-mode copy of a `GPMResNet` with every BatchNorm folded into its conv.

    The copy computes the same function in fp32 (to rounding) with one convolution (with bias)
    where there were a convolution and a BatchNorm; the original is not changed.
    """
    import copy

    folded = copy.deepcopy(model).eval()
    folded.ilo[0] = _fused(folded.ilo[0], folded.ilo[1])
    folded.ilo[1] = nn.Identity()
    for stage in folded.dho:
        for block in stage:
            block.conv1, block.bn1 = _fused(block.conv1, block.bn1), nn.Identity()
            block.conv2, block.bn2 = _fused(block.conv2, block.bn2), nn.Identity()
            block.conv3, block.bn3 = _fused(block.conv3, block.bn3), nn.Identity()
            if block.downsample is not None:
                block.downsample = nn.Sequential(
                    _fused(block.downsample[0], block.downsample[1]))
    return folded


def mixed_precision_copy(model, *, fp32_blocks=0, fp32_entry=True, dtype=torch.bfloat16):
    """Return an inference copy running the network's bulk in bf16, its sensitive ends in fp32.

    BatchNorm is folded into the convolutions in fp32 first (`fold_batchnorm`); then the ILO
    block, the first ``fp32_blocks`` bottlenecks and the PG head keep fp32 weights and
    activations while the later bottlenecks get ``dtype`` weights and activations (`CastTo`
    at the boundaries). With ``fp32_entry`` the two convolutions that read the fp32 output of
    the kept part (the next bottleneck's first 1x1 convolution and its downsample) stay fp32 as
    well, so that output is never rounded. Measured on a trained network, rounding the input of
    the first layers (flux with a wide dynamic range) and the head's output dominates the bf16
    error, while the later blocks, which hold most of the arithmetic, barely matter
    (docs/gpm_resnet.rst, "Inference speed"). The copy is in eval mode and channels-last.

    Parameters
    ----------
    model : GPMResNet
    fp32_blocks : int, optional
        Leading bottlenecks kept wholly in fp32.
    fp32_entry : bool, optional
        Keep the first low-precision bottleneck's input convolutions in fp32.
    dtype : torch.dtype, optional
        Low precision of the other bottlenecks.

    Returns
    -------
    GPMResNet
        The copy; ``set_mc_dropout`` works on it as on the original.

    Raises
    ------
    ParameterError
        If ``fp32_blocks`` is not an integer from 0 to the number of bottlenecks.

    Examples
    --------
    >>> from gpm_astro_plugins.gpm_resnet.model import build_model, mixed_precision_copy
    >>> fast = mixed_precision_copy(build_model("lite").eval())
    >>> fast.dho[0][0].conv1.weight.dtype, fast.dho[0][0].conv2[1].weight.dtype
    (torch.float32, torch.bfloat16)
    """
    n_blocks = sum(len(stage) for stage in model.dho)
    if (isinstance(fp32_blocks, bool) or not isinstance(fp32_blocks, (int, np.integer))
            or not 0 <= fp32_blocks <= n_blocks):
        msg = f"fp32_blocks must be an integer in [0, {n_blocks}], got {fp32_blocks!r}"
        raise ParameterError(msg)
    mixed = fold_batchnorm(model)
    index = 0
    stages = []
    for stage in mixed.dho:
        members = []
        for block in stage:
            if index >= fp32_blocks:
                block.to(dtype)
            if index == fp32_blocks and fp32_entry:
                # fp32 input convolutions; their outputs are cast down, the sum stays fp32
                block.conv1.float()
                if block.downsample is not None:
                    block.downsample.float()
                block.conv2 = nn.Sequential(CastTo(dtype), block.conv2)
                members.extend([block, CastTo(dtype)])
            elif index == fp32_blocks:
                members.extend([CastTo(dtype), block])
            else:
                members.append(block)
            index += 1
        stages.append(nn.Sequential(*members))
    mixed.dho = nn.Sequential(*stages)
    # the head reads fp32 (its indices kept: `pg_hidden` addresses its layers by position)
    mixed.pg[0] = nn.Sequential(CastTo(torch.float32), mixed.pg[0])
    return mixed.eval().to(memory_format=torch.channels_last)
