"""Entry point of the gpm_resnet plugin: registers the ``gpm_resnet`` and ``gpm_resnet_mass``
estimators. torch loads only when one of them is used."""

from gpm_astro import hookimpl


@hookimpl
def gpm_astro_register_estimators(register):
    register("gpm_astro_plugins.gpm_resnet.estimator:GPMResNetEstimator", name="gpm_resnet")
    register("gpm_astro_plugins.gpm_resnet.estimator:GPMResNetMassEstimator",
             name="gpm_resnet_mass")
