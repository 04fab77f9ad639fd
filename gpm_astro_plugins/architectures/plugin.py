"""Entry point of the architectures plugin: registers ``resnet34``, ``resnet50``,
``resnet101``, ``mobilenet_v2``, ``efficientnet_b0`` and ``densenet121``. torch loads only
when the hook runs."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_estimators(register):
    from .estimator import ARCHITECTURE_ESTIMATORS

    for cls in ARCHITECTURE_ESTIMATORS:
        register(cls, name=cls.name)
