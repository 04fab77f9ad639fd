"""Fitting GPM-ResNet on a table: parameter checks, usable rows, network input, training and
the error calibration on the validation rows."""

import os

import numpy as np
import torch
from tqdm.auto import tqdm

from gpm_astro.exceptions import GPMAstroError, ParameterError, SchemaError
from gpm_astro.image_checks import IMAGE_FLAGS
from gpm_astro.tables import (boolean_column, missing_mask, optional_column, require_positive_int,
                              require_table, with_column_names)

from .domain import DomainModel, image_quantities, table_redshift
from .error_model import (ONE_SIGMA, _combined_error, _fit_error_model, error_shape_factor,
                          error_shape_shift, fit_error_shape)
from .model import GPMResNet, InputTransform, get_config
from .seeing import fit_seeing_correction, seeing_offset, table_seeing
from .table_inputs import _check_cutouts, _row_flags, _table_bands
from .training import resolve_device, resolve_precision, train_network


def training_config(config, *, epochs=None, batch_size=None, lr=None):
    """The configuration ``config`` (a name, dict or `GPMResNetConfig`) with the training values
    that are not None put in its place."""
    config = get_config(config)
    overrides = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr))
                 if v is not None}
    return config.replace(**overrides) if overrides else config


def split_validation(rows, fraction, seed):
    """``(train_rows, validation_rows)``: ``fraction`` of ``rows`` (at least 2) held out at
    random by ``seed``, each part sorted."""
    order = np.random.default_rng(seed).permutation(len(rows))
    n_val = max(2, int(round(fraction * len(rows))))
    return np.sort(rows[order[n_val:]]), np.sort(rows[order[:n_val]])


