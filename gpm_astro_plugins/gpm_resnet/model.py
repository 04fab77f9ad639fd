"""The GPM-ResNet network (paper §3.1, Fig. 7) in plain torch.

Three blocks, named as in the paper:

- ILO block (initial layer operation): 7x7 convolution (64 channels, stride 2), BatchNorm, ReLU,
  3x3 max-pool (stride 2).
- DHO block (deep hidden operation): ResNet-50 bottleneck stages (3, 4, 6, 3 blocks; widths
  64/128/256/512; expansion 4). Every bottleneck applies DropBlock to its 3x3 convolution's output
  and efficient channel attention (ECA) after its last 1x1 convolution + BatchNorm, before the
  residual addition.
- PG block (parameter generator): global average pool, ReLU, Linear(2048, 128), ReLU,
  Linear(128, 1). Optionally (``photometry_apertures``, not in the paper) the integrated
  photometry of the input in circular apertures (`photometry.AperturePhotometry`) is
  concatenated to the pooled features before the first linear layer.

`GPMResNetConfig` holds the architecture, the input transform and the training defaults; the
named configurations are ``paper`` (the network and training of the paper), ``paper_recipe`` (the
paper's network with the training recipe measured on the mock sky) and ``lite`` (small enough to
train on a laptop CPU in minutes).
"""

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gpm_astro.exceptions import ParameterError

from .mixed_precision import CastTo, fold_batchnorm, mixed_precision_copy
from .photometry import AperturePhotometry, photometry_feature_count

__all__ = ["GPMResNetConfig", "NAMED_CONFIGS", "get_config", "ECA", "DropBlock2d",
           "Bottleneck", "GPMResNet", "InputTransform", "build_model", "count_parameters",
           "CastTo", "fold_batchnorm", "mixed_precision_copy", "FeatureTail", "pg_hidden"]

INPUT_SCALINGS = ("none", "asinh")
OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("step", "onecycle")
BASE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4


