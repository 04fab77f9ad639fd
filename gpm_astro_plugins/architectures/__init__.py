"""Built-in plugin: the architectures the paper compares GPM-ResNet with (Table 1, §4.2).

ResNet-34, ResNet-50, ResNet-101, MobileNetV2, EfficientNet-B0 and DenseNet-121, written in
plain torch (no model library: the usual ones pull a CUDA build of torch), each with a width
multiplier, and each registered as an estimator trained exactly like GPM-ResNet.

- `networks`: `build_network(name, width=...)` and the reference parameter counts;
- `estimator`: `ArchitectureEstimator` and one registered subclass per architecture.
"""

from gpm_astro.lazy import lazy_attributes

#: public name -> the module that defines it (imported on first use: torch loads then)
_LAZY = {
    "ARCHITECTURES": ".networks",
    "REFERENCE_PARAMETER_COUNTS": ".networks",
    "build_network": ".networks",
}

__all__ = ["ARCHITECTURES", "REFERENCE_PARAMETER_COUNTS", "build_network"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
