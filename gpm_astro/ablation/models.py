"""Train a model once, keep its test predictions: the unit of work every study shares.

`ModelRunner.result(label, estimator, params, bands)` fits a registered estimator on the
sample's training split (with its validation split), predicts the test split, and writes
``models/<label>/predictions.ecsv`` and ``models/<label>/result.json`` (parameters, training
time, the settings' fingerprint). A second request with the same settings, in this run or a
resumed one, reads those files back instead of training again; so the GPM-ResNet of the
architecture comparison is also the reference of the size and mass-metallicity studies, and
the resolution and band studies reuse it where they ask for the same input.
"""

import copy
import hashlib
import json
import sys
import time
from pathlib import Path


import numpy as np

from ..exceptions import ParameterError

__all__ = ["ModelRunner", "KEEP_COLUMNS", "log"]

#: test-set columns kept beside the predictions (those present)
KEEP_COLUMNS = ("specobjid", "brickid", "objid", "ra", "dec", "enclosing_radius",
                "lgm_tot_p50", "lgm_fib_p50", "mag_r", "z")


def log(message, progress=True):
    """A time-stamped message on standard error (when ``progress``)."""
    if progress:
        stamp = time.strftime("%H:%M:%S")
        print(f"[gpm-astro ablate {stamp}] {message}", file=sys.stderr, flush=True)


def _fingerprint(*parts):
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def count_parameters(estimator):
    """Parameters of a fitted network estimator (its first network), or -1 if it has none."""
    models = getattr(estimator, "models_", None)
    if not models:
        return -1
    return int(sum(p.numel() for p in models[0].parameters()))


class ModelRunner:
    """Fits and caches the models of the studies on one labelled sample.

    Parameters
    ----------
    run_dir : path-like
        Pipeline folder holding the sample (see `gpm_astro.ablation.data.prepare_sample`).
    out : path-like
        Ablation output folder; models go to ``out/models/<label>/``.
    target : str
        Column of true values.
    columns : sequence of str, optional
        Other columns the studies read when present (e.g. the radius and mass columns).
        These and ``target`` are found whatever their case and carry the spelling given here.
    progress : bool, optional
        Messages and progress bars on standard error.
    """

    def __init__(self, run_dir, out, target, *, columns=(), progress=True):
        self.run_dir = Path(run_dir)
        self.out = Path(out)
        self.target = target
        self.columns = tuple(columns)
        self.progress = progress
        self._splits = {}

    def log(self, message):
        log(message, self.progress)

    def split(self, name, bands=None, within=None):
        """A split of the sample (cached), optionally as a band composite and restricted to
        rows with ``low <= column < high`` (``within = (column, low, high, closed)``;
        ``closed`` includes ``high``)."""
        from ..tables import with_column_names
        from .data import band_composite, read_split

        if name not in self._splits:
            table = read_split(self.run_dir, name)
            present = {c.lower() for c in table.colnames}
            wanted = [self.target] + [c for c in dict.fromkeys(self.columns + KEEP_COLUMNS)
                                      if c.lower() in present]
            self._splits[name] = with_column_names(table, wanted, "the ablation studies")
        table = self._splits[name]
        if within is not None:
            column, low, high, closed = within
            values = np.ma.filled(np.ma.asanyarray(table[column]).astype(float), np.nan)
            table = table[(values >= low) & ((values < high) | (closed & (values == high)))]
        return table if bands is None else band_composite(table, bands)

    @property
    def cutout_size(self):
        return int(self.split("test")["cutout"].shape[-1])

    def sample_fingerprint(self):
        """Identifies the sample: the sample table's size and modification time."""
        path = self.run_dir / "sample/sample.fits"
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, int(stat.st_mtime)]

    def result(self, label, estimator, params, *, bands=None, within=None):
        """Fit ``estimator(**params)`` on the training split and predict the test split.

        Parameters
        ----------
        label : str
            Folder name under ``models/``.
        estimator : str
            A registered estimator name.
        params : dict
            Its constructor parameters.
        bands : str, optional
            Train and test on the band composite of these bands (`band_composite`).
        within : tuple, optional
            ``(column, low, high, closed)``: train, validate and test on the rows of each split
            inside that range only (see `split`).

        Returns
        -------
        dict
            ``predictions`` (Table: ``Z_pred``, ``Z_pred_err``, ``Z_pred_flag``, the target
            and `KEEP_COLUMNS`), ``n_parameters``, ``train_seconds``, ``n_train``, ``label``,
            ``estimator``, ``params``, ``bands``. A model that cannot be built, trained or
            run (e.g. no finite validation loss) is logged and returned with ``failed`` (the
            error) and ``predictions`` None, and is not cached: a later run tries it again.
        """
        from ..io import read_table, write_table

        key = _fingerprint(estimator, params, bands, within, self.target,
                           self.sample_fingerprint())
        folder = self.out / "models" / label
        summary_path, predictions_path = folder / "result.json", folder / "predictions.ecsv"
        if summary_path.is_file() and predictions_path.is_file():
            summary = json.loads(summary_path.read_text())
            if summary.get("key") == key:
                self.log(f"{label}: trained before, predictions read back")
                return dict(summary, predictions=read_table(predictions_path))
        try:
            fitted, seconds = self._fit(label, estimator, params, bands, within)
            test = self.split("test", bands, within)
            predictions = fitted.predict(test)
        except Exception as exc:  # one variant failing must not end the others
            failed = f"{type(exc).__name__}: {exc}"
            self.log(f"{label}: FAILED ({failed}); reported as failed, tried again next run")
            return {"key": key, "label": label, "estimator": estimator,
                    "params": copy.deepcopy(params), "bands": bands, "within": within,
                    "n_parameters": -1, "train_seconds": float("nan"),
                    "n_train": int(len(self.split("train", within=within))),
                    "n_test": int(len(self.split("test", within=within))),
                    "failed": failed, "predictions": None}
        for column in (self.target,) + KEEP_COLUMNS:
            if column in test.colnames and column not in predictions.colnames:
                predictions[column] = test[column]
        predictions.meta.update(label=label, estimator=estimator, target=self.target,
                                bands=bands or str(test.meta.get("bands", "grz")))
        summary = {"key": key, "label": label, "estimator": estimator,
                   "params": copy.deepcopy(params), "bands": bands, "within": within,
                   "n_parameters": count_parameters(fitted), "train_seconds": seconds,
                   "n_train": int(len(self.split("train", within=within)))}
        folder.mkdir(parents=True, exist_ok=True)
        write_table(predictions, predictions_path, overwrite=True)
        from ..io import atomic_write_bytes

        atomic_write_bytes(summary_path, json.dumps(summary, indent=1, default=str).encode())
        return dict(summary, predictions=predictions)

    def _fit(self, label, estimator, params, bands, within=None):
        from ..plugins import get_estimator

        cls = get_estimator(estimator)
        params = copy.deepcopy(params)
        if "progress" in cls._param_names() and "progress" not in params:
            params["progress"] = self.progress
        try:
            model = cls(**params)
        except TypeError as exc:
            msg = f"cannot build estimator {estimator!r} for {label!r} from {params!r}: {exc}"
            raise ParameterError(msg) from exc
        train = self.split("train", bands, within)
        validation = self.split("validation", bands, within)
        self.log(f"{label}: training {estimator} on {len(train)} galaxies"
                 + (f" (bands {bands})" if bands else ""))
        tic = time.perf_counter()
        model.fit(train, target=self.target, validation=validation)
        seconds = time.perf_counter() - tic
        self.log(f"{label}: trained in {seconds:.1f} s")
        return model, seconds
