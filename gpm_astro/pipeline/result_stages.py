"""The stages that summarise a run: evaluate (the metrics table and figures), catalogue, report."""

import json

import numpy as np
from astropy.table import Table

from ..io import atomic_write_bytes
from ..tables import record_step
from .catalogue import make_catalogue
from .cutout_store import _read_table, _write_table


class ResultStages:
    """Stages ``evaluate``, ``catalogue`` and ``report`` of `gpm_astro.pipeline.Pipeline`."""

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
        from ..metrics import summarize
        from ..pipeline_figures import evaluation_figures

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
        """The estimator's own `~gpm_astro.base.Estimator.describe` of a configured label."""
        from ..estimation import resolve_estimator

        entry = self.config["estimators"].get(label)
        if entry is None:
            return label
        estimator = resolve_estimator(entry["estimator"], **(entry.get("params") or {}))
        if not entry.get("mass_model"):
            return estimator.describe()
        mass_entry = entry["mass_model"]
        mass_model = resolve_estimator(mass_entry.get("estimator", "gpm_resnet_mass"),
                                       **(mass_entry.get("params") or {}))
        estimator.set_params(mass_column=mass_model.output_column)
        return f"{estimator.describe()}, from the images: {mass_model.describe()}"

    def _stage_catalogue(self):
        from ..pipeline_figures import catalogue_figures

        label = self.config["application"]["estimator"]
        predictions = _read_table(self.path(f"estimate/{label}_application.ecsv"))
        catalogue = make_catalogue(predictions)
        record_step(catalogue, "pipeline.catalogue", estimator=label,
                    source_type=self.config["application"]["source_type"])
        _write_table(catalogue, self.path("catalogue/catalogue.fits"))
        _write_table(catalogue, self.path("catalogue/catalogue.ecsv"))
        self.log(f"  catalogue of {len(catalogue):,} galaxies written")
        domain = catalogue.meta.get("outside_training_domain")
        if domain:
            self.log(f"  {domain['n_outside']:,} of {domain['n_predicted']:,} predicted "
                     f"galaxies ({100 * domain['fraction']:.1f} %) lie outside the model's "
                     f"training domain (Z_pred_domain_flag)")
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
        from ..report import write_report

        timings = dict(self._load_state().get("_timings", {}))
        write_report(self.out, self.path("report.html"), config=self.config,
                     timings=timings, title=self.config["report"]["title"])
        self.log(f"  report: {self.path('report.html')}")
