"""Entry point of the preprocessing plugin: the built-in steps and configurations."""

from gpm_astro import hookimpl

from .common import CheckPixels, SizeLimit
from .configs import CONFIGURATIONS
from .noise_aware import BlendCheck, FragmentCheck, MaskNeighbours
from .paper import PaperFragmentCheck, PaperMaskNeighbours, PhotutilsBlendCheck

STEPS = (CheckPixels, SizeLimit, MaskNeighbours, BlendCheck, FragmentCheck,
         PaperMaskNeighbours, PhotutilsBlendCheck, PaperFragmentCheck)


@hookimpl
def gpm_astro_register_preprocessing_steps(register):
    for step in STEPS:
        register(step, name=step.name)


@hookimpl
def gpm_astro_register_preprocessing_configs(register):
    for name, steps in CONFIGURATIONS.items():
        register(name, steps)