@dataclass
class GPMResNetConfig:
    """Architecture, input transform and training defaults of a GPM-ResNet.

    Attributes
    ----------
    name : str
        Label stored in the model card.
    width : float
        Multiplier on the channel widths (stem 64, stages 64/128/256/512); 1 is the paper.
    blocks : tuple of int
        Bottlenecks per stage; (3, 4, 6, 3) is ResNet-50 and the paper.
    input_size : int or None
        Side in pixels the cutouts are resized to (bilinear, anti-aliased) before the network;
        None keeps the cutout size (152 px in the paper).
    crop_size : int or None
        Side in pixels of a central crop taken before any resize, at full resolution (cutouts
        no larger are kept whole); None keeps the whole cutout.
    cutout_size : int
        Side in pixels of the cutouts the model expects (152 for Legacy Survey cutouts).
    bands : str
        Bands fed to the network, a subset of the table's bands (``meta['bands']``, default grz).
    input_scaling : str
        ``"none"``: raw flux in nanomaggies, as the paper; ``"asinh"``: asinh(flux / softening).
    asinh_softening : float
        Softening flux in nanomaggies of the asinh scaling (about the sky noise of one pixel).
    augment : bool
        Random flips and 90-degree rotations of training images.
    drop_prob : float
        DropBlock drop probability reached at the end of the ramp.
    drop_block_size : int
        DropBlock block side in feature-map pixels (clipped to the map size).
    drop_stages : tuple of int
        Stages (1-4) whose bottlenecks use DropBlock.
    drop_ramp : bool
        Ramp the drop probability linearly from 0 to ``drop_prob`` over training.
    eca_kernel : int
        Kernel of ECA's 1-D convolution over channels (odd).
    head_hidden : int
        Hidden units of the PG block.
    epochs, batch_size, lr, lr_step, lr_gamma, weight_decay : training defaults
        With ``lr_schedule="step"``, ``lr`` multiplied by ``lr_gamma`` every ``lr_step`` epochs;
        with ``"onecycle"``, ``lr`` is the peak of a one-cycle schedule (warm-up over the first
        ``lr_warmup`` of the steps, then cosine annealing to ``lr / 1e4``), stepped per batch.
    optimizer : str
        ``"adam"`` (the paper) or ``"adamw"`` (decoupled weight decay).
    lr_schedule : str
        ``"step"`` (the paper) or ``"onecycle"``.
    lr_warmup : float
        Share of the steps spent warming up with ``"onecycle"``.
    standardize_target : bool
        Train on (y - mean) / std of the training labels (the paper used raw labels).
    error_head : bool
        The PG block's last layer gives a mean and a log-variance: the mean trained with MSE
        as the paper's single output, the variance with the Gaussian likelihood of the mean's
        residuals (gradient stopped at the mean, Stirn et al. 2023), so that it becomes each
        galaxy's own error without costing the mean accuracy. False: one number (the paper).
    test_time_augmentation : bool
        Average the prediction over the eight flips and 90-degree rotations of each cutout.
    photometry_apertures : tuple of float
        Radii (network-input pixels) of circular apertures whose integrated photometry (asinh
        magnitude and colours, `photometry.AperturePhotometry`) is concatenated to the pooled
        features before the PG block's hidden layer; empty (the default, and the paper): none.
    mean_loss_beta : float
        With the error head, each galaxy's squared error in the mean's loss is weighted by its
        predicted variance to the power ``beta - 1`` (gradient stopped; weights normalised to a
        batch mean of 1), as the beta-NLL of Seitzer et al. (2022): 1 (the default) is plain
        MSE, 0 the full Gaussian likelihood; in between, galaxies whose labels scatter less
        weigh more.
    """

    name: str = "paper"
    width: float = 1.0
    blocks: tuple = (3, 4, 6, 3)
    input_size: int | None = None
    crop_size: int | None = None
    cutout_size: int = 152
    bands: str = "grz"
    input_scaling: str = "none"
    asinh_softening: float = 0.01
    augment: bool = False
    drop_prob: float = 0.1
    drop_block_size: int = 7
    drop_stages: tuple = (3, 4)
    drop_ramp: bool = True
    eca_kernel: int = 3
    head_hidden: int = 128
    epochs: int = 50
    batch_size: int = 256
    lr: float = 0.01
    lr_step: int = 10
    lr_gamma: float = 0.1
    weight_decay: float = 0.0
    optimizer: str = "adam"
    lr_schedule: str = "step"
    lr_warmup: float = 0.2
    standardize_target: bool = False
    error_head: bool = False
    test_time_augmentation: bool = False
    photometry_apertures: tuple = ()
    mean_loss_beta: float = 1.0

    def __post_init__(self):
        self.blocks = tuple(int(b) for b in self.blocks)
        self.drop_stages = tuple(int(s) for s in self.drop_stages)
        self.photometry_apertures = tuple(self.photometry_apertures)
        self.validate()

    def validate(self):
        """Raise `ParameterError` naming the first invalid field."""
        if not self.width > 0:
            raise ParameterError(f"width must be positive, got {self.width!r}")
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ParameterError(f"blocks must be four positive counts, got {self.blocks!r}")
        if self.input_size is not None and int(self.input_size) < 16:
            raise ParameterError(f"input_size must be >= 16 or None, got {self.input_size!r}")
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise ParameterError(f"bands must be distinct band letters, got {self.bands!r}")
        if self.crop_size is not None and int(self.crop_size) < 16:
            raise ParameterError(f"crop_size must be None or >= 16, got {self.crop_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            msg = f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            raise ParameterError(msg)
        if not 0 < self.lr_warmup < 1:
            raise ParameterError(f"lr_warmup must be in (0, 1), got {self.lr_warmup!r}")
        if self.input_scaling not in INPUT_SCALINGS:
            msg = f"input_scaling must be one of {INPUT_SCALINGS}, got {self.input_scaling!r}"
            raise ParameterError(msg)
        if not self.asinh_softening > 0:
            msg = f"asinh_softening must be positive, got {self.asinh_softening!r}"
            raise ParameterError(msg)
        if not 0 <= self.mean_loss_beta <= 1:
            msg = f"mean_loss_beta must be in [0, 1], got {self.mean_loss_beta!r}"
            raise ParameterError(msg)
        if not 0 <= self.drop_prob < 1:
            raise ParameterError(f"drop_prob must be in [0, 1), got {self.drop_prob!r}")
        if self.drop_block_size < 1:
            msg = f"drop_block_size must be >= 1, got {self.drop_block_size!r}"
            raise ParameterError(msg)
        if any(s not in (1, 2, 3, 4) for s in self.drop_stages):
            raise ParameterError(f"drop_stages must be within 1-4, got {self.drop_stages!r}")
        if self.eca_kernel < 1 or self.eca_kernel % 2 == 0:
            raise ParameterError(f"eca_kernel must be odd and positive, got {self.eca_kernel!r}")
        for name in ("epochs", "batch_size", "lr_step", "head_hidden"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ParameterError(f"lr must be positive, got {self.lr!r}")
        if not all(isinstance(r, numbers.Real) and not isinstance(r, bool)
                   and math.isfinite(r) and r > 0 for r in self.photometry_apertures):
            msg = (f"photometry_apertures must be positive radii in pixels, got "
                   f"{self.photometry_apertures!r}")
            raise ParameterError(msg)

    def replace(self, **changes):
        """Return a copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Plain-JSON form (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data):
        """Inverse of `to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParameterError(f"unknown GPMResNetConfig field(s) {unknown}")
        return cls(**data)

    @property
    def stage_widths(self):
        return tuple(max(1, round(w * self.width)) for w in BASE_WIDTHS)

    @property
    def stem_width(self):
        return max(1, round(64 * self.width))

    @property
    def feature_width(self):
        return self.stage_widths[-1] * EXPANSION

    @property
    def n_outputs(self):
        """Numbers the network returns per galaxy: the value, and its log-variance."""
        return 2 if self.error_head else 1

    @property
    def network_input_size(self):
        """Side in pixels of the images the network sees."""
        if self.input_size:
            return self.input_size
        return min(self.crop_size or self.cutout_size, self.cutout_size)


#: what the CPU recipe changes relative to the paper's training (docs/gpm_resnet.rst, measured
#: on the mock sky): asinh input, flips and rotations, AdamW with a one-cycle schedule at a
#: lower peak learning rate, standardised labels, an error head, test-time augmentation
RECIPE = {"input_scaling": "asinh", "augment": True, "optimizer": "adamw", "weight_decay": 1e-4,
          "lr_schedule": "onecycle", "standardize_target": True, "error_head": True,
          "test_time_augmentation": True}

NAMED_CONFIGS = {
    # The paper's network and training (METHOD.md §5-§6): 152 px raw flux, 3-4-6-3.
    "paper": GPMResNetConfig(name="paper"),
    # The paper's network trained with the recipe (for a GPU: 152 px, full resolution).
    "paper_recipe": GPMResNetConfig(name="paper_recipe", lr=1e-3, **RECIPE),
    # The fast CPU variant: a quarter-width network with one bottleneck per stage on the central
    # 48 px at full resolution (the galaxies are small: no resize), trained with the recipe;
    # trains on a 2-core CPU in minutes (docs/gpm_resnet.rst).
    "lite": GPMResNetConfig(
        name="lite", width=0.25, blocks=(1, 1, 1, 1), crop_size=48, drop_prob=0.1,
        drop_block_size=3, drop_stages=(3, 4), epochs=20, batch_size=64, lr=1e-3, **RECIPE),
}


def get_config(config):
    """Return a `GPMResNetConfig` from a name (`NAMED_CONFIGS`), a dict, or a config."""
    if isinstance(config, GPMResNetConfig):
        return config.replace()
    if isinstance(config, dict):
        return GPMResNetConfig.from_dict(config)
    if isinstance(config, str):
        if config not in NAMED_CONFIGS:
            msg = f"unknown GPM-ResNet config {config!r}; known: {sorted(NAMED_CONFIGS)}"
            raise ParameterError(msg)
        return NAMED_CONFIGS[config].replace()
    msg = f"config must be a name, dict or GPMResNetConfig, got {type(config).__name__}"
    raise ParameterError(msg)


class ECA(nn.Module):
    """Efficient channel attention (Wang et al. 2020).

    Global average pool -> 1-D convolution across channels (kernel ``kernel_size``, no bias)
    -> sigmoid -> multiply the input channel-wise.
    """

    def __init__(self, kernel_size=3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        weights = x.mean(dim=(2, 3))                      # (n, c)
        weights = self.conv(weights.unsqueeze(1)).squeeze(1)
        return x * torch.sigmoid(weights)[:, :, None, None]


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al. 2018): zero contiguous ``block_size`` squares of a feature map.

    Active in training mode, or whenever ``mc_active`` is True (Monte-Carlo passes at
    prediction time); the identity otherwise. The mask is shared by all channels of a sample,
    and the kept activations are rescaled by (number of units / number kept).

    Parameters
    ----------
    drop_prob : float
        Target fraction of dropped units. ``drop_prob_now`` (set by the trainer's ramp) is the
        value used.
    block_size : int
        Side of the dropped squares, clipped to half the feature-map side.
    """

    def __init__(self, drop_prob=0.1, block_size=7):
        super().__init__()
        self.drop_prob = float(drop_prob)
        self.drop_prob_now = float(drop_prob)
        self.block_size = int(block_size)
        self.mc_active = False

    def extra_repr(self):
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}"

    def forward(self, x):
        if not (self.training or self.mc_active) or self.drop_prob_now <= 0:
            return x
        n, _, height, width = x.shape
        # a block as large as the map would drop a sample's whole map at once
        block = max(1, min(self.block_size, height // 2, width // 2))
        # seed rate so that ~drop_prob of the units fall in a block (the paper's eq. 1)
        valid_h, valid_w = height - block + 1, width - block + 1
        gamma = (self.drop_prob_now / block ** 2 * height * width / (valid_h * valid_w))
        seeds = torch.zeros(n, 1, height, width, device=x.device, dtype=x.dtype)
        top, left = block // 2, block // 2
        seeds[:, :, top:top + valid_h, left:left + valid_w] = torch.bernoulli(
            torch.full((n, 1, valid_h, valid_w), min(gamma, 1.0), device=x.device,
                       dtype=x.dtype))
        dropped = F.max_pool2d(seeds, kernel_size=block, stride=1, padding=block // 2)
        if block % 2 == 0:
            dropped = dropped[:, :, :height, :width]
        keep = 1.0 - dropped
        # per-sample rescaling: a galaxy's output must not depend on its batch neighbours
        scale = (height * width) / keep.sum(dim=(1, 2, 3), keepdim=True).clamp(min=1.0)
        return x * keep * scale


class Bottleneck(nn.Module):
    """ResNet bottleneck with DropBlock after the 3x3 convolution and ECA before the addition."""

    def __init__(self, in_channels, width, *, stride=1, eca_kernel=3, drop_prob=0.0,
                 drop_block_size=7):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.dropblock = DropBlock2d(drop_prob, drop_block_size) if drop_prob > 0 else None
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.eca = ECA(eca_kernel)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        if self.dropblock is not None:
            out = self.dropblock(out)
        out = self.eca(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


class GPMResNet(nn.Module):
    """GPM-ResNet: ILO block, DHO block (four bottleneck stages), PG block -> one number.

    Parameters
    ----------
    config : GPMResNetConfig
        Architecture. The input is (n, len(config.bands), S, S) already transformed by
        `InputTransform`; the output is (n, 1).
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        stem = config.stem_width
        self.ilo = nn.Sequential(
            nn.Conv2d(len(config.bands), stem, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1))
        stages = []
        in_channels = stem
        for index, (n_blocks, width) in enumerate(zip(config.blocks, config.stage_widths)):
            stage_number = index + 1
            drop = config.drop_prob if stage_number in config.drop_stages else 0.0
            layers = []
            for block_index in range(n_blocks):
                stride = 2 if (block_index == 0 and stage_number > 1) else 1
                layers.append(Bottleneck(in_channels, width, stride=stride,
                                         eca_kernel=config.eca_kernel, drop_prob=drop,
                                         drop_block_size=config.drop_block_size))
                in_channels = width * EXPANSION
            stages.append(nn.Sequential(*layers))
        self.dho = nn.Sequential(*stages)
        self.photometry = None
        if config.photometry_apertures:
            self.photometry = AperturePhotometry(config.photometry_apertures,
                                                 len(config.bands), config.input_scaling,
                                                 config.asinh_softening)
        self.pg = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.ReLU(),
            nn.Linear(in_channels + photometry_feature_count(config), config.head_hidden),
            nn.ReLU(), nn.Linear(config.head_hidden, config.n_outputs))
        self._init_weights()

    def _init_weights(self):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.pg[-1](self.features(x))

    def features(self, x):
        """The penultimate-layer features (the PG block's hidden layer, after its ReLU)."""
        return self.penultimate(self.dho(self.ilo(x)), self.side_input(x))

    def side_input(self, x):
        """The normalised aperture photometry of network input ``x`` (None without
        ``photometry_apertures``); the same for every flip and rotation of ``x``."""
        return None if self.photometry is None else self.photometry(x)

    def penultimate(self, hidden, side=None):
        """The PG block's hidden layer from the last stage's output and the side input."""
        return pg_hidden(self.pg, hidden, side)

    def dropblocks(self):
        """The DropBlock modules, in order."""
        return [m for m in self.modules() if isinstance(m, DropBlock2d)]

    def set_drop_progress(self, fraction):
        """Set every DropBlock to ``fraction`` (0-1) of its target probability (the ramp)."""
        fraction = float(min(max(fraction, 0.0), 1.0))
        for block in self.dropblocks():
            block.drop_prob_now = block.drop_prob * fraction

    def set_mc_dropout(self, active):
        """Keep DropBlock active in eval mode (Monte-Carlo passes) or not."""
        for block in self.dropblocks():
            block.mc_active = bool(active)
            if active:
                block.drop_prob_now = block.drop_prob


def pg_hidden(pg, hidden, side=None):
    """The hidden layer of PG block ``pg`` (pool, flatten, ReLU, linear, ReLU) from the last
    stage's output ``hidden``, the side input ``side`` (or None) concatenated to the pooled
    features."""
    pooled = pg[2](pg[1](pg[0](hidden)))
    if side is not None:
        pooled = torch.cat([pooled, side.to(pooled.dtype)], dim=1)
    return pg[4](pg[3](pooled))


class FeatureTail(nn.Module):
    """The stages of a `GPMResNet` from ``first_stage`` on and its PG block's hidden layer:
    ``tail(hidden, side)`` gives the penultimate features from a stage's input and the side
    input (what the inference engine runs after the trunk)."""

    def __init__(self, model, first_stage):
        super().__init__()
        self.stages = nn.Sequential(*model.dho[first_stage:])
        self.pg = model.pg

    def forward(self, hidden, side=None):
        return pg_hidden(self.pg, self.stages(hidden), side)


class InputTransform:
    """Turn a batch of cutouts (n, bands, H, W) in nanomaggies into network input.

    Selects ``config.bands`` from ``table_bands``, takes the central ``config.crop_size``
    pixels, resizes to ``config.input_size`` (bilinear, anti-aliased) and applies the input
    scaling.

    Parameters
    ----------
    config : GPMResNetConfig
    table_bands : str
        Band order of the cutouts (``table.meta['bands']``).
    """

    def __init__(self, config, table_bands="grz"):
        missing = [b for b in config.bands if b not in table_bands]
        if missing:
            msg = (f"the model uses bands {config.bands!r} but the cutouts hold "
                   f"{table_bands!r} (missing {''.join(missing)!r})")
            raise ParameterError(msg)
        self.config = config
        self.band_index = [table_bands.index(b) for b in config.bands]

    def __call__(self, images):
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if self.band_index != list(range(x.shape[1])):
            x = x[:, self.band_index]
        crop = self.config.crop_size
        if crop is not None and x.shape[-1] > crop:
            top = (x.shape[-2] - crop) // 2
            left = (x.shape[-1] - crop) // 2
            x = x[..., top:top + crop, left:left + crop]
        size = self.config.input_size
        if size is not None and (x.shape[-2], x.shape[-1]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        if self.config.input_scaling == "asinh":
            x = torch.asinh(x / self.config.asinh_softening)
        return x.contiguous()


def build_model(config):
    """Return a freshly initialised `GPMResNet` for a config, name or dict."""
    return GPMResNet(get_config(config))


def count_parameters(model):
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
