"""The demo: the paper's whole study on the embedded mock sky, offline, in minutes on a laptop.

`demo_config` returns the pipeline configuration the demo runs; `run_demo` runs it. The steps:
build a mock sky, select the star-forming labels, crossmatch them to the image catalogue,
preprocess the cutouts, draw a uniform-in-Z sample split 5:3:2, train the lite GPM-ResNet,
fit the 2nd- and 3rd-order colour polynomials, apply the mass-metallicity relation (with the
catalogue's mass and with a mass predicted from the images), evaluate them all on the test set
beside the mock's noise floor, predict Z for the unlabelled EXP galaxies, and write the
catalogue, the metrics, the figures and an HTML report.
"""

import os

from .exceptions import ParameterError
from .pipeline import run_pipeline

__all__ = ["DEMO_MEASURED", "DEMO_N_GALAXIES", "DEMO_SAMPLE_FRACTION", "DEMO_MOCK_PARAMS",
           "DEMO_EPOCHS", "DEMO_MASS_EPOCHS", "demo_config", "run_demo"]

#: Wall time and disk of one measured ``make demo`` (fresh clone, set-up included); written by
#: docs/scripts/make_tutorial_numbers.py with the README's and the tutorial's numbers.
DEMO_MEASURED = (
    "3 min 28 s for `make demo` on a fresh clone, set-up included, 17 MB of output (2-core "
    "machine, nearly quiet (load average below 1.4))"
)
#: Mock galaxies rendered by default: enough that ~1,500 train the lite GPM-ResNet.
DEMO_N_GALAXIES = 5500
#: Share of the labelled galaxies passing preprocessing that the uniform-in-Z draw takes
#: (the paper drew 25,000 of 86,660; a draw of all of them could not be flattened at all).
DEMO_SAMPLE_FRACTION = 0.85
#: Training epochs of the demo's networks (the lite configuration's default is 30; half of it
#: loses little on the mock and keeps the demo short on a busy CPU): the
#: metallicity network, and the image stellar-mass network of the mass-metallicity route.
DEMO_EPOCHS = 15
DEMO_MASS_EPOCHS = 10
#: Catalogue galaxies at most (unlabelled EXP galaxies of the mock sky).
DEMO_MAX_CATALOGUE = 2000
#: Mock-sky settings of the demo: most galaxies labelled and clean, so that a few thousand
#: rendered galaxies leave ~1,500 for training (the mock's defaults mimic the real sky's
#: higher share of unlabelled, blended and defective cutouts).
DEMO_MOCK_PARAMS = {"labelled_fraction": 0.85, "label_defect_rate": 0.10, "blend_rate": 0.05,
                    "large_rate": 0.04, "empty_rate": 0.03, "bad_pixel_rate": 0.03}


