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

import copy
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from .exceptions import ParameterError, SchemaError
from .io import atomic_write_bytes, new_file_mode, writable_directory
from .tables import record_step

__all__ = ["DEFAULT_CONFIG", "STAGE_NAMES", "CATALOGUE_COLUMNS", "load_config", "config_to_toml",
           "Pipeline", "run_pipeline", "make_catalogue", "write_cutouts", "read_cutouts"]

#: Every section and key a configuration may hold, with the default values.
DEFAULT_CONFIG = {
    "output_dir": None,
    "source": {
        # "mock": build the embedded mock sky; "files": read your own tables
        "name": "mock",
        # keyword arguments of the mock sky (gpm_astro_plugins.mock.MockSky)
        "params": {"n_galaxies": 4000, "seed": 0},
        # for name = "files": a label table, and an image catalogue with a `cutout` column
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
        if key in ("select", "preprocess"):  # keywords of a function: any key, defaults kept
            merged[key] = {**default, **copy.deepcopy(value)}
        elif section:
            merged[key] = _merge(default, value, f"{where}{key}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


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
    source = cfg["source"]
    if source["name"] not in ("mock", "files"):
        msg = f"source.name must be 'mock' or 'files', got {source['name']!r}"
        raise ParameterError(msg)
    if source["name"] == "files" and not (source["labels"] and source["images"]):
        msg = (f"source.name = 'files' needs source.labels and source.images, got "
               f"labels={source['labels']!r}, images={source['images']!r}")
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
        if not str(label).replace("_", "").isalnum():
            msg = f"estimator labels may hold letters, digits and '_' only, got {label!r}"
            raise ParameterError(msg)
    app = cfg["application"]
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
             "# application, evaluate, report. Run: gpm-astro run THIS_FILE --out DIR", ""]

    def emit(table, prefix):
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) or not v
                   or k == "params"}
        nested = {k: v for k, v in table.items() if k not in scalars}
        for key, value in scalars.items():
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


# --------------------------------------------------------------------------------------------
# files: atomic writes, cutout stores


def write_cutouts(path, cutouts, *, compress=False):
    """Write an (n, 3, H, W) float32 array to an HDF5 file (dataset ``images``), atomically.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from gpm_astro.pipeline import read_cutouts, write_cutouts
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.h5"
    >>> write_cutouts(path, np.ones((4, 3, 8, 8)))
    >>> read_cutouts(path, [2, 0]).shape
    (2, 3, 8, 8)
    """
    cutouts = np.asarray(cutouts, dtype=np.float32)
    with CutoutWriter(path, len(cutouts), cutouts.shape[1:], compress=compress) as out:
        out.write(0, cutouts)


def read_cutouts(path, rows=None):
    """Read cutouts from a file written by `write_cutouts`; ``rows`` selects (any order).

    The file is opened without HDF5 file locking, so a store that a forked worker process
    still holds open can be read.
    """
    import h5py

    with h5py.File(path, "r", locking=False) as handle:
        images = handle["images"]
        if rows is None:
            return images[...]
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros((0,) + images.shape[1:], dtype=np.float32)
        unique, inverse = np.unique(rows, return_inverse=True)
        if unique[0] < 0 or unique[-1] >= len(images):
            msg = f"cutout rows must lie in [0, {len(images)}), got {unique[0]}..{unique[-1]}"
            raise ParameterError(msg)
        data = np.empty((len(unique),) + images.shape[1:], dtype=np.float32)
        # read runs of consecutive rows as slices (h5py's point selection is slow)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        for run_start, run_stop in zip(np.r_[0, breaks], np.r_[breaks, len(unique)]):
            first = unique[run_start]
            data[run_start:run_stop] = images[first:first + run_stop - run_start]
        return data[inverse.ravel()]


class CutoutWriter:
    """Fill an HDF5 cutout store (dataset ``images``) piece by piece; it appears atomically.

    Use as a context manager: the file takes its final name only when the block ends without
    an error, so an interrupted run never leaves a half-written store under the final name.

    Parameters
    ----------
    path : path-like
        The final file.
    n_rows : int
        Number of cutouts.
    shape : tuple of int
        Shape of one cutout, e.g. (3, 152, 152).
    compress : bool, optional
        LZF compression (worth it for masked cutouts, which are mostly zeros).
    """

    def __init__(self, path, n_rows, shape, *, compress=False):
        self.path = Path(path)
        self.n_rows = int(n_rows)
        self.shape = tuple(shape)
        self.compress = compress

    def __enter__(self):
        import h5py

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part",
                                         dir=self.path.parent)
        os.close(fd)
        self._file = h5py.File(self._tmp, "w")
        chunks = (1,) + self.shape if self.n_rows else None
        self.images = self._file.create_dataset(
            "images", shape=(self.n_rows,) + self.shape, dtype=np.float32, chunks=chunks,
            compression="lzf" if self.compress and self.n_rows else None)
        return self

    def write(self, start, cutouts):
        """Store ``cutouts`` at rows ``start, start + 1, ...``."""
        cutouts = np.asarray(cutouts, dtype=np.float32)
        self.images[start:start + len(cutouts)] = cutouts

    def __exit__(self, kind, value, traceback):
        self._file.close()
        if kind is None:
            os.chmod(self._tmp, new_file_mode())
            os.replace(self._tmp, self.path)
        elif os.path.exists(self._tmp):
            os.unlink(self._tmp)
        return False


