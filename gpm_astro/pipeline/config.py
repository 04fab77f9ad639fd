"""The pipeline configuration: defaults, reading TOML, YAML or JSON, validation, TOML output."""

import copy
import json
import os
from pathlib import Path

from ..exceptions import ParameterError

#: Every section and key a configuration may hold, with the default values.
DEFAULT_CONFIG = {
    "output_dir": None,
    # keep the HDF5 cutout stores (sky/cutouts.h5, raw float32, ~280 kB a galaxy, and
    # preprocess/*_cutouts.h5); false removes each once no later stage of the run reads it, and
    # a later run that needs one makes it again from the configuration
    "keep_cutouts": True,
    "source": {
        # a registered data source that can feed a run (gpm_astro.base.PipelineSource), e.g.
        # "mock" (the embedded mock sky) or "files" (your own tables)
        "name": "mock",
        # keyword arguments of that source (e.g. the mock sky's); n_jobs: worker processes
        # drawing the cutouts
        "params": {"n_galaxies": 4000, "seed": 0},
        # passed to the source when set, e.g. for name = "files": a label table, and an
        # image catalogue with a `cutout` column
        "labels": None,
        "images": None,
        # optional: a truth table (one row per image, with brickid, objid) for the noise floor
        "truth": None,
    },
    # keyword arguments of select_starforming (the paper's cuts by default)
    "select": {},
    "crossmatch": {"radius_arcsec": 1.0, "one_to_one": True},
    # keyword arguments of preprocess_cutouts
    "preprocess": {"config": "default", "n_jobs": 1},
    # draw min(n_galaxies, max_fraction x the usable galaxies), uniform in `column`
    "sample": {"n_galaxies": 25000, "max_fraction": 1.0, "column": "oh_p50", "n_bins": 20,
               "fractions": [5, 3, 2], "seed": 123},
    # label -> {estimator: registered name, params: {...}, target: column}
    "estimators": {
        "gpm_resnet": {"estimator": "gpm_resnet", "params": {}, "target": "oh_p50"},
        "colour_polynomial_2": {"estimator": "colour_polynomial", "params": {"order": 2},
                                "target": "oh_p50"},
        "colour_polynomial_3": {"estimator": "colour_polynomial", "params": {"order": 3},
                                "target": "oh_p50"},
    },
    "application": {
        # which image-catalogue galaxies receive a catalogue entry
        "source_type": "EXP",
        # skip galaxies matched to a selected label (the pool of training and test galaxies)
        "unlabelled_only": True,
        # at most this many (the first ones in catalogue order); null for all
        "max_galaxies": None,
        # label of the estimator (a key of `estimators`) that makes the catalogue
        "estimator": "gpm_resnet",
    },
    "evaluate": {"target": "oh_p50", "figures": True},
    "report": {"title": "gpm_astro: gas-phase metallicity from Legacy Survey images"},
}

#: the Legacy Survey Tractor morphological types (``application.source_type``)
TRACTOR_TYPES = ("PSF", "REX", "EXP", "DEV", "SER", "DUP")
#: the file keys of the ``source`` section
_FILE_KEYS = ("labels", "images", "truth")

STAGE_NAMES = ("sky", "select", "crossmatch", "preprocess", "sample", "estimate",
               "evaluate", "catalogue", "report")