def demo_config(*, n_galaxies=DEMO_N_GALAXIES, quick=False, epochs=None, seed=0,
                mass_model=None, n_jobs=None, keep_cutouts=False):
    """The pipeline configuration of the demo.

    Parameters
    ----------
    n_galaxies : int, optional
        Galaxies of the mock image catalogue (labelled and unlabelled).
    quick : bool, optional
        A fast smoke run: fewer training epochs and no image mass model.
    epochs : int, optional
        Training epochs of both GPM-ResNet models (default: `DEMO_EPOCHS` and
        `DEMO_MASS_EPOCHS`, or 3 with ``quick``).
    seed : int, optional
        Seed of the mock sky; sampling and training seeds are fixed.
    mass_model : bool, optional
        Also train the image mass model for the mass-metallicity route (default: not quick).
    n_jobs : int, optional
        Processes for rendering and preprocessing; default every core, at most 4.
    keep_cutouts : bool, optional
        Keep the HDF5 cutout stores (the raw mock cutouts, ~280 kB a galaxy, and the cleaned
        ones); by default each is removed once no later stage reads it, which keeps the demo's
        output under 300 MB (a rerun that needs them makes them again).

    Returns
    -------
    dict
        A configuration for `gpm_astro.pipeline.Pipeline` (without ``output_dir``).

    Raises
    ------
    ParameterError
        If ``n_galaxies`` or ``epochs`` is not a positive integer.

    Examples
    --------
    >>> from gpm_astro.demo import demo_config
    >>> cfg = demo_config(n_galaxies=300, quick=True)
    >>> sorted(cfg["estimators"])
    ['colour_polynomial_2', 'colour_polynomial_3', 'gpm_resnet', 'mzr_catalogue_mass']
    """
    for name, value in (("n_galaxies", n_galaxies), ("epochs", epochs)):
        if value is None and name == "epochs":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name} must be a positive integer, got {value!r}"
            raise ParameterError(msg)
    mass_epochs = epochs
    if epochs is None:
        epochs, mass_epochs = (3, 3) if quick else (DEMO_EPOCHS, DEMO_MASS_EPOCHS)
    if mass_model is None:
        mass_model = not quick
    if n_jobs is None:
        n_jobs = min(os.cpu_count() or 1, 4)
    resnet = {"config": "lite", "seed": 0, "epochs": epochs}
    estimators = {
        "gpm_resnet": {"estimator": "gpm_resnet", "params": resnet, "target": "oh_p50"},
        "colour_polynomial_2": {"estimator": "colour_polynomial", "params": {"order": 2},
                                "target": "oh_p50"},
        "colour_polynomial_3": {"estimator": "colour_polynomial", "params": {"order": 3},
                                "target": "oh_p50"},
        "mzr_catalogue_mass": {"estimator": "mass_metallicity",
                               "params": {"mass_column": "lgm_tot_p50"}, "target": "oh_p50"},
    }
    if mass_model:
        estimators["mzr_image_mass"] = {
            "estimator": "mass_metallicity", "params": {}, "target": "oh_p50",
            "mass_model": {"estimator": "gpm_resnet_mass",
                           "params": dict(resnet, epochs=mass_epochs),
                           "target": "lgm_fib_p50"}}
    return {
        "keep_cutouts": keep_cutouts,
        "source": {"name": "mock", "params": dict(DEMO_MOCK_PARAMS, n_galaxies=n_galaxies,
                                                  seed=seed, n_jobs=n_jobs)},
        "preprocess": {"config": "default", "n_jobs": n_jobs},
        "crossmatch": {"radius_arcsec": 1.0, "one_to_one": True},
        "sample": {"n_galaxies": 25000, "max_fraction": DEMO_SAMPLE_FRACTION,
                   "column": "oh_p50", "n_bins": 15, "fractions": [5, 3, 2], "seed": 123},
        "estimators": estimators,
        "application": {"source_type": "EXP", "unlabelled_only": True,
                        "max_galaxies": DEMO_MAX_CATALOGUE, "estimator": "gpm_resnet"},
        "evaluate": {"target": "oh_p50", "figures": True},
        "report": {"title": f"gpm_astro demo: metallicities on a mock sky of {n_galaxies:,} "
                            f"galaxies"},
    }


def run_demo(output_dir, *, n_galaxies=DEMO_N_GALAXIES, quick=False, epochs=None, seed=0,
             mass_model=None, n_jobs=None, keep_cutouts=False, force=False, progress=True):
    """Run the demo into ``output_dir`` (see the module docstring for what it does).

    Parameters
    ----------
    output_dir : str or path-like
        Output folder; created if needed. A rerun skips the stages already done.
    n_galaxies, quick, epochs, seed, mass_model, n_jobs, keep_cutouts
        See `demo_config`.
    force : bool, optional
        Rerun every stage.
    progress : bool, optional
        Stage messages and progress bars on standard error.

    Returns
    -------
    dict
        See `gpm_astro.pipeline.Pipeline.run`: ``metrics`` (Table), ``report`` (path),
        ``timings``, ``total_seconds``.

    Examples
    --------
    >>> from gpm_astro.demo import run_demo
    >>> result = run_demo("demo_output", n_galaxies=400, quick=True)  # doctest: +SKIP
    >>> result["metrics"]["estimator", "sigma"]  # doctest: +SKIP
    """
    config = demo_config(n_galaxies=n_galaxies, quick=quick, epochs=epochs, seed=seed,
                         mass_model=mass_model, n_jobs=n_jobs, keep_cutouts=keep_cutouts)
    return run_pipeline(config, output_dir=output_dir, force=force, progress=progress)
