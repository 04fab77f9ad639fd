"""Entry point of the preprocessing plugin: the built-in steps and configurations.

Steps are registered by import path, so OpenCV and photutils load only when a step is used.
"""

from gpm_astro import hookimpl

from .configs import CONFIGURATIONS

#: registered name -> "module:class" of each built-in step
STEPS = {
    "check_pixels": "gpm_astro_plugins.preprocessing.common:CheckPixels",
    "size_limit": "gpm_astro_plugins.preprocessing.common:SizeLimit",
    "mask_neighbours": "gpm_astro_plugins.preprocessing.noise_aware:MaskNeighbours",
    "blend_check": "gpm_astro_plugins.preprocessing.noise_aware:BlendCheck",
    "fragment_check": "gpm_astro_plugins.preprocessing.noise_aware:FragmentCheck",
    "mask_neighbours_paper": "gpm_astro_plugins.preprocessing.paper:PaperMaskNeighbours",
    "blend_check_photutils": "gpm_astro_plugins.preprocessing.paper:PhotutilsBlendCheck",
    "fragment_check_paper": "gpm_astro_plugins.preprocessing.paper:PaperFragmentCheck",
}


@hookimpl
def gpm_astro_register_preprocessing_steps(register):
    for name, path in STEPS.items():
        register(path, name=name)


@hookimpl
def gpm_astro_register_preprocessing_configs(register):
    for name, steps in CONFIGURATIONS.items():
        register(name, steps)
