"""The ``estimate`` stage: fit each estimator, predict the test and application sets."""

import sys

import numpy as np
from astropy.table import Table

from ..survey_constants import BANDS, PIXEL_SCALE_ARCSEC
from .catalogue import _CATALOGUE_SOURCE_COLUMNS, _KEEP_COLUMNS
from .cutout_store import _read_table, _write_table, read_cutouts


class EstimateStages:
    """The ``estimate`` stage of `gpm_astro.pipeline.Pipeline` (a mixin)."""

    # -- estimators --------------------------------------------------------------------------

    def _part(self, sample, name, with_cutouts):
        """One split of the sample, with its cleaned cutouts when the estimator needs them."""
        part = sample[np.asarray(sample["split"]).astype(str) == name]
        if with_cutouts:
            part["cutout"] = read_cutouts(self.cutout_store("preprocess/labelled_cutouts.h5"),
                                          part["cutout_row"])
            part.meta["bands"] = BANDS
            part.meta["pixel_scale"] = PIXEL_SCALE_ARCSEC
        return part

    def _fit(self, estimator, table, target, validation=None):
        """Fit on the rows with a usable target (the others are counted in the log); the
        validation split goes to an estimator that declares ``uses_validation``."""
        from ..tables import missing_mask

        usable = ~missing_mask(table[target])
        if not usable.all():
            self.log(f"  {int((~usable).sum())} training rows lack {target!r}; fitting on "
                     f"{int(usable.sum())}")
        kwargs = {"target": target}
        if validation is not None and getattr(estimator, "uses_validation", False):
            kwargs["validation"] = validation[~missing_mask(validation[target])]
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
        from ..estimation import predict_metallicity, resolve_estimator

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
        self._check_label_columns(sample)
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

        from ..estimation import predict_metallicity

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
                store = self.cutout_store("preprocess/application_cutouts.h5")
                chunk["cutout"] = read_cutouts(store, chunk["cutout_row"])
                chunk.meta["bands"] = BANDS
                chunk.meta["pixel_scale"] = PIXEL_SCALE_ARCSEC
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
