"""What the ablation studies run: the paper-sized settings, the ``--quick`` ones, and reading
a settings file.

Settings are plain data (TOML, YAML or JSON files read the same), so that a run says exactly
what it trained. Every key is optional in a file; missing ones take the values of the chosen
base (`FULL_SETTINGS` or, with ``quick``, `QUICK_SETTINGS`).

Sections
--------
``studies``
    Which studies run, in order: any of `STUDY_NAMES`.
``sample``
    Where the labelled sample comes from: ``run_dir``, an existing pipeline output folder
    (its ``sample/sample.fits`` split and ``preprocess/labelled_cutouts.h5``), or else
    ``pipeline``, a pipeline run configuration (a mapping, or the path of a TOML/YAML/JSON
    file as ``gpm-astro run`` reads; `gpm_astro.pipeline.load_config`) run up to its sample
    stage into ``OUT/sample``. The default is the mock sky.
``target``
    Column of true metallicities.
``reference``
    The GPM-ResNet every study but the architecture comparison varies: ``estimator`` (a
    registered name) and ``params``. ``params.config`` must be a mapping of GPM-ResNet
    configuration fields, so the resolution and band studies can change ``input_size`` and
    ``bands`` in it.
``architectures``
    ``names``: registered estimators compared with the reference on the same split;
    ``params``: their constructor parameters (``width``, ``recipe``, ...).
``resolution``
    ``sizes``: image sides in pixels the cutouts are resized to (bilinear) before the network.
``bands``
    ``sets``: band combinations, e.g. ``g``, ``gz``, ``grz``.
``size``
    ``column`` (enclosing-circle radius, arcsec), the bin ``edges``, and ``retrain``: score
    the reference in each bin (false, the default) or train one model per bin (true).
``mzr``
    ``mass_column`` (true log M*) and the bin ``edges`` (dex).
"""

import copy
from pathlib import Path

from ..demo import DEMO_MOCK_PARAMS
from ..exceptions import ParameterError

__all__ = ["STUDY_NAMES", "FULL_SETTINGS", "QUICK_SETTINGS", "QUICK_NETWORK",
           "load_settings"]

#: the studies, in the order they run
STUDY_NAMES = ("architectures", "size", "resolution", "bands", "mzr")

_ARCHITECTURES = ["resnet34", "resnet50", "resnet101", "mobilenet_v2", "efficientnet_b0",
                  "densenet121"]
# the demo's mock sky: most galaxies labelled and clean
_MOCK_PARAMS = DEMO_MOCK_PARAMS

#: The paper-sized study (for a GPU): the paper's network and training for every model, a
#: uniform-in-Z sample of 25,000 mock galaxies split 5:3:2.
FULL_SETTINGS = {
    "studies": list(STUDY_NAMES),
    "sample": {
        "run_dir": None,
        "pipeline": {
            "source": {"name": "mock", "params": dict(_MOCK_PARAMS, n_galaxies=46000, seed=0,
                                                      n_jobs=-1)},
            "preprocess": {"config": "default", "n_jobs": -1},
            "application": {"max_galaxies": 0},  # the studies need no catalogue
            "keep_cutouts": False,  # the rendered sky (12.8 GB) goes once preprocessed
            "sample": {"n_galaxies": 25000, "max_fraction": 0.85, "column": "oh_p50",
                       "n_bins": 20, "fractions": [5, 3, 2], "seed": 123},
        },
    },
    "target": "oh_p50",
    "reference": {"estimator": "gpm_resnet",
                  "params": {"config": {"name": "paper"}, "mc_passes": 1, "seed": 0}},
    "architectures": {"names": list(_ARCHITECTURES),
                      "params": {"width": 1.0, "recipe": "paper", "seed": 0}},
    "resolution": {"sizes": [16, 32, 64, 128, 152]},
    "bands": {"sets": ["g", "r", "z", "gr", "gz", "rz", "grz"]},
    "size": {"column": "enclosing_radius", "edges": [0, 1, 2, 3, 4, 5, 6], "retrain": False},
    "mzr": {"mass_column": "lgm_tot_p50",
            "edges": [8.5 + 0.25 * i for i in range(13)]},
}

#: The network and training of ``--quick``: GPM-ResNet at a quarter of the paper's widths, one
#: bottleneck a stage, 64 px asinh-scaled input and 4 epochs (a smoke run on two CPU cores;
#: the numbers say that the machinery works, not what the architectures can do).
QUICK_NETWORK = {"name": "ablation_quick", "width": 0.25, "blocks": [1, 1, 1, 1],
                 "input_size": 64, "input_scaling": "asinh", "augment": True,
                 "drop_prob": 0.1, "drop_block_size": 3, "drop_stages": [3, 4], "epochs": 4,
                 "batch_size": 32, "lr": 0.002, "lr_step": 10, "lr_gamma": 0.3,
                 "standardize_target": True}

#: The CI-sized run: a few hundred mock galaxies, lite widths, few epochs.
QUICK_SETTINGS = copy.deepcopy(FULL_SETTINGS)
QUICK_SETTINGS["sample"]["pipeline"] = {
    "source": {"name": "mock", "params": dict(_MOCK_PARAMS, n_galaxies=800, seed=0, n_jobs=1)},
    "preprocess": {"config": "default", "n_jobs": 1},
    "application": {"max_galaxies": 0},
    "keep_cutouts": False,
    "sample": {"n_galaxies": 25000, "max_fraction": 0.85, "column": "oh_p50", "n_bins": 10,
               "fractions": [5, 3, 2], "seed": 123},
}
QUICK_SETTINGS["reference"]["params"]["config"] = dict(QUICK_NETWORK)
QUICK_SETTINGS["architectures"]["params"] = {"width": 0.25, "recipe": dict(QUICK_NETWORK),
                                             "seed": 0}


