"""`Pipeline`: run the stages in order, skip those already done, keep state in the output folder."""

import hashlib
import json
import sys
import time
from pathlib import Path

from astropy.table import Table

from ..exceptions import ParameterError
from ..io import atomic_write_bytes, writable_directory
from .config import STAGE_NAMES, check_before_run, load_config
from .data_stages import DataStages
from .estimate_stages import EstimateStages
from .result_stages import ResultStages

# options that change how fast a stage runs, not what it writes
_RUN_OPTIONS = ("n_jobs", "progress", "batch_size")

#: The HDF5 cutout stores each stage writes: the bulk of a run's disk use, removed once no later
#: stage reads them when the configuration sets ``keep_cutouts = false``.
CUTOUT_STORES = {"sky": ("sky/cutouts.h5",),
                 "preprocess": ("preprocess/labelled_cutouts.h5",
                                "preprocess/application_cutouts.h5")}
# the stage whose cutout stores a stage reads
_READS_CUTOUTS_OF = {"preprocess": "sky", "estimate": "preprocess"}


def _without(mapping, keys):
    return {k: v for k, v in mapping.items() if k not in keys}


def _fingerprint(*parts):
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Pipeline(DataStages, EstimateStages, ResultStages):
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
            msg = ("no output folder: set output_dir in the configuration (e.g. output_dir = "
                   "\"my_run\", relative to the current folder) or give --out DIR")
            raise ParameterError(msg)
        check_before_run(self.config)  # a typo fails now, not after hours of earlier stages
        self.out = Path(self.config["output_dir"])
        self.force = force
        self.progress = progress
        self.timings = {}
        self._state_path = self.out / "pipeline_state.json"
        self._state = None

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
            parent = self.path("estimate/checkpoints")
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()

    def _remove_cutouts(self, later_stages, state):
        """Remove the cutout stores that none of ``later_stages`` reads (keep_cutouts = false)."""
        still_read = {_READS_CUTOUTS_OF.get(name.split(":")[0]) for name, _, _ in later_stages}
        removed = state.setdefault("_removed_cutouts", [])
        for producer, stores in CUTOUT_STORES.items():
            for store in stores:
                if producer in still_read or not self.path(store).is_file():
                    continue
                size = self.path(store).stat().st_size
                self.path(store).unlink()
                removed.append(store)
                self.log(f"  removed {store} ({size / 1e6:,.0f} MB; keep_cutouts = false; a "
                         f"later run that needs it makes it again)")
        state["_removed_cutouts"] = sorted(set(removed))
        self._save_state(state)

    def cutout_store(self, store):
        """Path of a cutout store (one of `CUTOUT_STORES`), made again if a run removed it.

        With ``keep_cutouts = false`` a run removes the stores once no later stage reads
        them; a stage that reads one later gets it from here, made again by the stage that
        writes it (and, first, that stage's own input store).
        """
        path = self.path(store)
        if path.is_file():
            return path
        producer = next(name for name, stores in CUTOUT_STORES.items() if store in stores)
        reads = _READS_CUTOUTS_OF.get(producer)
        for needed in CUTOUT_STORES.get(reads, ()):
            self.cutout_store(needed)
        self.log(f"  making {', '.join(CUTOUT_STORES[producer])} again (removed after an "
                 f"earlier run; keep_cutouts = true keeps them)")
        getattr(self, "_stage_" + producer)()
        state = self._state if self._state is not None else self._load_state()
        state["_removed_cutouts"] = [p for p in state.get("_removed_cutouts", [])
                                     if p not in CUTOUT_STORES[producer]]
        self._save_state(state)
        return path

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
            parts = [cfg["estimators"][label]]
            if not cfg["estimators"][label].get("target"):  # trained on evaluate.target
                parts.append(cfg["evaluate"]["target"])
            stages.append((f"estimate:{label}", outputs, parts))
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
        self._state = state  # shared with cutout_store
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
            removed = set(state.get("_removed_cutouts", []))
            done = (state.get(name) == key
                    and all(self.path(o).exists() for o in outputs if o not in removed))
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
                self._clear_checkpoints(name)  # they only resume an interrupted stage
                if name in CUTOUT_STORES:  # written afresh
                    state["_removed_cutouts"] = [p for p in state.get("_removed_cutouts", [])
                                                 if p not in CUTOUT_STORES[name]]
                self.timings[name] = time.perf_counter() - tic
                state[name] = key
                state.setdefault("_timings", {})[name] = round(self.timings[name], 2)
                self._save_state(state)
                self.log(f"[{index}/{len(stages)}] {name} done in "
                         f"{self.timings[name]:.1f} s")
            if not self.config["keep_cutouts"]:
                self._remove_cutouts(stages[index:], state)
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
