"""Run the paper's stages in order, from a configuration, into one output folder.

The stages, each writing its outputs atomically into ``output_dir`` so that nothing already
done is lost when a later stage fails:

==============  ===========================================================================
``sky``         labels, image catalogue and cutouts (the mock sky, or your own files)
``select``      star-forming labels (`gpm_astro.select_starforming`)
``crossmatch``  labels matched to the image catalogue (`gpm_astro.crossmatch`)
``preprocess``  cleaned cutouts of the labelled galaxies and of the application galaxies
``sample``      uniform-in-Z sample and the 5:3:2 train / validation / test split
``estimate``    one per estimator: fit on train, predict the test set (and the application set)
``evaluate``    metrics table (mu, sigma, NMAD, error calibration) and figures
``catalogue``   the application catalogue (the paper's Table 2 columns, plus errors and flags)
``report``      a one-page, self-contained HTML report
==============  ===========================================================================

A stage is skipped when its outputs exist and were made from the same configuration (its own
section and everything upstream); ``force=True`` reruns everything.
"""

from .catalogue import CATALOGUE_COLUMNS, make_catalogue
from .config import DEFAULT_CONFIG, STAGE_NAMES, config_to_toml, load_config
from .cutout_store import CutoutWriter, read_cutouts, write_cutouts
from .runner import Pipeline, run_pipeline

__all__ = ["DEFAULT_CONFIG", "STAGE_NAMES", "CATALOGUE_COLUMNS", "load_config", "config_to_toml",
           "Pipeline", "run_pipeline", "make_catalogue", "write_cutouts", "read_cutouts",
           "CutoutWriter"]