class FittingMixin:
    """`fit` and its checks, for `GPMResNetEstimator`."""

    # ------------------------------------------------------------------ checks
    def _resolved_config(self):
        return training_config(self.config, epochs=self.epochs, batch_size=self.batch_size,
                               lr=self.lr)

    def _check_params(self):
        for name in ("n_ensemble", "mc_passes"):
            require_positive_int(getattr(self, name), name)
        self._forward_batch_size(torch.device("cpu"))  # checks predict_batch_size
        if not 0 < self.validation_fraction < 1:
            msg = f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            raise ParameterError(msg)
        for name in ("error_shape", "seeing_correction"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ParameterError(f"{name} must be True or False, got "
                                     f"{getattr(self, name)!r}")
        if self.resume and self.checkpoint_dir is None:
            raise ParameterError("resume=True needs checkpoint_dir")
        resolve_device(self.device)
        resolve_precision(self._training_precision(), torch.device("cpu"))

    def _training_precision(self):
        # "mixed" is an inference precision: such an estimator trains in fp32
        return "fp32" if self.precision == "mixed" else self.precision

    def _check_fitted(self):
        if not hasattr(self, "models_"):
            msg = (f"this {type(self).__name__} is not fitted: call fit(table) or "
                   f"{type(self).__name__}.load(path_or_name) first")
            raise GPMAstroError(msg)

    # ------------------------------------------------------------------ data
    def _usable_rows(self, table, target):
        """Indices of rows to train on and the count skipped for each reason."""
        n = len(table)
        skipped = {"preprocess": 0, "missing_target": 0, **dict.fromkeys(IMAGE_FLAGS, 0)}
        use = np.ones(n, dtype=bool)
        ok_name = optional_column(table, "preprocess_ok", f"{type(self).__name__}.fit")
        if ok_name is not None:  # found ignoring case: PREPROCESS_OK = False is not trained on
            ok = boolean_column(table[ok_name], f"{type(self).__name__}.fit")
            skipped["preprocess"] = int((~ok).sum())
            use &= ok
        no_target = missing_mask(table[target])
        skipped["missing_target"] = int((use & no_target).sum())
        use &= ~no_target
        rows = np.flatnonzero(use)
        keep = np.ones(len(rows), dtype=bool)
        for start in range(0, len(rows), 512):
            part = rows[start:start + 512]
            flags = _row_flags(table, part, table["cutout"][part])
            for reason in IMAGE_FLAGS:
                skipped[reason] += int((flags == reason).sum())
            keep[start:start + 512] = flags == "ok"
        return rows[keep], skipped

    def _network_input(self, table, rows, transform, desc):
        """Transformed images of ``rows`` as one float32 array (built batch by batch)."""
        size = transform.config.network_input_size
        out = np.empty((len(rows), len(transform.config.bands), size, size), dtype=np.float32)
        step = 256
        for start in tqdm(range(0, len(rows), step), desc=desc, unit="batch",
                          disable=not self.progress or len(rows) <= step):
            part = rows[start:start + step]
            out[start:start + step] = transform(np.ma.getdata(table["cutout"][part])).numpy()
        return out

    def _train_features(self, x):
        """Penultimate-layer features of the first member, untransformed view, fp32."""
        model, trunk, tail, _, _ = self._inference_parts(0, torch.device("cpu"), "fp32", False)
        rows = []
        with torch.inference_mode():
            for start in range(0, len(x), 256):
                xb = torch.as_tensor(x[start:start + 256])
                rows.append(tail(trunk(xb), model.side_input(xb)).float())
        return torch.cat(rows).numpy()

    def _domain_quantities(self, table, train_rows, bands):
        """The training rows' `domain.image_quantities`, redshift and PSF FWHM
        (`seeing.table_seeing`), and the redshift column (None without one)."""
        parts = []
        for start in range(0, len(train_rows), 256):
            part = train_rows[start:start + 256]
            parts.append(image_quantities(np.ma.getdata(table["cutout"][part]), bands))
        quantities = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        redshift, column = table_redshift(table, train_rows)
        if redshift is not None:
            quantities["redshift"] = redshift
        seeing = table_seeing(table, train_rows, bands)
        if seeing is not None:
            quantities["psfsize"] = seeing
        return quantities, column

    # ------------------------------------------------------------------ fit
    def _calibration_groups(self, table, rows, bands):
        """Image-measured r magnitude and radius of ``rows`` (`domain.image_quantities`): with
        the label, the quantities whose quintiles the error shape is calibrated in (None
        without ``error_shape``)."""
        if not self.error_shape:
            return None
        parts = [image_quantities(np.ma.getdata(table["cutout"][rows[start:start + 256]]), bands)
                 for start in range(0, len(rows), 256)]
        return {name: np.concatenate([p[name] for p in parts]) for name in ("mag_r", "radius_r")}

    def _held_out_table(self, other, what, target, bands, size):
        """Usable rows of a validation or calibration table after its checks."""
        require_table(other, what)
        other = with_column_names(other, ["cutout", target], f"{what} table")
        if _table_bands(other) != bands:
            msg = (f"{what} bands {_table_bands(other)!r} differ from the training bands "
                   f"{bands!r}")
            raise SchemaError(msg)
        _check_cutouts(other, bands, size)
        rows, skipped = self._usable_rows(other, target)
        return other, rows, skipped

    def fit(self, table, *, target=None, validation=None, calibration=None):
        """Train on the rows of ``table`` with a usable cutout and target.

        Parameters
        ----------
        table : astropy.table.Table
            Needs ``cutout`` (n, bands, S, S) in nanomaggies and the ``target`` column. Rows
            whose ``preprocess_ok`` is False, whose target is missing (-9999, -99, NaN,
            masked), or whose cutout holds NaN/inf are skipped and counted in
            ``training_summary_``.
        target : str, optional
            Column of true values; ``oh_p50`` (``lgm_fib_p50`` for the mass estimator).
        validation : astropy.table.Table, optional
            Validation rows (best-epoch choice and, without ``calibration``, the error
            calibration). Without it, ``validation_fraction`` of the usable rows are held
            out, chosen by ``seed``.
        calibration : astropy.table.Table, optional
            Rows used only to calibrate the errors (`error_model`): the calibration split,
            neither trained on nor reported on. Its size costs one prediction, not one per
            epoch, so it may be larger than the validation table; the error shape has a knot
            per 400 rows (at most 12). Default: the validation rows.

        Returns
        -------
        GPMResNetEstimator
            self, fitted.

        Raises
        ------
        SchemaError
            Missing column or wrong cutout shape.
        ParameterError
            Invalid hyper-parameter, or too few usable rows.
        """
        target = self.default_target if target is None else target
        self._check_params()
        config = self._resolved_config()
        require_table(table)
        table = with_column_names(table, ["cutout", target], f"{type(self).__name__}.fit")
        bands = _table_bands(table)
        size = _check_cutouts(table, bands)
        config = config.replace(cutout_size=size)
        transform = InputTransform(config, bands)
        rows, skipped = self._usable_rows(table, target)
        if validation is None:
            train_rows, val_rows = split_validation(rows, self.validation_fraction, self.seed)
            val_table, val_skipped = table, None
        else:
            val_table, val_rows, val_skipped = self._held_out_table(validation, "validation",
                                                                    target, bands, size)
            train_rows = rows
        if len(train_rows) < 2 or len(val_rows) < 2:
            msg = (f"need at least 2 usable training and 2 validation rows, got "
                   f"{len(train_rows)} and {len(val_rows)} (skipped: {skipped})")
            raise ParameterError(msg)
        train_x = self._network_input(table, train_rows, transform, "training input")
        val_x = self._network_input(val_table, val_rows, transform, "validation input")
        train_y = np.asarray(np.ma.getdata(table[target][train_rows]), dtype=np.float64)
        val_y = np.asarray(np.ma.getdata(val_table[target][val_rows]), dtype=np.float64)
        summary = {"n_rows": len(table), "skipped": skipped, "validation_skipped": val_skipped,
                   "bands": bands, "cutout_size": size}
        val_seeing = self._seeing(val_table, val_rows, bands)
        if calibration is None:
            calibration_set = (None, None, self._calibration_groups(val_table, val_rows, bands),
                               val_seeing)
        else:
            *calibration_set, cal_skipped = self._calibration_set(calibration, target, bands,
                                                                  size, transform)
            summary["calibration_skipped"] = cal_skipped
        return self._fit_inputs(train_x, train_y, val_x, val_y, config=config, target=target,
                                summary=summary, calibration_set=calibration_set,
                                validation_seeing=val_seeing,
                                domain_quantities=self._domain_quantities(table, train_rows,
                                                                          bands))

    def _calibration_set(self, table, target, bands, size, transform):
        """The usable rows of a calibration table as `_fit_inputs` takes them: network input,
        labels, grouping quantities of the error shape and PSF FWHM; and the skipped rows."""
        table, rows, skipped = self._held_out_table(table, "calibration", target, bands, size)
        if len(rows) < 2:
            raise ParameterError(f"need at least 2 usable calibration rows, got {len(rows)} "
                                 f"(skipped: {skipped})")
        return (self._network_input(table, rows, transform, "calibration input"),
                np.asarray(np.ma.getdata(table[target][rows]), dtype=np.float64),
                self._calibration_groups(table, rows, bands), self._seeing(table, rows, bands),
                skipped)

    def _seeing(self, table, rows, bands):
        """The PSF FWHM of ``rows`` for the seeing correction (`seeing.table_seeing`; None
        without ``seeing_correction`` or without the column)."""
        return table_seeing(table, rows, bands) if self.seeing_correction else None

    def _fit_inputs(self, train_x, train_y, val_x, val_y, *, config, target, summary,
                    num_workers=0, domain_quantities=None, calibration_set=None,
                    validation_seeing=None):
        """Train the ensemble on network inputs (arrays, or datasets read from disk), then
        calibrate the errors and, given the training rows' domain quantities
        (`domain.image_quantities` and redshift), fit the domain model. Returns self.

        ``calibration_set`` is ``(x, y, groups, seeing)``: the calibration split's network
        input and labels (None, None: the validation rows), its grouping quantities for the
        error shape (a dict, the label's quintiles always added; None: the label's only) and
        its PSF FWHM for the seeing correction (None: no correction); ``validation_seeing``
        the validation rows' FWHM."""
        if config.standardize_target:
            mean, std = float(train_y.mean()), float(train_y.std())
            std = std if std > 0 else 1.0
        else:
            mean, std = 0.0, 1.0
        scale = (lambda y: ((y - mean) / std).astype(np.float32))

        models, histories, best_epochs = [], [], []
        for member in range(self.n_ensemble):
            member_seed = int(self.seed) + 1000 * member
            torch.manual_seed(member_seed)
            model = GPMResNet(config)
            member_dir = None
            if self.checkpoint_dir is not None:
                member_dir = os.path.join(self.checkpoint_dir, f"member{member}")
            result = train_network(
                model, train_x, scale(train_y), val_x, scale(val_y), config=config,
                seed=member_seed, device=self.device, precision=self._training_precision(),
                deterministic=self.deterministic, checkpoint_dir=member_dir,
                resume=self.resume, progress=self.progress, num_workers=num_workers)
            model.cpu().eval()
            models.append(model)
            history = result.history
            history.add_column(np.full(len(history), member), name="member", index=0)
            histories.append(history)
            best_epochs.append(result.best_epoch)

        from astropy.table import vstack

        self.config_ = config
        self.bands_ = summary["bands"]
        self.target_ = target
        self.target_mean_, self.target_std_ = mean, std
        self.models_ = models
        self._inference_cache = {}
        self.history_ = vstack(histories) if len(histories) > 1 else histories[0]
        self.err_scale_, self.err_constant_ = None, None
        value, spread, val_features = self._predict_array(
            val_x, precision=self._inference_precision(), compile=False, features=True)
        self.domain_ = None
        if domain_quantities is not None:
            quantities, column = domain_quantities
            self.domain_ = DomainModel.fit(quantities, self._train_features(train_x),
                                           val_features, redshift_column=column)
        cal_x, cal_y, cal_groups, cal_seeing = calibration_set or (None, None, None, None)
        self.calibration_split_ = "validation" if cal_x is None else "calibration"
        if cal_x is None:
            cal_value, cal_spread, cal_y = value, spread, val_y
        else:
            cal_value, cal_spread = self._predict_array(
                cal_x, precision=self._inference_precision(), compile=False)
        self._fit_calibration(cal_value, cal_spread, cal_y, cal_groups, cal_seeing,
                              centre=float(np.mean(train_y)), scale=float(np.std(train_y)))
        if self.seeing_correction_ is not None and validation_seeing is not None:
            value = value + seeing_offset(validation_seeing, self.seeing_correction_)
        err = self._errors(value, spread)
        from gpm_astro.metrics import summarize

        # as predict gives them: the error shape's bias correction moves Z_pred too
        value = value + error_shape_shift(value, self.err_shape_)
        self.validation_metrics_ = summarize(value, val_y, err)
        self.training_summary_ = {
            "n_rows": summary["n_rows"], "n_train": int(len(train_y)),
            "n_validation": int(len(val_y)), "n_calibration": int(len(cal_y)),
            "calibration_split": self.calibration_split_, "skipped": summary["skipped"],
            "validation_skipped": summary["validation_skipped"], "target": target,
            "target_mean": float(train_y.mean()), "target_std": float(train_y.std()),
            "target_range": [float(train_y.min()), float(train_y.max())],
            "best_epochs": best_epochs, "seed": int(self.seed), "n_ensemble": self.n_ensemble,
            "bands": summary["bands"], "cutout_size": summary["cutout_size"],
            **{k: v for k, v in summary.items() if k not in (
                "n_rows", "skipped", "validation_skipped", "bands", "cutout_size")},
        }
        return self

    def calibrate(self, table, *, target=None):
        """Fit the calibration of a trained model again, on the labelled rows of ``table``.

        The seeing correction (with ``seeing_correction``), the error model and, with
        ``error_shape``, the error shape are fitted anew on this model's predictions for these
        rows, exactly as `fit` fits them on its ``calibration`` table; the network, the domain
        model and the training summary's other entries stay as they are. Use it to calibrate
        a saved model's errors on galaxies of one's own, or on more galaxies than `fit` had.
        Give only rows the network was not trained on, and report on yet other rows. The
        validation metrics (``validation_metrics_``, the card's ``metrics.validation``) stay
        those measured by `fit`, marked ``measured_before_calibrate``: the validation rows are
        not at hand to measure the new calibration on.

        Parameters
        ----------
        table : astropy.table.Table
            ``cutout`` in the model's bands and size, and the ``target`` column; rows whose
            ``preprocess_ok`` is False, whose target is missing or whose cutout holds NaN/inf
            are skipped (counted in ``training_summary_["calibration_skipped"]``).
        target : str, optional
            Column of true values; default the target the model was trained on.

        Returns
        -------
        self
        """
        self._check_fitted()
        target = self.target_ if target is None else target
        x, y, groups, seeing, skipped = self._calibration_set(
            table, target, self.bands_, self.config_.cutout_size,
            InputTransform(self.config_, self.bands_))
        value, spread = self._predict_array(x, precision=self._inference_precision(),
                                            compile=False)
        summary = self.training_summary_
        self._fit_calibration(value, spread, y, groups, seeing,
                              centre=summary["target_mean"], scale=summary["target_std"])
        self.calibration_split_ = "calibration"
        summary.update(calibration_split="calibration", n_calibration=int(len(y)),
                       calibration_skipped=skipped)
        # the validation rows are not at hand: their metrics (coverage, mu) are still those of
        # the errors and corrections fit gave, which the card must not present as this model's
        self.validation_metrics_ = {**self.validation_metrics_, "measured_before_calibrate": True}
        return self

    def _fit_calibration(self, value, spread, y, groups, seeing, *, centre, scale):
        """Fit the seeing correction, then the error model and shape on the corrected
        calibration predictions; ``centre``, ``scale``: the training labels' mean and std."""
        self.seeing_correction_ = fit_seeing_correction(value, y, seeing)
        if self.seeing_correction_ is not None:
            value = value + seeing_offset(seeing, self.seeing_correction_)
        self._fit_errors(value, spread, y, {self.target_: y, **(groups or {})},
                         centre=centre, scale=scale)

    def _fit_errors(self, value, spread, y, groups, *, centre, scale):
        """Fit the error model on calibration predictions: ``err_scale_`` and
        ``err_constant_`` (`error_model._fit_error_model`; a constant without a stochastic
        spread), then, with ``error_shape``, the shape over the prediction
        (`error_model.fit_error_shape`) that makes the coverage hold within quintiles of
        ``groups``."""
        residual = np.abs(value - y)
        self.err_shape_ = None
        if self._has_spread():
            if self.calibrate_errors:
                self.err_scale_, self.err_constant_ = _fit_error_model(residual, spread)
            else:
                self.err_scale_, self.err_constant_ = 1.0, 0.0
        else:
            self.err_scale_ = None
            self.err_constant_ = float(np.quantile(residual, ONE_SIGMA))
        if self.calibrate_errors and self.error_shape:
            self.err_shape_ = fit_error_shape(value, y, self._errors(value, spread), groups,
                                              centre=centre, scale=scale)

    def _errors(self, value, spread):
        """The calibrated 1-sigma error of predictions ``value`` (before the error shape's bias
        correction) with stochastic ``spread``."""
        if self.err_scale_ is None:
            base = np.full(len(value), self.err_constant_)
        else:
            base = _combined_error(spread, self.err_scale_, self.err_constant_)
        return base * error_shape_factor(value, base, getattr(self, "err_shape_", None))
