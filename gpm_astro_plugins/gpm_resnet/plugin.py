"""Entry point of the gpm_resnet plugin: registers the ``gpm_resnet`` and ``gpm_resnet_mass``
estimators. torch loads only when a hook runs."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_estimators(register):
    from .estimator import GPMResNetEstimator, GPMResNetMassEstimator

    register(GPMResNetEstimator, name="gpm_resnet")
    register(GPMResNetMassEstimator, name="gpm_resnet_mass")