def _merge(base, user, where=""):
    """Deep-merge ``user`` over ``base``; unknown keys are an error naming them."""
    merged = copy.deepcopy(base)
    for key, value in user.items():
        if key not in base:
            msg = f"unknown ablation setting {where + key!r}; valid here: {sorted(base)}"
            raise ParameterError(msg)
        opaque = key in ("params", "pipeline")  # handed on whole to their consumers
        if isinstance(base[key], dict) and not opaque:
            if not isinstance(value, dict):
                msg = f"ablation setting {where + key!r} must be a mapping, got {value!r}"
                raise ParameterError(msg)
            merged[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _positive_ints(values, name):
    if (not isinstance(values, (list, tuple)) or not values
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)):
        raise ParameterError(f"{name} must be a list of positive integers, got {values!r}")


def _edges(values, name):
    if (not isinstance(values, (list, tuple)) or len(values) < 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values)
            or any(b <= a for a, b in zip(values, values[1:]))):
        msg = f"{name} must be at least two increasing numbers, got {values!r}"
        raise ParameterError(msg)


def _check_estimators(reference, names, params):
    """The reference and every architecture are registered estimators that take their
    parameters (a typo fails now, not after the sample has been made)."""
    from ..estimation import resolve_estimator
    from ..exceptions import GPMAstroError

    models = [("reference", reference.get("estimator", "gpm_resnet"), reference["params"])]
    models += [(f"architectures.names[{i}]", name, params) for i, name in enumerate(names)]
    for where, name, model_params in models:
        try:
            resolve_estimator(name, **model_params)
        except (GPMAstroError, TypeError) as exc:
            raise ParameterError(f"ablation setting {where}: {exc}") from exc


def validate_settings(settings):
    """Raise `ParameterError` naming the first bad setting."""
    studies = settings["studies"]
    unknown = [s for s in studies if s not in STUDY_NAMES] if isinstance(studies, list) \
        else [studies]
    if unknown or not studies:
        msg = f"studies must be a non-empty list from {list(STUDY_NAMES)}, got {studies!r}"
        raise ParameterError(msg)
    reference = settings["reference"]
    if not isinstance(reference.get("params"), dict) or \
            not isinstance(reference["params"].get("config"), dict):
        msg = ("reference.params.config must be a mapping of GPM-ResNet configuration fields "
               f"(the studies change input_size and bands in it), got "
               f"{reference.get('params', {}).get('config')!r}")
        raise ParameterError(msg)
    names = settings["architectures"]["names"]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        msg = f"architectures.names must be a list of estimator names, got {names!r}"
        raise ParameterError(msg)
    if not isinstance(settings["architectures"]["params"], dict):
        msg = f"architectures.params must be a mapping, got {settings['architectures']['params']!r}"
        raise ParameterError(msg)
    _check_estimators(reference, names, settings["architectures"]["params"])
    _positive_ints(settings["resolution"]["sizes"], "resolution.sizes")
    sets = settings["bands"]["sets"]
    if not isinstance(sets, list) or not sets or not all(
            isinstance(s, str) and 1 <= len(s) <= 3 and len(set(s)) == len(s)
            and set(s) <= set("grz") for s in sets):
        msg = (f"bands.sets must be a list of 1-3 distinct letters of the cutouts' bands g, r, "
               f"z each, got {sets!r}")
        raise ParameterError(msg)
    _edges(settings["size"]["edges"], "size.edges")
    if not isinstance(settings["size"]["retrain"], bool):
        raise ParameterError(f"size.retrain must be true or false, got "
                             f"{settings['size']['retrain']!r}")
    _edges(settings["mzr"]["edges"], "mzr.edges")
    sample = settings["sample"]
    if sample["run_dir"] is None and not isinstance(sample["pipeline"], (dict, str)):
        msg = ("sample needs run_dir (an existing pipeline output folder) or pipeline (a "
               f"pipeline run configuration: a mapping or a file), got {sample!r}")
        raise ParameterError(msg)


def load_settings(settings=None, *, quick=False):
    """Complete ablation settings from a mapping or a file.

    Parameters
    ----------
    settings : dict, str or path-like, optional
        Overrides: a mapping, or a TOML/YAML/JSON file holding one.
    quick : bool, optional
        Start from `QUICK_SETTINGS` instead of `FULL_SETTINGS`.

    Returns
    -------
    dict
        Every setting.

    Raises
    ------
    ParameterError
        Unreadable file, unknown key or bad value.

    Examples
    --------
    >>> from gpm_astro.ablation import load_settings
    >>> s = load_settings({"studies": ["resolution"], "resolution": {"sizes": [32, 64]}},
    ...                   quick=True)
    >>> s["studies"], s["resolution"]["sizes"], s["architectures"]["params"]["width"]
    (['resolution'], [32, 64], 0.25)
    """
    base = QUICK_SETTINGS if quick else FULL_SETTINGS
    if settings is None:
        user = {}
    elif isinstance(settings, dict):
        user = settings
    else:
        from ..pipeline.config import _read_config_file

        user = _read_config_file(Path(settings))
    merged = _merge(base, user)
    validate_settings(merged)
    return merged