def _write_table(table, path):
    from .io import write_table

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, path, overwrite=True)


def _read_table(path):
    from .io import read_table

    return read_table(path)


# --------------------------------------------------------------------------------------------
# the pipeline


def _n_jobs(value):
    """Worker processes: a positive integer, or -1 / "all" for every core."""
    if value in (-1, "all"):
        return os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"n_jobs must be a positive integer, -1 or 'all', got {value!r}"
        raise ParameterError(msg)
    return value


# options that change how fast a stage runs, not what it writes
_RUN_OPTIONS = ("n_jobs", "progress", "batch_size")


def _without(mapping, keys):
    return {k: v for k, v in mapping.items() if k not in keys}


def _fingerprint(*parts):
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Pipeline:
    """The stages of the paper, run in order into one output folder.

    Parameters
    ----------
    config : dict, str or path-like
        A configuration (see `load_config`); ``output_dir`` must be set here or below.
    output_dir : str or path-like, optional
        Overrides ``config["output_dir"]``.
    force : bool, optional
        Rerun every stage even when its outputs exist.
    progress : bool, optional
        Print stage messages and progress bars to standard error.

    Examples
    --------
    >>> from gpm_astro.pipeline import Pipeline
    >>> pipe = Pipeline({"sample": {"n_galaxies": 300}}, output_dir="out")  # doctest: +SKIP
    >>> results = pipe.run()  # doctest: +SKIP
    """

    def __init__(self, config=None, *, output_dir=None, force=False, progress=True):
        self.config = load_config(config, output_dir=str(output_dir) if output_dir else None)
        if not self.config["output_dir"]:
            msg = "no output folder: give output_dir (command line: --out DIR)"
            raise ParameterError(msg)
        self.out = Path(self.config["output_dir"])
        self.force = force
        self.progress = progress
        self.timings = {}
        self._state_path = self.out / "pipeline_state.json"

    # -- bookkeeping -------------------------------------------------------------------------

    def log(self, message):
        if self.progress:
            stamp = time.strftime("%H:%M:%S")
            print(f"[gpm-astro {stamp}] {message}", file=sys.stderr, flush=True)

    def path(self, name):
        return self.out / name

    def _load_state(self):
        if self._state_path.is_file():
            try:
                return json.loads(self._state_path.read_text())
            except json.JSONDecodeError:
                return {}
        return {}

    def _save_state(self, state):
        atomic_write_bytes(self._state_path, json.dumps(state, indent=1).encode())

    def _clear_checkpoints(self, name):
        import shutil

        if name.startswith("estimate:"):
            label = name.split(":", 1)[1]
            for folder in (f"estimate/checkpoints/{label}", f"estimate/checkpoints/{label}_mass"):
                if self.path(folder).is_dir():
                    shutil.rmtree(self.path(folder))

    def stages(self):
        """Return the ordered list of ``(stage_name, outputs, config_parts)``."""
        cfg = self.config
        labels = list(cfg["estimators"])
        stages = [
            ("sky", ["sky/labels.fits", "sky/images.fits", "sky/cutouts.h5"],
             [dict(cfg["source"], params=_without(cfg["source"]["params"], _RUN_OPTIONS))]),
            ("select", ["select/labels_starforming.fits"], [cfg["select"]]),
            ("crossmatch", ["crossmatch/matched.fits"], [cfg["crossmatch"]]),
            ("preprocess", ["preprocess/labelled.fits", "preprocess/labelled_cutouts.h5",
                            "preprocess/application.fits",
                            "preprocess/application_cutouts.h5"],
             [_without(cfg["preprocess"], _RUN_OPTIONS), cfg["application"]["source_type"],
              cfg["application"]["unlabelled_only"], cfg["application"]["max_galaxies"]]),
            ("sample", ["sample/sample.fits"], [cfg["sample"]]),
        ]
        for label in labels:
            outputs = [f"estimate/{label}_test.ecsv"]
            if label == cfg["application"]["estimator"]:
                outputs.append(f"estimate/{label}_application.ecsv")
            stages.append((f"estimate:{label}", outputs, [cfg["estimators"][label]]))
        stages += [
            ("evaluate", ["evaluate/metrics.ecsv", "evaluate/figures.json"],
             [cfg["evaluate"]]),
            ("catalogue", ["catalogue/catalogue.fits", "catalogue/catalogue.ecsv"],
             [cfg["application"]]),
            ("report", ["report.html"], [cfg["report"]]),
        ]
        if cfg["application"]["estimator"] is None:
            stages = [s for s in stages if s[0] != "catalogue"]
        return stages

    def run(self, *, until=None):
        """Run every stage in order (skipping those already done) and return the results.

        Parameters
        ----------
        until : str, optional
            Stop after this stage (one of `STAGE_NAMES`).

        Returns
        -------
        dict
            ``output_dir``, ``timings`` (seconds per stage, 0 for a skipped one), ``skipped``
            (stage names), ``metrics`` (the metrics Table, when evaluated) and ``report`` (path).

        Raises
        ------
        GPMAstroError
            From the stage that failed; the outputs of the stages before it stay on disk.
        """
        if until is not None and until not in STAGE_NAMES:
            msg = f"until must be one of {list(STAGE_NAMES)}, got {until!r}"
            raise ParameterError(msg)
        writable_directory(self.out, "output folder")
        atomic_write_bytes(self.path("config.json"),
                           json.dumps(self.config, indent=1, default=str).encode())
        state = {} if self.force else self._load_state()
        stages = self.stages()
        last = len(stages)
        if until is not None:  # the last stage of that name (estimate: the last estimator)
            last = max(i for i, stage in enumerate(stages, start=1)
                       if stage[0].split(":")[0] == until)
        upstream = ""
        skipped = []
        start_all = time.perf_counter()
        for index, (name, outputs, parts) in enumerate(stages, start=1):
            # estimate stages depend on the sample only, not on each other
            base = upstream if not name.startswith("estimate:") else state.get("_sample_key", "")
            key = _fingerprint(name, parts, base)
            done = (state.get(name) == key
                    and all(self.path(o).exists() for o in outputs))
            if done:
                self.log(f"[{index}/{len(stages)}] {name}: outputs exist, skipped "
                         f"(use --force to rerun)")
                self.timings[name] = 0.0
                skipped.append(name)
            else:
                self.log(f"[{index}/{len(stages)}] {name} ...")
                started = state.setdefault("_started", {})
                if started.get(name) != key:  # stale checkpoints of another configuration
                    self._clear_checkpoints(name)
                started[name] = key
                self._save_state(state)
                tic = time.perf_counter()
                getattr(self, "_stage_" + name.split(":")[0])(
                    *name.split(":")[1:])
                self.timings[name] = time.perf_counter() - tic
                state[name] = key
                state.setdefault("_timings", {})[name] = round(self.timings[name], 2)
                self._save_state(state)
                self.log(f"[{index}/{len(stages)}] {name} done in "
                         f"{self.timings[name]:.1f} s")
            if name == "sample":
                state["_sample_key"] = key
            if name.startswith("estimate:"):
                upstream = _fingerprint(upstream, key)
            else:
                upstream = key
            if index == last:
                break
        total = time.perf_counter() - start_all
        self.log(f"finished in {total:.1f} s; outputs in {self.out}")
        result = {"output_dir": self.out, "timings": dict(self.timings), "skipped": skipped,
                  "total_seconds": total}
        if self.path("evaluate/metrics.ecsv").exists():
            result["metrics"] = Table.read(self.path("evaluate/metrics.ecsv"))
        if self.path("report.html").exists():
            result["report"] = self.path("report.html")
        return result

    # -- the stages --------------------------------------------------------------------------

    def _stage_sky(self):
        source = self.config["source"]
        if source["name"] == "mock":
            self._build_mock_sky(source["params"])
            return
        labels = _read_table(source["labels"])
        images = _read_table(source["images"])
        truth = _read_table(source["truth"]) if source["truth"] else None
        if "cutout" not in images.colnames:
            msg = (f"the image catalogue needs a 'cutout' column (n, 3, 152, 152) of g, r, z "
                   f"nanomaggies; columns present: {images.colnames}")
            raise SchemaError(msg)
        cutouts = np.asarray(images["cutout"], dtype=np.float32)
        catalogue = images.copy(copy_data=False)
        catalogue.remove_column("cutout")
        with CutoutWriter(self.path("sky/cutouts.h5"), len(cutouts), cutouts.shape[1:]) as out:
            out.write(0, cutouts)
        self._write_sky(labels, catalogue, truth, images.meta)

    def _write_sky(self, labels, catalogue, truth, meta):
        source = self.config["source"]
        catalogue["image_row"] = np.arange(len(catalogue))
        catalogue.meta.setdefault("bands", meta.get("bands", "grz"))
        catalogue.meta.setdefault("pixel_scale", meta.get("pixel_scale", 0.262))
        record_step(catalogue, "pipeline.sky", source=source["name"],
                    params=source["params"] if source["name"] == "mock" else source)
        self.log(f"  {len(labels):,} label rows, {len(catalogue):,} image-catalogue rows")
        _write_table(labels, self.path("sky/labels.fits"))
        if truth is not None:
            _write_table(truth, self.path("sky/truth.fits"))
        elif self.path("sky/truth.fits").exists():
            self.path("sky/truth.fits").unlink()
        _write_table(catalogue, self.path("sky/images.fits"))

    def _build_mock_sky(self, params, chunk_size=100):
        """Draw the mock catalogues, then render the cutouts chunk by chunk (bounded memory)."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from tqdm.auto import tqdm

        from .plugins import get_source

        params = dict(params)
        n_jobs = _n_jobs(params.pop("n_jobs", 1))
        sky = get_source("mock")(**params)
        self.log(f"  drawing the mock catalogues ({sky.n_galaxies:,} galaxies) ...")
        labels, catalogue, truth = sky.catalog()
        starts = list(range(0, len(catalogue), chunk_size))
        bar = tqdm(total=len(catalogue), desc="render mock cutouts", unit="cutout",
                   disable=not self.progress, file=sys.stderr)
        with CutoutWriter(self.path("sky/cutouts.h5"), len(catalogue), (3, 152, 152)) as out:
            if n_jobs == 1:
                for start in starts:
                    cut = slice(start, start + chunk_size)
                    out.write(start, sky.render(catalogue[cut], truth[cut]))
                    bar.update(len(catalogue[cut]))
            else:
                # forkserver: a forked child can deadlock on locks its parent's threads held
                context = multiprocessing.get_context("forkserver")
                with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
                    pending = []
                    for start in starts + [None] * (2 * n_jobs):
                        if start is not None:  # keep at most 2 chunks per worker in flight
                            cut = slice(start, start + chunk_size)
                            pending.append((start, pool.submit(sky.render, catalogue[cut],
                                                               truth[cut])))
                        if pending and (start is None or len(pending) > 2 * n_jobs):
                            done_start, future = pending.pop(0)
                            cutouts = future.result()
                            out.write(done_start, cutouts)
                            bar.update(len(cutouts))
        bar.close()
        self._write_sky(labels, catalogue, truth, catalogue.meta)

    def _stage_select(self):
        from .catalog import select_starforming

        labels = _read_table(self.path("sky/labels.fits"))
        selected = select_starforming(labels, **self.config["select"])
        self.log(f"  {len(selected):,} of {len(labels):,} labels are star-forming and pass "
                 f"every cut")
        _write_table(selected, self.path("select/labels_starforming.fits"))

    def _stage_crossmatch(self):
        import astropy.units as u

        from .catalog import crossmatch

        labels = _read_table(self.path("select/labels_starforming.fits"))
        images = _read_table(self.path("sky/images.fits"))
        cfg = self.config["crossmatch"]
        matched = crossmatch(labels, images, radius=cfg["radius_arcsec"] * u.arcsec,
                             one_to_one=cfg["one_to_one"])
        n_matched = int(np.sum(np.asarray(matched["matched"])))
        self.log(f"  {n_matched:,} of {len(labels):,} labels have an image within "
                 f"{cfg['radius_arcsec']} arcsec")
        _write_table(matched, self.path("crossmatch/matched.fits"))

    def _application_rows(self, images, matched):
        """Rows of the image catalogue that get a catalogue entry (and why the others not)."""
        app = self.config["application"]
        source_type = np.char.strip(np.asarray(images["source_type"]).astype(str))
        chosen = source_type == str(app["source_type"]).strip()
        if app["unlabelled_only"]:
            used = np.asarray(matched["image_row"])[np.asarray(matched["matched"], bool)]
            labelled = np.zeros(len(images), bool)
            labelled[np.asarray(used, dtype=int)] = True
            chosen &= ~labelled
        rows = np.flatnonzero(chosen)
        if app["max_galaxies"] is not None:
            rows = rows[:app["max_galaxies"]]
        return rows

    def _stage_preprocess(self):
        matched = _read_table(self.path("crossmatch/matched.fits"))
        images = _read_table(self.path("sky/images.fits"))
        is_matched = np.asarray(matched["matched"], dtype=bool)
        labelled = matched[is_matched]
        labelled["image_row"] = np.asarray(labelled["image_row"], dtype=np.int64)
        app_rows = self._application_rows(images, matched)
        application = images[app_rows]
        self.log(f"  preprocessing {len(labelled):,} labelled and {len(application):,} "
                 f"application ({self.config['application']['source_type']}) cutouts")
        for name, table in (("labelled", labelled), ("application", application)):
            self._preprocess_table(table, name)

    def _preprocess_table(self, table, name, chunk_size=512):
        """Preprocess in chunks; cleaned cutouts go to an HDF5 store, the rest to a table."""
        from astropy.table import vstack
        from tqdm.auto import tqdm

        from . import preprocess_cutouts

        source = self.path("sky/cutouts.h5")
        options = dict(self.config["preprocess"])
        options.setdefault("progress", False)  # the bar below counts every chunk
        pieces = []
        bar = tqdm(total=len(table), desc=f"preprocess {name}", unit="cutout",
                   disable=not self.progress, file=sys.stderr)
        with CutoutWriter(self.path(f"preprocess/{name}_cutouts.h5"), len(table),
                          (3, 152, 152), compress=True) as out:
            for start in range(0, len(table), chunk_size):
                chunk = table[start:start + chunk_size]
                chunk["cutout"] = read_cutouts(source, chunk["image_row"])
                chunk.meta["bands"] = "grz"
                chunk.meta["pixel_scale"] = 0.262
                done = preprocess_cutouts(chunk, **options)
                out.write(start, done["cutout"])
                done.remove_column("cutout")
                pieces.append(done)
                bar.update(len(chunk))
        bar.close()
        if pieces:
            result = vstack(pieces, metadata_conflicts="silent")
            result.meta = dict(pieces[0].meta)
        else:
            result = self._empty_preprocessed(table)
        result["cutout_row"] = np.arange(len(result))
        flags = np.asarray(result["preprocess_flag"]).astype(str)
        counts = dict(zip(*np.unique(flags, return_counts=True)))
        self.log(f"  {name}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
        _write_table(result, self.path(f"preprocess/{name}.fits"))

    def _empty_preprocessed(self, table):
        result = table.copy()
        result["preprocess_ok"] = np.zeros(0, bool)
        result["preprocess_flag"] = np.zeros(0, "U20")
        return result

    def _stage_sample(self):
        from .sampling import split_table, uniform_in_z_sample
        from .tables import missing_mask

        cfg = self.config["sample"]
        labelled = _read_table(self.path("preprocess/labelled.fits"))
        ok = np.asarray(labelled["preprocess_ok"], dtype=bool)
        pool = labelled[ok]
        n_usable = int(np.sum(~missing_mask(pool[cfg["column"]])))
        n = min(cfg["n_galaxies"], int(cfg["max_fraction"] * n_usable))
        if n < cfg["n_galaxies"]:
            self.log(f"  {n_usable:,} galaxies passed preprocessing with a usable "
                     f"{cfg['column']}; drawing {n:,} (max_fraction {cfg['max_fraction']}, "
                     f"n_galaxies {cfg['n_galaxies']:,})")
        if n < 3:
            msg = (f"only {n} labelled galaxies survived selection, crossmatch and "
                   f"preprocessing; at least 3 are needed for a train/validation/test split")
            raise ParameterError(msg)
        sample = uniform_in_z_sample(pool, n, column=cfg["column"], n_bins=cfg["n_bins"],
                                     seed=cfg["seed"])
        parts = split_table(sample, cfg["fractions"], seed=cfg["seed"])
        pieces = []
        from astropy.table import vstack

        for part_name, part in zip(("train", "validation", "test"), parts):
            part = part.copy()
            part["split"] = np.full(len(part), part_name, dtype="U10")
            pieces.append(part)
        result = vstack(pieces, metadata_conflicts="silent")
        result.meta = sample.meta
        record_step(result, "pipeline.sample", requested=cfg["n_galaxies"], drawn=n,
                    n_usable=n_usable, max_fraction=cfg["max_fraction"],
                    n_train=len(parts[0]), n_validation=len(parts[1]), n_test=len(parts[2]),
                    fractions=cfg["fractions"], seed=cfg["seed"])
        self.log(f"  {len(parts[0]):,} train, {len(parts[1]):,} validation, "
                 f"{len(parts[2]):,} test galaxies")
        _write_table(result, self.path("sample/sample.fits"))

    # -- estimators --------------------------------------------------------------------------

    def _part(self, sample, name, with_cutouts):
        """One split of the sample, with its cleaned cutouts when the estimator needs them."""
        part = sample[np.asarray(sample["split"]).astype(str) == name]
        if with_cutouts:
            part["cutout"] = read_cutouts(self.path("preprocess/labelled_cutouts.h5"),
                                          part["cutout_row"])
            part.meta["bands"] = "grz"
            part.meta["pixel_scale"] = 0.262
        return part

    def _fit(self, estimator, table, target, validation=None):
        """Fit on the rows with a usable target (the others are counted in the log)."""
        import inspect

        from .tables import missing_mask

        usable = ~missing_mask(table[target])
        if not usable.all():
            self.log(f"  {int((~usable).sum())} training rows lack {target!r}; fitting on "
                     f"{int(usable.sum())}")
        kwargs = {"target": target}
        params = inspect.signature(estimator.fit).parameters
        if validation is not None and "validation" in params:
            kwargs["validation"] = validation[~missing_mask(validation[target])]
        if "progress" in params:
            kwargs["progress"] = self.progress
        fitted = estimator.fit(table[usable], **kwargs)
        return fitted if fitted is not None else estimator

    def _defaults_for(self, estimator, label, params):
        """Progress bars and a resumable checkpoint folder, unless the config sets them."""
        names = set(estimator.get_params()) if hasattr(estimator, "get_params") else set()
        extra = {}
        if "progress" in names and "progress" not in params:
            extra["progress"] = self.progress
        if "checkpoint_dir" in names and "checkpoint_dir" not in params:
            extra["checkpoint_dir"] = str(self.path(f"estimate/checkpoints/{label}"))
            if "resume" in names and "resume" not in params:
                extra["resume"] = True
        if extra:
            estimator.set_params(**extra)
        return estimator

    def _stage_estimate(self, label):
        from .estimation import predict_metallicity, resolve_estimator

        entry = self.config["estimators"][label]
        target = entry.get("target") or self.config["evaluate"]["target"]
        params = entry.get("params") or {}
        estimator = self._defaults_for(resolve_estimator(entry["estimator"], **params),
                                       label, params)
        needs_cutouts = "cutout" in getattr(estimator, "required_columns", ())
        mass_model = None
        if entry.get("mass_model"):
            mass_entry = entry["mass_model"]
            mass_params = mass_entry.get("params") or {}
            mass_model = self._defaults_for(
                resolve_estimator(mass_entry.get("estimator", "gpm_resnet_mass"),
                                  **mass_params), f"{label}_mass", mass_params)
            needs_cutouts = True
        sample = _read_table(self.path("sample/sample.fits"))
        train = self._part(sample, "train", needs_cutouts)
        validation = self._part(sample, "validation", needs_cutouts)
        test = self._part(sample, "test", needs_cutouts)
        self.log(f"  {label}: {entry['estimator']}"
                 f"({', '.join(f'{k}={v!r}' for k, v in params.items())})"
                 f", target {target!r}, {len(train):,} training galaxies")

        keep = [c for c in _KEEP_COLUMNS + (target,) if c in test.colnames]
        if mass_model is not None:
            mass_target = entry["mass_model"].get("target") or \
                getattr(mass_model, "default_target", "lgm_fib_p50")
            self.log(f"  {label}: first an image model of the stellar mass ({mass_target!r})")
            mass_model = self._fit(mass_model, train, mass_target, validation)
            self._save_model(mass_model, f"{label}_mass")
            self._save_training_history(mass_model, f"{label}_mass")
            test = predict_metallicity(test, estimator=mass_model, progress=self.progress)
            mass_column = mass_model.output_column
            keep += [mass_target, mass_column, f"{mass_column}_err", f"{mass_column}_flag"]
            # the relation then reads the predicted mass and its error
            estimator.set_params(mass_column=mass_column, mass_err_column=f"{mass_column}_err")
        estimator = self._fit(estimator, train, target, validation)
        self._save_model(estimator, label)
        self._save_training_history(estimator, label)

        keep = list(dict.fromkeys(k for k in keep if k in test.colnames))
        predictions = predict_metallicity(test, estimator=estimator, keep_columns=keep,
                                          progress=self.progress)
        predictions.meta["target"] = target
        predictions.meta["estimator_label"] = label
        predictions.meta["estimator"] = entry["estimator"]
        predictions.meta["params"] = params
        if mass_model is not None:
            predictions.meta["mass_target"] = mass_target
            predictions.meta["mass_column"] = mass_column
        _write_table(predictions, self.path(f"estimate/{label}_test.ecsv"))

        if label == self.config["application"]["estimator"]:
            self._predict_application(estimator, label, mass_model)

    def _save_model(self, estimator, label):
        save = getattr(estimator, "save", None)
        if callable(save):
            path = self.path(f"estimate/models/{label}")
            path.parent.mkdir(parents=True, exist_ok=True)
            save(path)

    def _save_training_history(self, estimator, label):
        history = getattr(estimator, "history_", None)
        if isinstance(history, Table) and len(history):
            _write_table(history, self.path(f"estimate/{label}_history.ecsv"))

    def _predict_application(self, estimator, label, mass_model, chunk_size=512):
        from astropy.table import vstack
        from tqdm.auto import tqdm

        from .estimation import predict_metallicity

        table = _read_table(self.path("preprocess/application.fits"))
        keep = [c for c in _CATALOGUE_SOURCE_COLUMNS if c in table.colnames]
        needs_cutouts = "cutout" in getattr(estimator, "required_columns", ()) or \
            mass_model is not None
        pieces = []
        bar = tqdm(total=len(table), desc=f"catalogue {label}", unit="gal",
                   disable=not self.progress, file=sys.stderr)
        for start in range(0, max(len(table), 1), chunk_size):
            chunk = table[start:start + chunk_size]
            if needs_cutouts:
                chunk["cutout"] = read_cutouts(self.path("preprocess/application_cutouts.h5"),
                                               chunk["cutout_row"])
                chunk.meta["bands"] = "grz"
                chunk.meta["pixel_scale"] = 0.262
            if mass_model is not None:
                chunk = predict_metallicity(chunk, estimator=mass_model, progress=False)
            pieces.append(predict_metallicity(chunk, estimator=estimator, keep_columns=keep,
                                              progress=False))
            bar.update(len(chunk))
        bar.close()
        result = vstack(pieces, metadata_conflicts="silent")
        result.meta = pieces[0].meta
        n_ok = int(np.sum(~np.ma.getmaskarray(np.ma.asanyarray(result["Z_pred"]))))
        self.log(f"  {n_ok:,} of {len(result):,} application galaxies got a Z_pred")
        _write_table(result, self.path(f"estimate/{label}_application.ecsv"))

    # -- evaluation, catalogue, report -------------------------------------------------------

    def _test_predictions(self):
        out = {}
        for label in self.config["estimators"]:
            out[label] = _read_table(self.path(f"estimate/{label}_test.ecsv"))
        return out

    def _noise_floor(self, reference):
        """The mock's noise floor on the test galaxies: its best possible prediction."""
        truth_path = self.path("sky/truth.fits")
        if not truth_path.exists():
            return None
        truth = _read_table(truth_path)
        if "Z_best" not in truth.colnames:
            return None
        keys = [k for k in ("brickid", "objid") if k in reference.colnames and k in
                truth.colnames]
        if len(keys) != 2:
            return None
        index = {(int(b), int(o)): i for i, (b, o) in
                 enumerate(zip(truth["brickid"], truth["objid"]))}
        rows = [index.get((int(b), int(o)), -1) for b, o in
                zip(reference["brickid"], reference["objid"])]
        rows = np.asarray(rows)
        best = np.ma.masked_array(np.zeros(len(rows)), mask=rows < 0)
        best[rows >= 0] = np.asarray(truth["Z_best"], float)[rows[rows >= 0]]
        return best

    def _stage_evaluate(self):
        from .metrics import summarize
        from .pipeline_figures import evaluation_figures

        target = self.config["evaluate"]["target"]
        predictions = self._test_predictions()
        rows = []
        for label, table in predictions.items():
            tgt = table.meta.get("target", target)
            stats = summarize(table["Z_pred"], table[tgt], table["Z_pred_err"])
            flags = np.asarray(table["Z_pred_flag"]).astype(str)
            rows.append({"estimator": label,
                         "method": self._describe(label), "target": tgt,
                         "n_test": len(table), "n": stats["n"],
                         "n_flagged": int(np.sum(flags != "ok")),
                         "mu": stats["mu"], "sigma": stats["sigma"], "nmad": stats["nmad"],
                         "coverage": stats["coverage"], "median_err": stats["median_err"]})
            mass_column, mass_target = table.meta.get("mass_column"), \
                table.meta.get("mass_target")
            if mass_column and mass_target and mass_column in table.colnames:
                stats = summarize(table[mass_column], table[mass_target],
                                  table[f"{mass_column}_err"])
                rows.append({"estimator": f"{label}:mass",
                             "method": f"stellar mass from the images ({mass_column}, dex)",
                             "target": mass_target, "n_test": len(table), "n": stats["n"],
                             "n_flagged": int(np.sum(np.asarray(
                                 table[f"{mass_column}_flag"]).astype(str) != "ok")),
                             "mu": stats["mu"], "sigma": stats["sigma"],
                             "nmad": stats["nmad"], "coverage": stats["coverage"],
                             "median_err": stats["median_err"]})
        reference = predictions[self._main_label()] if self._main_label() in predictions \
            else next(iter(predictions.values()))
        best = self._noise_floor(reference)
        if best is not None:
            tgt = reference.meta.get("target", target)
            stats = summarize(best, reference[tgt])
            rows.append({"estimator": "noise_floor",
                         "method": "mock noise floor: the best prediction any image allows",
                         "target": tgt, "n_test": len(reference), "n": stats["n"],
                         "n_flagged": 0, "mu": stats["mu"], "sigma": stats["sigma"],
                         "nmad": stats["nmad"], "coverage": np.nan, "median_err": np.nan})
        metrics = Table(rows=[list(r.values()) for r in rows], names=list(rows[0]))
        for name in ("mu", "sigma", "nmad", "median_err"):
            metrics[name].unit = "dex"
            metrics[name].format = ".4f"
        metrics["coverage"].format = ".3f"
        metrics["coverage"].description = "fraction of test galaxies with |Z_pred - Z_true| " \
                                          "< Z_pred_err (0.683 for calibrated errors)"
        record_step(metrics, "pipeline.evaluate", target=target)
        _write_table(metrics, self.path("evaluate/metrics.ecsv"))
        for row in metrics:
            self.log(f"  {row['estimator']:>22s}: mu {row['mu']:+.4f}  sigma "
                     f"{row['sigma']:.4f}  NMAD {row['nmad']:.4f}  (n = {row['n']})")
        figures = []
        if self.config["evaluate"]["figures"]:
            sample = _read_table(self.path("sample/sample.fits"))
            figures = evaluation_figures(predictions, sample, self.path("evaluate"),
                                         target=target, main=self._main_label(),
                                         describe=self._describe, noise_floor=best)
            for png in sorted(self.path("estimate/models").glob("*/*.png")):
                figures.append({"name": f"loss_{png.parent.name}",
                                "file": f"../estimate/models/{png.parent.name}/{png.name}",
                                "caption": f"Training and validation loss per epoch of "
                                           f"{png.parent.name} (the best validation epoch "
                                           f"is kept)."})
        atomic_write_bytes(self.path("evaluate/figures.json"),
                           json.dumps(figures, indent=1).encode())

    def _main_label(self):
        app = self.config["application"]["estimator"]
        return app if app is not None else next(iter(self.config["estimators"]))

    def _describe(self, label):
        entry = self.config["estimators"].get(label, {})
        name = entry.get("estimator", label)
        params = entry.get("params") or {}
        if name == "gpm_resnet":
            text = f"GPM-ResNet ({params.get('config', 'default')} configuration)"
        elif name == "colour_polynomial":
            text = f"colour polynomial, order {params.get('order', '?')}"
        elif name == "mass_metallicity":
            if entry.get("mass_model"):
                text = "mass-metallicity relation, mass from an image GPM-ResNet"
            else:
                column = params.get("mass_column", "lgm_tot_p50")
                text = f"mass-metallicity relation, mass from {column}"
        else:
            text = name
        return text

    def _stage_catalogue(self):
        from .pipeline_figures import catalogue_figures

        label = self.config["application"]["estimator"]
        predictions = _read_table(self.path(f"estimate/{label}_application.ecsv"))
        catalogue = make_catalogue(predictions)
        record_step(catalogue, "pipeline.catalogue", estimator=label,
                    source_type=self.config["application"]["source_type"])
        _write_table(catalogue, self.path("catalogue/catalogue.fits"))
        _write_table(catalogue, self.path("catalogue/catalogue.ecsv"))
        self.log(f"  catalogue of {len(catalogue):,} galaxies written")
        figures = []
        if self.config["evaluate"]["figures"]:
            sample = _read_table(self.path("sample/sample.fits"))
            labelled = _read_table(self.path("preprocess/labelled.fits"))
            figures = catalogue_figures(catalogue, labelled, self.path("catalogue"),
                                        target=self.config["evaluate"]["target"],
                                        n_training=int(np.sum(np.asarray(sample["split"])
                                                              .astype(str) == "train")))
        atomic_write_bytes(self.path("catalogue/figures.json"),
                           json.dumps(figures, indent=1).encode())

    def _stage_report(self):
        from .report import write_report

        timings = dict(self._load_state().get("_timings", {}))
        write_report(self.out, self.path("report.html"), config=self.config,
                     timings=timings, title=self.config["report"]["title"])
        self.log(f"  report: {self.path('report.html')}")


