"""Built-in plugin: GPM-ResNet, the paper's network (model, training, estimators).

- `model`: the network (`GPMResNet`) and its configuration (`GPMResNetConfig`, ``paper``/``lite``);
- `training`: the training loop (`train_network`), resumable from checkpoints;
- `estimator`: the estimators ``gpm_resnet`` (Z) and ``gpm_resnet_mass`` (log M*), built from
  `fitting`, `inference` (the inference engine), `error_model` and `persistence` (safetensors
  weights and a model card).
"""

from gpm_astro.lazy import lazy_attributes

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "GPMResNetEstimator": ".estimator",
    "GPMResNetMassEstimator": ".estimator",
    "NAMED_CONFIGS": ".model",
    "GPMResNet": ".model",
    "GPMResNetConfig": ".model",
    "build_model": ".model",
    "get_config": ".model",
}

__all__ = ["GPMResNetEstimator", "GPMResNetMassEstimator", "GPMResNet", "GPMResNetConfig",
           "NAMED_CONFIGS", "build_model", "get_config"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
