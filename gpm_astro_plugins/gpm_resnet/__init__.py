"""Built-in plugin: GPM-ResNet, the paper's network (model, training, estimators).

- `model`: the network (`GPMResNet`) and its configuration (`GPMResNetConfig`, ``paper``/``lite``);
- `training`: the training loop (`train_network`), resumable from checkpoints;
- `estimator`: the estimators ``gpm_resnet`` (Z) and ``gpm_resnet_mass`` (log M*), built from
  `fitting`, `inference` (the inference engine), `error_model` and `persistence` (safetensors
  weights and a model card).
"""

from .estimator import GPMResNetEstimator, GPMResNetMassEstimator
from .model import NAMED_CONFIGS, GPMResNet, GPMResNetConfig, build_model, get_config

__all__ = ["GPMResNetEstimator", "GPMResNetMassEstimator", "GPMResNet", "GPMResNetConfig",
           "NAMED_CONFIGS", "build_model", "get_config"]