# columns carried from the test set into the prediction tables
_KEEP_COLUMNS = ("specobjid", "ra", "dec", "release", "brickid", "objid", "z", "split",
                 "lgm_tot_p50", "lgm_fib_p50", "flux_g", "flux_r", "flux_z", "mag_r",
                 "enclosing_radius", "image_row", "cutout_row")

# the paper's Table 2 columns, then our quality columns
CATALOGUE_COLUMNS = ("ra", "dec", "release", "brickid", "objid", "z_phot_median", "mag_r",
                     "Z_pred", "Z_pred_err", "Z_pred_flag", "preprocess_flag")
_CATALOGUE_SOURCE_COLUMNS = ("ra", "dec", "release", "brickid", "objid", "z_phot_median",
                             "mag_r", "flux_r", "source_type", "preprocess_ok",
                             "preprocess_flag", "enclosing_radius", "cutout_row")


def make_catalogue(predictions):
    """Build the catalogue of the paper's Table 2 from an application prediction table.

    Parameters
    ----------
    predictions : astropy.table.Table
        Output of `gpm_astro.predict_metallicity` on image-catalogue rows: ``ra``, ``dec``,
        ``release``, ``brickid``, ``objid``, ``z_phot_median``, ``mag_r`` (or ``flux_r``, from
        which ``mag_r = 22.5 - 2.5 log10(flux_r)`` is derived), ``Z_pred``, ``Z_pred_err``,
        ``Z_pred_flag`` and, if present, ``preprocess_flag``.

    Returns
    -------
    astropy.table.Table
        Columns `CATALOGUE_COLUMNS` in that order, one row per input row in input order, with
        units and descriptions. ``mag_r`` is masked where ``flux_r`` is not positive.

    Raises
    ------
    SchemaError
        If a needed column is missing.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from gpm_astro.pipeline import make_catalogue
    >>> t = Table({"ra": [1.0], "dec": [2.0], "release": [9010], "brickid": [5], "objid": [7],
    ...            "z_phot_median": [0.1], "flux_r": [10.0], "Z_pred": [8.9],
    ...            "Z_pred_err": [0.1], "Z_pred_flag": ["ok"]})
    >>> cat = make_catalogue(t)
    >>> cat.colnames[:8], round(float(cat["mag_r"][0]), 2)
    (['ra', 'dec', 'release', 'brickid', 'objid', 'z_phot_median', 'mag_r', 'Z_pred'], 20.0)
    """
    import astropy.units as u
    from astropy.table import MaskedColumn

    from .tables import require_columns, require_table

    require_table(predictions, "predictions")
    needed = ["ra", "dec", "release", "brickid", "objid", "z_phot_median", "Z_pred",
              "Z_pred_err", "Z_pred_flag"]
    if "mag_r" not in predictions.colnames:
        needed.append("flux_r")
    require_columns(predictions, needed, "make_catalogue")
    out = Table(meta=copy.deepcopy(predictions.meta))
    descriptions = {
        "ra": "right ascension (J2000)", "dec": "declination (J2000)",
        "release": "Legacy Survey release (camera and filter set)",
        "brickid": "Legacy Survey brick", "objid": "object number within the brick",
        "z_phot_median": "median photometric redshift",
        "mag_r": "r-band AB magnitude, 22.5 - 2.5 log10(flux_r / nanomaggy)",
        "Z_pred": "predicted gas-phase metallicity 12 + log(O/H)",
        "Z_pred_err": "1-sigma uncertainty of Z_pred",
        "Z_pred_flag": "'ok', or why Z_pred is missing",
        "preprocess_flag": "outcome of cutout preprocessing ('ok' or the rejection reason)",
    }
    units = {"ra": u.deg, "dec": u.deg, "mag_r": u.mag, "Z_pred": u.dex, "Z_pred_err": u.dex}
    for name in CATALOGUE_COLUMNS:
        if name == "mag_r" and "mag_r" not in predictions.colnames:
            flux = np.ma.filled(np.ma.asanyarray(predictions["flux_r"]).astype(float), np.nan)
            flux = np.asarray(getattr(flux, "value", flux), dtype=float)
            good = np.isfinite(flux) & (flux > 0)
            mag = np.full(len(flux), np.nan)
            mag[good] = 22.5 - 2.5 * np.log10(flux[good])
            column = MaskedColumn(mag, mask=~good)
        elif name == "preprocess_flag" and name not in predictions.colnames:
            continue
        else:
            column = predictions[name]
            column = MaskedColumn(column) if hasattr(column, "mask") else column.copy()
        column.name = name
        if name in units:
            column.unit = units[name]
        column.description = descriptions[name]
        out[name] = column
    return out


def run_pipeline(config=None, *, output_dir=None, force=False, progress=True, until=None):
    """Run the whole pipeline; see `Pipeline` (this is ``Pipeline(...).run(until=...)``).

    Parameters
    ----------
    config : dict, str or path-like, optional
        The configuration (see `load_config`).
    output_dir : str or path-like, optional
        Output folder; overrides ``config["output_dir"]``.
    force : bool, optional
        Rerun stages whose outputs exist.
    progress : bool, optional
        Print stage messages and progress bars.
    until : str, optional
        Last stage to run.

    Returns
    -------
    dict
        See `Pipeline.run`.

    Raises
    ------
    GPMAstroError
        From the stage that failed; earlier outputs stay on disk.

    Examples
    --------
    >>> from gpm_astro.pipeline import run_pipeline
    >>> result = run_pipeline("run.toml", output_dir="out")  # doctest: +SKIP
    """
    return Pipeline(config, output_dir=output_dir, force=force, progress=progress).run(
        until=until)
