"""Entry point of the architectures plugin: registers ``resnet34``, ``resnet50``,
``resnet101``, ``mobilenet_v2``, ``efficientnet_b0`` and ``densenet121``. They are registered
by import path, so torch loads only when one of them is used."""

from gpm_astro import hookimpl

#: registered name -> class name in `gpm_astro_plugins.architectures.estimator`
ESTIMATORS = {
    "resnet34": "ResNet34Estimator",
    "resnet50": "ResNet50Estimator",
    "resnet101": "ResNet101Estimator",
    "mobilenet_v2": "MobileNetV2Estimator",
    "efficientnet_b0": "EfficientNetB0Estimator",
    "densenet121": "DenseNet121Estimator",
}


@hookimpl
def gpm_astro_register_estimators(register):
    for name, class_name in ESTIMATORS.items():
        register(f"gpm_astro_plugins.architectures.estimator:{class_name}", name=name)