def _merge(defaults, user, where):
    """Deep-merge ``user`` over ``defaults``; an unknown key is an error naming it."""
    merged = copy.deepcopy(defaults)
    for key, value in user.items():
        if key not in defaults:
            msg = (f"unknown configuration key {where + key!r}; "
                   f"valid keys here: {sorted(defaults)}")
            raise ParameterError(msg)
        default = defaults[key]
        section = isinstance(default, dict) and key not in ("estimators", "params")
        if section and not isinstance(value, dict):
            msg = f"configuration section {where + key!r} must be a mapping, got {value!r}"
            raise ParameterError(msg)
        if key == "params" and not isinstance(value, dict):
            msg = f"{where + key} must be a mapping, got {value!r}"
            raise ParameterError(msg)
        if not section:
            _check_type(where + key, default, value)
        if key in ("select", "preprocess"):  # keywords of a function: any key, defaults kept
            merged[key] = {**default, **copy.deepcopy(value)}
        elif section:
            merged[key] = _merge(default, value, f"{where}{key}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


#: keys that may be null although their default is not
_NULLABLE = ("application.estimator",)


def _check_type(name, default, value):
    """A value of the default's type (a number for a number), so that a typo fails at once
    instead of in a later stage (or, as with ``figures = "no"``, not at all)."""
    if default is None or isinstance(default, dict) or (value is None and name in _NULLABLE):
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        kind = "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    elif isinstance(default, (list, tuple)):
        ok, kind = isinstance(value, (list, tuple)), "a list"
    else:
        return
    if not ok:
        msg = f"{name} must be {kind}, got {value!r}"
        raise ParameterError(msg)


def load_config(config=None, **overrides):
    """Read a pipeline configuration and fill in the defaults.

    Parameters
    ----------
    config : dict, str or path-like, optional
        A mapping, or a TOML (``.toml``) or YAML (``.yaml``, ``.yml``) file. Missing sections
        and keys take the values of `DEFAULT_CONFIG`.
    **overrides
        Top-level keys set after reading (e.g. ``output_dir``).

    Returns
    -------
    dict
        The complete configuration.

    Raises
    ------
    ParameterError
        If the file cannot be read or parsed, or holds an unknown key or a bad value.

    Examples
    --------
    >>> from gpm_astro.pipeline import load_config
    >>> cfg = load_config({"crossmatch": {"radius_arcsec": 2.0}}, output_dir="out")
    >>> cfg["crossmatch"]["radius_arcsec"], cfg["sample"]["fractions"]
    (2.0, [5, 3, 2])
    """
    if config is None:
        user = {}
    elif isinstance(config, dict):
        user = copy.deepcopy(config)
    else:
        user = _read_config_file(Path(config))
    user.update({k: v for k, v in overrides.items() if v is not None})
    if "estimators" in user and not isinstance(user["estimators"], dict):
        msg = f"'estimators' must map a label to an estimator entry, got {user['estimators']!r}"
        raise ParameterError(msg)
    merged = _merge(DEFAULT_CONFIG, user, "")
    if "estimators" in user:  # a user's list of estimators replaces the default list
        merged["estimators"] = copy.deepcopy(user["estimators"])
    source = user.get("source") or {}
    if source.get("name", merged["source"]["name"]) != DEFAULT_CONFIG["source"]["name"] \
            and "params" not in source:  # the default params are the default source's
        merged["source"]["params"] = {}
    _validate(merged)
    return merged


def _read_config_file(path):
    if not path.is_file():
        msg = f"configuration file not found: {str(path)!r}"
        raise ParameterError(msg)
    suffix = path.suffix.lower()
    text = path.read_text()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            msg = (f"configuration file must end in .toml, .yaml, .yml or .json, "
                   f"got {str(path)!r}")
            raise ParameterError(msg)
    except ParameterError:
        raise
    except Exception as exc:  # a syntax error must name the file
        msg = f"cannot parse configuration file {str(path)!r}: {exc}"
        raise ParameterError(msg) from exc
    if not isinstance(data, dict):
        msg = f"configuration file {str(path)!r} must hold a mapping, got {type(data).__name__}"
        raise ParameterError(msg)
    return data


def _validate(cfg):
    from .sources import make_pipeline_source

    for key, value in (("output_dir", cfg["output_dir"]),
                       *((f"source.{k}", cfg["source"][k]) for k in _FILE_KEYS)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            msg = f"{key} must be a path (a string), got {value!r}"
            raise ParameterError(msg)
    make_pipeline_source(cfg["source"])  # the source exists, feeds a run, takes its params
    if not isinstance(cfg["keep_cutouts"], bool):
        msg = f"keep_cutouts must be true or false, got {cfg['keep_cutouts']!r}"
        raise ParameterError(msg)
    radius = cfg["crossmatch"]["radius_arcsec"]
    if not isinstance(radius, (int, float)) or isinstance(radius, bool) or not radius > 0:
        msg = f"crossmatch.radius_arcsec must be a positive number, got {radius!r}"
        raise ParameterError(msg)
    sample = cfg["sample"]
    n = sample["n_galaxies"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 3:
        msg = f"sample.n_galaxies must be an integer >= 3, got {n!r}"
        raise ParameterError(msg)
    if sample["n_bins"] < 1:
        msg = f"sample.n_bins must be a positive integer, got {sample['n_bins']!r}"
        raise ParameterError(msg)
    frac = sample["max_fraction"]
    if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 < frac <= 1:
        msg = f"sample.max_fraction must be in (0, 1], got {frac!r}"
        raise ParameterError(msg)
    fractions = sample["fractions"]
    if (not isinstance(fractions, (list, tuple)) or len(fractions) != 3
            or not all(isinstance(f, (int, float)) and f > 0 for f in fractions)):
        msg = f"sample.fractions must be three positive numbers (train, validation, test), " \
              f"got {fractions!r}"
        raise ParameterError(msg)
    estimators = cfg["estimators"]
    if not estimators:
        msg = "the configuration lists no estimators; give at least one under 'estimators'"
        raise ParameterError(msg)
    for label, entry in estimators.items():
        if not isinstance(entry, dict) or "estimator" not in entry:
            msg = (f"estimators.{label} must be a mapping with at least 'estimator' "
                   f"(a registered name), got {entry!r}")
            raise ParameterError(msg)
        unknown = set(entry) - {"estimator", "params", "target", "mass_model"}
        if unknown:
            msg = (f"estimators.{label} has unknown key(s) {sorted(unknown)}; valid: "
                   f"estimator, params, target, mass_model")
            raise ParameterError(msg)
        if not isinstance(entry.get("params", {}), dict):
            msg = f"estimators.{label}.params must be a mapping, got {entry['params']!r}"
            raise ParameterError(msg)
        if entry.get("target") is not None and not isinstance(entry["target"], str):
            msg = f"estimators.{label}.target must be a column name, got {entry['target']!r}"
            raise ParameterError(msg)
        if not str(label).replace("_", "").isalnum():
            msg = f"estimator labels may hold letters, digits and '_' only, got {label!r}"
            raise ParameterError(msg)
    app = cfg["application"]
    if app["source_type"] not in TRACTOR_TYPES:
        msg = (f"application.source_type must be a Legacy Survey Tractor type, one of "
               f"{list(TRACTOR_TYPES)} (upper case), got {app['source_type']!r}")
        raise ParameterError(msg)
    if app["estimator"] is not None and app["estimator"] not in estimators:
        msg = (f"application.estimator must be one of the estimator labels "
               f"{sorted(estimators)} (or null for no catalogue), got {app['estimator']!r}")
        raise ParameterError(msg)
    maxg = app["max_galaxies"]
    if maxg is not None and (not isinstance(maxg, int) or isinstance(maxg, bool) or maxg < 0):
        msg = f"application.max_galaxies must be a non-negative integer or null, got {maxg!r}"
        raise ParameterError(msg)


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    msg = f"cannot write {value!r} to TOML"
    raise ParameterError(msg)


#: What the top-level keys mean, written above them by `config_to_toml`.
_TOP_LEVEL_COMMENTS = {
    "output_dir": "output folder, relative to where gpm-astro runs (e.g. output_dir = "
                  "\"my_run\"); --out DIR overrides it",
    "keep_cutouts": "keep the HDF5 cutout stores (the bulk of the disk); false removes each "
                    "once no later stage reads it",
}


def config_to_toml(config):
    """Write a configuration as TOML text (unset values become comments).

    Parameters
    ----------
    config : dict
        A configuration (e.g. `DEFAULT_CONFIG`).

    Returns
    -------
    str
        TOML that `load_config` reads back to the same configuration.

    Examples
    --------
    >>> from gpm_astro.pipeline import DEFAULT_CONFIG, config_to_toml, load_config
    >>> import tomllib
    >>> load_config(tomllib.loads(config_to_toml(DEFAULT_CONFIG))) == load_config()
    True
    """
    lines = ["# gpm-astro run configuration; every key is optional (defaults shown).",
             "# Sections: source, select, crossmatch, preprocess, sample, estimators,",
             "# application, evaluate, report. Run: gpm-astro run THIS_FILE (--out DIR",
             "# overrides output_dir)", ""]

    def emit(table, prefix):
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) or not v
                   or k == "params"}
        nested = {k: v for k, v in table.items() if k not in scalars}
        for key, value in scalars.items():
            if not prefix and key in _TOP_LEVEL_COMMENTS:
                lines.append(f"# {_TOP_LEVEL_COMMENTS[key]}")
            if value is None:
                lines.append(f"# {key} = (unset)")
            elif isinstance(value, dict) and not value:
                lines.append(f"{key} = {{}}")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        for key, value in nested.items():
            lines.append("")
            lines.append(f"[{prefix}{key}]")
            emit(value, f"{prefix}{key}.")

    emit(config, "")
    return "\n".join(lines) + "\n"


def check_before_run(cfg):
    """Check what a run will need before its first stage starts, so that a typo fails at once.

    Resolves every estimator (and mass model) with its parameters, the preprocessing
    configuration and the keyword arguments of the select and preprocess stages, and checks
    that the input files of ``source.name = 'files'`` exist.

    Raises
    ------
    ParameterError
        Naming the configuration key, e.g. ``estimators.gpm_resnt.estimator``.
    """
    import inspect

    from ..catalog import select_starforming
    from ..estimation import resolve_estimator
    from ..exceptions import GPMAstroError
    from ..preprocessing import preprocess_cutouts, resolve_steps

    def fail(where, exc):
        raise ParameterError(f"configuration {where}: {exc}") from exc

    for label, entry in cfg["estimators"].items():
        models = [(f"estimators.{label}", entry)]
        if entry.get("mass_model"):
            models.append((f"estimators.{label}.mass_model", entry["mass_model"]))
        for where, model in models:
            if not isinstance(model, dict):
                fail(where, TypeError(f"must be a mapping, got {model!r}"))
            params = model.get("params") or {}
            if not isinstance(params, dict):
                fail(f"{where}.params", TypeError(f"must be a mapping, got {params!r}"))
            try:
                resolve_estimator(model.get("estimator", "gpm_resnet_mass"), **params)
            except (GPMAstroError, TypeError) as exc:
                fail(where, exc)
    for section, function in (("select", select_starforming),
                              ("preprocess", preprocess_cutouts)):
        accepted = set(inspect.signature(function).parameters) - {"table"}
        unknown = sorted(set(cfg[section]) - accepted)
        if unknown:
            fail(section, ParameterError(f"unknown key(s) {unknown}; valid: {sorted(accepted)}"))
    try:
        resolve_steps(cfg["preprocess"].get("steps"),
                      config=cfg["preprocess"].get("config", "default"))
    except GPMAstroError as exc:
        fail("preprocess", exc)
    _check_stage_values(cfg, fail)
    source = cfg["source"]
    if source["name"] == "files":
        for key in ("labels", "images", "truth"):
            if source[key] and not Path(source[key]).is_file():
                where = "" if Path(source[key]).is_absolute() else \
                    f" (a relative path is read from the current folder, {str(Path.cwd())!r})"
                fail(f"source.{key}",
                     FileNotFoundError(f"{source[key]!r} is not a file{where}"))



def _check_stage_values(cfg, fail):
    """The values of the select and preprocess keywords (``n_jobs = 0``, ``snr_min = "5"``),
    checked by the functions themselves on an empty table, so that a wrong one fails now, not
    after the sky stage has run for minutes."""
    import warnings

    import numpy as np
    from astropy.table import Table

    from ..catalog import select_starforming
    from ..exceptions import GPMAstroError, SchemaError
    from ..preprocessing import preprocess_cutouts

    empty_cutouts = Table({"cutout": np.zeros((0, 3, 152, 152), np.float32)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty result is the point here
        try:  # the keyword values are checked before the columns: a missing one is fine
            select_starforming(Table(), **cfg["select"])
        except SchemaError:
            pass
        except (GPMAstroError, TypeError) as exc:
            fail("select", exc)
        try:
            preprocess_cutouts(empty_cutouts, **{"progress": False, **cfg["preprocess"]})
        except (GPMAstroError, TypeError) as exc:
            fail("preprocess", exc)
