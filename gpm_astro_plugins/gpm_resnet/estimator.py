"""GPM-ResNet as a gpm_astro estimator: fit on a table of cutouts, predict Z with errors.

The per-galaxy error ``Z_pred_err`` comes from the spread of stochastic passes: Monte-Carlo
DropBlock (``mc_passes`` forward passes with DropBlock active) and/or an ensemble of
``n_ensemble`` independently initialised networks. The raw spread is scaled by one factor fitted
on the validation set so that 68.3 % of validation galaxies have ``|pred - true| < err``
(``calibrate_errors=True``). With neither MC passes nor an ensemble, the error is the
68.3rd percentile of ``|pred - true|`` on the validation set, the same for every galaxy.

Models are saved as safetensors weights plus a JSON model card and loaded without unpickling.
"""

import datetime
import json
import os
from pathlib import Path

import numpy as np
import torch
from astropy.table import Column, MaskedColumn, Table
from tqdm.auto import tqdm

from gpm_astro.base import Estimator
from gpm_astro.exceptions import GPMAstroError, ParameterError, SchemaError, WeightsError
from gpm_astro.tables import (missing_mask, package_version, record_step, require_columns,
                              require_positive_int, require_table)

from .model import (GPMResNet, GPMResNetConfig, InputTransform, get_config,
                    mixed_precision_copy)
from .training import (HISTORY_CSV, HISTORY_PNG, _autocast, plot_history, resolve_device,
                       resolve_precision, train_network, write_history)

__all__ = ["GPMResNetEstimator", "GPMResNetMassEstimator", "WEIGHTS_FILE", "CARD_FILE"]

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
CARD_FORMAT = "gpm_astro.gpm_resnet/1"
ONE_SIGMA = 0.6827
# bottlenecks kept wholly in fp32 by precision="mixed" (besides the ILO block, the next
# bottleneck's input convolutions and the head); 1 keeps max |dZ| < 0.005 dex on a trained
# network, 0 does not (docs/gpm_resnet.rst, "Inference speed")
MIXED_FP32_BLOCKS = 1
PREDICT_PRECISIONS = ("auto", "fp32", "bf16", "mixed")
# images per forward pass with predict_batch_size="auto" (measured: docs/gpm_resnet.rst)
CPU_FORWARD_BATCH = 8
GPU_FORWARD_BATCH = 64
# rows loaded and transformed at a time by predict
LOAD_ROWS = 256


def _table_bands(table):
    return str(table.meta.get("bands", "grz"))


def _check_cutouts(table, bands, expected_size=None):
    """Return the cutout side after checking the column's shape (n, bands, S, S)."""
    shape = table["cutout"].shape
    if len(shape) != 4 or shape[1] != len(bands) or shape[2] != shape[3]:
        msg = (f"cutout column must have shape (n, {len(bands)}, S, S) for bands {bands!r}, "
               f"got {shape!r}")
        raise SchemaError(msg)
    if expected_size is not None and shape[2] != expected_size:
        msg = (f"this model was trained on {expected_size} x {expected_size} px cutouts, "
               f"got {shape[2]} x {shape[3]}")
        raise SchemaError(msg)
    return int(shape[2])


def _row_flags(table, rows, images):
    """Flags of ``rows`` given their loaded images (a masked array or ndarray)."""
    flags = np.full(len(rows), "ok", dtype=object)
    if "preprocess_ok" in table.colnames:
        ok = np.asarray(np.ma.filled(np.ma.asanyarray(table["preprocess_ok"][rows]), False),
                        dtype=bool)
        if "preprocess_flag" in table.colnames:
            reasons = np.ma.filled(np.ma.asanyarray(table["preprocess_flag"][rows]).astype(str),
                                   "masked")
        else:
            reasons = np.full(len(rows), "failed", dtype=object)
        for i in np.flatnonzero(~ok):
            flags[i] = f"preprocess:{reasons[i]}"
    masked = np.ma.getmaskarray(images).reshape(len(rows), -1).any(axis=1)
    data = np.ma.getdata(images)
    finite = np.isfinite(data).reshape(len(rows), -1).all(axis=1)
    flags[(flags == "ok") & masked] = "missing_cutout"
    flags[(flags == "ok") & ~finite] = "invalid_pixels"
    return flags


class GPMResNetEstimator(Estimator):
    """Z = 12 + log(O/H) from g, r, z cutouts with GPM-ResNet (paper §3).

    Parameters
    ----------
    config : str, dict or GPMResNetConfig, optional
        ``"lite"`` (default; trains on a CPU in minutes), ``"paper"`` (the paper's network and
        training), or a custom configuration.
    epochs, batch_size, lr : int, int, float, optional
        Override the configuration's training defaults.
    seed : int, optional
        Seeds initialisation, the validation split, shuffling, augmentation and DropBlock.
    device : str, optional
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``.
    precision : str, optional
        ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"fp32"`` or ``"bf16"``; used for
        training and as the default of `predict`. ``"mixed"`` (see `predict`) is for
        inference only: such an estimator trains in fp32 and predicts in mixed precision.
    compile : bool, optional
        Default of `predict`'s ``compile`` (``torch.compile`` the network for inference).
    n_ensemble : int, optional
        Networks trained from different seeds; predictions are averaged.
    mc_passes : int, optional
        Monte-Carlo DropBlock passes per network at prediction (1 = one deterministic pass).
    validation_fraction : float, optional
        Share of the usable training rows held out for the best-epoch choice and the error
        calibration when ``fit`` gets no ``validation`` table.
    calibrate_errors : bool, optional
        Scale the raw spread so that 68.3 % of validation rows fall within one error.
    deterministic : bool, optional
        Deterministic kernels while training.
    checkpoint_dir : str, optional
        Directory for per-epoch checkpoints (one sub-directory per ensemble member).
    resume : bool, optional
        Continue training from ``checkpoint_dir`` after an interruption.
    predict_batch_size : int or "auto", optional
        Images per forward pass in `predict`. ``"auto"``: 8 on the CPU (the activations of a
        few cutouts stay in the caches: 1.7x the fp32 rate of passes of 64 and 1.1x with
        ``compile``, benchmarks/inference.py), 64 on a GPU.
    progress : bool, optional
        tqdm progress bars.

    Attributes
    ----------
    config_ : GPMResNetConfig
        The configuration trained (with ``cutout_size`` set from the data).
    models_ : list of GPMResNet
        The trained network(s), on the CPU, in eval mode.
    target_ : str
        The column trained on.
    target_mean_, target_std_ : float
        Label standardisation (0 and 1 when the configuration does not standardise).
    err_scale_ : float or None
        Factor on the stochastic spread (None for the constant error model); the error is
        ``hypot(err_scale_ * spread, err_constant_)``.
    err_constant_ : float or None
        Error (dex) added in quadrature to the scaled spread, or the whole error when there is
        no stochastic spread.
    history_ : astropy.table.Table
        Per-epoch losses (column ``member`` for ensembles).
    training_summary_ : dict
        Rows used and skipped (by reason), best epochs.
    validation_metrics_ : dict
        mu, sigma, nmad, coverage on the validation rows.
    bands_ : str
        Bands of the training table, in cutout order.

    Examples
    --------
    >>> from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator
    >>> est = GPMResNetEstimator(config="lite", epochs=5)
    >>> est.get_params()["epochs"]
    5
    """

    name = "gpm_resnet"
    output = "Z"
    output_unit = "dex"
    required_columns = ("cutout",)
    default_target = "oh_p50"

    def __init__(self, *, config="lite", epochs=None, batch_size=None, lr=None, seed=0,
                 device="auto", precision="auto", compile=False, n_ensemble=1, mc_passes=10,
                 validation_fraction=0.2, calibrate_errors=True, deterministic=False,
                 checkpoint_dir=None, resume=False, predict_batch_size="auto", progress=True):
        self.config = config
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.device = device
        self.precision = precision
        self.compile = compile
        self.n_ensemble = n_ensemble
        self.mc_passes = mc_passes
        self.validation_fraction = validation_fraction
        self.calibrate_errors = calibrate_errors
        self.deterministic = deterministic
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.predict_batch_size = predict_batch_size
        self.progress = progress

    # ------------------------------------------------------------------ checks
    def _resolved_config(self):
        config = get_config(self.config)
        overrides = {k: v for k, v in (("epochs", self.epochs), ("batch_size", self.batch_size),
                                        ("lr", self.lr)) if v is not None}
        return config.replace(**overrides) if overrides else config

    def _check_params(self):
        for name in ("n_ensemble", "mc_passes"):
            require_positive_int(getattr(self, name), name)
        self._forward_batch_size(torch.device("cpu"))  # checks predict_batch_size
        if not 0 < self.validation_fraction < 1:
            msg = f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            raise ParameterError(msg)
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
        skipped = {"preprocess": 0, "missing_target": 0, "missing_cutout": 0,
                   "invalid_pixels": 0}
        use = np.ones(n, dtype=bool)
        if "preprocess_ok" in table.colnames:
            ok = np.asarray(np.ma.filled(np.ma.asanyarray(table["preprocess_ok"]), False),
                            dtype=bool)
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
            for reason in ("missing_cutout", "invalid_pixels"):
                skipped[reason] += int((flags == reason).sum())
            keep[start:start + 512] = flags == "ok"
        return rows[keep], skipped

    def _network_input(self, table, rows, transform, desc):
        """Transformed images of ``rows`` as one float32 array (built batch by batch)."""
        size = transform.config.input_size or transform.config.cutout_size
        out = np.empty((len(rows), len(transform.config.bands), size, size), dtype=np.float32)
        step = 256
        for start in tqdm(range(0, len(rows), step), desc=desc, unit="batch",
                          disable=not self.progress or len(rows) <= step):
            part = rows[start:start + step]
            out[start:start + step] = transform(np.ma.getdata(table["cutout"][part])).numpy()
        return out

    # ------------------------------------------------------------------ fit
    def fit(self, table, *, target=None, validation=None):
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
            Validation rows (best-epoch choice and error calibration). Without it,
            ``validation_fraction`` of the usable rows are held out, chosen by ``seed``.

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
        require_columns(table, ["cutout", target], f"{type(self).__name__}.fit")
        bands = _table_bands(table)
        size = _check_cutouts(table, bands)
        config = config.replace(cutout_size=size)
        transform = InputTransform(config, bands)
        rows, skipped = self._usable_rows(table, target)
        if validation is None:
            order = np.random.default_rng(self.seed).permutation(len(rows))
            n_val = max(2, int(round(self.validation_fraction * len(rows))))
            val_rows, train_rows = np.sort(rows[order[:n_val]]), np.sort(rows[order[n_val:]])
            val_table, val_skipped = table, None
        else:
            require_table(validation, "validation")
            require_columns(validation, ["cutout", target], "validation table")
            if _table_bands(validation) != bands:
                msg = (f"validation bands {_table_bands(validation)!r} differ from the "
                       f"training bands {bands!r}")
                raise SchemaError(msg)
            _check_cutouts(validation, bands, size)
            train_rows = rows
            val_rows, val_skipped = self._usable_rows(validation, target)
            val_table = validation
        if len(train_rows) < 2 or len(val_rows) < 2:
            msg = (f"need at least 2 usable training and 2 validation rows, got "
                   f"{len(train_rows)} and {len(val_rows)} (skipped: {skipped})")
            raise ParameterError(msg)
        train_x = self._network_input(table, train_rows, transform, "training input")
        val_x = self._network_input(val_table, val_rows, transform, "validation input")
        train_y = np.asarray(np.ma.getdata(table[target][train_rows]), dtype=np.float64)
        val_y = np.asarray(np.ma.getdata(val_table[target][val_rows]), dtype=np.float64)
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
                resume=self.resume, progress=self.progress)
            model.cpu().eval()
            models.append(model)
            history = result.history
            history.add_column(np.full(len(history), member), name="member", index=0)
            histories.append(history)
            best_epochs.append(result.best_epoch)

        from astropy.table import vstack

        self.config_ = config
        self.bands_ = bands
        self.target_ = target
        self.target_mean_, self.target_std_ = mean, std
        self.models_ = models
        self._inference_cache = {}
        self.history_ = vstack(histories) if len(histories) > 1 else histories[0]
        self.err_scale_, self.err_constant_ = None, None
        value, spread = self._predict_array(val_x, precision=self._inference_precision(),
                                            compile=False)
        residual = np.abs(value - val_y)
        if self._has_spread():
            if self.calibrate_errors:
                self.err_scale_, self.err_constant_ = _fit_error_model(residual, spread)
            else:
                self.err_scale_, self.err_constant_ = 1.0, 0.0
            err = _combined_error(spread, self.err_scale_, self.err_constant_)
        else:
            self.err_constant_ = float(np.quantile(residual, ONE_SIGMA))
            err = np.full(len(value), self.err_constant_)
        from gpm_astro.metrics import summarize

        self.validation_metrics_ = summarize(value, val_y, err)
        self.training_summary_ = {
            "n_rows": len(table), "n_train": int(len(train_rows)),
            "n_validation": int(len(val_rows)), "skipped": skipped,
            "validation_skipped": val_skipped, "target": target,
            "target_mean": float(train_y.mean()), "target_std": float(train_y.std()),
            "target_range": [float(train_y.min()), float(train_y.max())],
            "best_epochs": best_epochs, "seed": int(self.seed), "n_ensemble": self.n_ensemble,
            "bands": bands, "cutout_size": size,
        }
        return self

    # ------------------------------------------------------------------ inference
    def _has_spread(self):
        drop = bool(self.config_.drop_stages) and self.config_.drop_prob > 0
        return self.n_ensemble > 1 or (self.mc_passes > 1 and drop)

    def _inference_precision(self, requested=None):
        """``requested`` (default: the estimator's ``precision``) resolved for this device;
        "mixed" needs no resolution, it is an inference-only choice."""
        requested = self.precision if requested is None else requested
        device = resolve_device(self.device)
        return "mixed" if requested == "mixed" else resolve_precision(requested, device)

    def _inference_parts(self, member, device, precision, compile_model):
        """(trunk, tail) modules of one network placed for inference, cached."""
        mc = self._has_spread() and self.mc_passes > 1
        key = (member, str(device), precision, bool(compile_model), mc)
        cache = self.__dict__.setdefault("_inference_cache", {})
        if key not in cache:
            model = self.models_[member].to(device).eval()
            channels_last = device.type == "cuda" or precision in ("bf16", "mixed")
            if precision == "mixed":
                # a BN-folded copy: fp32 ILO, first bottleneck and head, bf16 elsewhere
                model = mixed_precision_copy(model, fp32_blocks=MIXED_FP32_BLOCKS)
            elif channels_last:
                model = model.to(memory_format=torch.channels_last)
            split = next((i for i, stage in enumerate(model.dho)
                          if any(getattr(m, "dropblock", None) is not None for m in stage)),
                         len(model.dho))
            trunk = torch.nn.Sequential(model.ilo, *model.dho[:split])
            tail = torch.nn.Sequential(*model.dho[split:], model.pg)
            if compile_model:
                trunk = torch.compile(trunk)
                if not mc:
                    # a compiled graph does not follow DropBlock's Monte-Carlo switch, so the
                    # stochastic tail stays eager when MC passes are drawn
                    tail = torch.compile(tail)
            cache[key] = (model, trunk, tail, channels_last)
        return cache[key]

    def _forward_batch_size(self, device):
        value = self.predict_batch_size
        if isinstance(value, str) and value == "auto":
            return CPU_FORWARD_BATCH if device.type == "cpu" else GPU_FORWARD_BATCH
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            msg = f'predict_batch_size must be a positive integer or "auto", got {value!r}'
            raise ParameterError(msg)
        return int(value)

    def _predict_array(self, x, *, precision, compile, offset=0):
        """Value and spread (target units) for network input ``x``.

        The value is the mean over ensemble members of the deterministic pass (DropBlock off),
        so a row's value never depends on the other rows of its batch. The spread is the
        standard deviation over all stochastic draws: ``mc_passes`` DropBlock passes per
        member (or the members' deterministic passes when ``mc_passes`` is 1).
        """
        device = resolve_device(self.device)
        passes = self.mc_passes if self._has_spread() and self.mc_passes > 1 else 0
        values, spreads = [], []
        batch = self._forward_batch_size(device)
        cuda_devices = [device] if device.type == "cuda" else []
        for start in range(0, len(x), batch):
            xb = torch.as_tensor(x[start:start + batch]).to(device)
            deterministic, draws = [], []
            # MC passes draw from a stream seeded by (seed, row offset): reproducible output
            with torch.random.fork_rng(devices=cuda_devices):
                torch.manual_seed(int(np.random.SeedSequence(
                    [int(self.seed), offset + start]).generate_state(1)[0]))
                for member in range(len(self.models_)):
                    det, mc = self._member_draws(member, xb, device, precision, compile,
                                                 passes)
                    deterministic.append(det)
                    draws.extend(mc)
            det = torch.stack(deterministic).double().numpy()
            det = det * self.target_std_ + self.target_mean_
            values.append(det.mean(axis=0))
            if draws:
                draws = torch.stack(draws).double().numpy() * self.target_std_
                spreads.append(draws.std(axis=0))
            else:
                spreads.append(det.std(axis=0))
        if not values:
            return np.empty(0), np.empty(0)
        return np.concatenate(values), np.concatenate(spreads)

    def _member_draws(self, member, xb, device, precision, compile_model, passes):
        """Deterministic output and ``passes`` DropBlock draws (network scale) of one member."""
        model, trunk, tail, channels_last = self._inference_parts(
            member, device, precision, compile_model)
        xin = xb.contiguous(memory_format=torch.channels_last) if channels_last else xb
        draws = []
        with torch.inference_mode(), _autocast(device, precision):
            features = trunk(xin)
            deterministic = tail(features).float().squeeze(1).cpu()
            model.set_mc_dropout(True)
            try:
                for _ in range(passes):
                    draws.append(tail(features).float().squeeze(1).cpu())
            finally:
                model.set_mc_dropout(False)
        return deterministic, draws

    def predict(self, table, *, batch_size=None, precision=None, compile=None, progress=None):
        """Predict one value and its 1-sigma error per row, streaming the table in batches.

        Parameters
        ----------
        table : astropy.table.Table
            Needs ``cutout`` with the bands and size the model was trained on.
        batch_size : int, optional
            Rows loaded and transformed at a time (default: 256, or ``predict_batch_size``
            if that is larger); each block goes through the network ``predict_batch_size``
            images at a time.
        precision : str, optional
            ``"fp32"``, ``"bf16"`` autocast, or ``"mixed"``: BatchNorm folded into the
            convolutions, the ILO block, the first bottleneck, the second one's input
            convolutions and the head in fp32, the rest (91 % of the arithmetic) in bf16;
            with ``compile=True`` on a CPU with AVX-512 bf16, 4.2x the plain fp32 eager rate
            at batch 64 (1.7x fp32 + compile) at max |dZ| 0.0026 dex on a trained network
            (docs/gpm_resnet.rst). Default: the estimator's ``precision``.
        compile : bool, optional
            ``torch.compile`` the network (default: the estimator's ``compile``).
        progress : bool, optional
            Progress bar (default: the estimator's ``progress``).

        Returns
        -------
        astropy.table.Table
            ``len(table)`` rows in order: ``{output}_pred`` (masked where no prediction),
            ``{output}_pred_err``, ``{output}_pred_flag`` (``ok``, ``preprocess:<reason>``,
            ``missing_cutout`` or ``invalid_pixels``).

        Raises
        ------
        GPMAstroError
            If the estimator is not fitted.
        SchemaError
            Missing ``cutout`` column, or cutouts of another shape or band set.
        """
        self._check_fitted()
        require_table(table)
        require_columns(table, ["cutout"], f"{type(self).__name__}.predict")
        bands = _table_bands(table)
        _check_cutouts(table, bands, self.config_.cutout_size)
        transform = InputTransform(self.config_, bands)
        if precision is not None and precision not in PREDICT_PRECISIONS:
            msg = f"precision must be one of {PREDICT_PRECISIONS}, got {precision!r}"
            raise ParameterError(msg)
        precision = self._inference_precision(precision)
        compile_model = self.compile if compile is None else compile
        if batch_size is None:
            batch_size = max(LOAD_ROWS, self._forward_batch_size(resolve_device(self.device)))
        require_positive_int(batch_size, "batch_size")
        progress = self.progress if progress is None else progress
        n = len(table)
        values = np.full(n, np.nan)
        errors = np.full(n, np.nan)
        flags = np.full(n, "ok", dtype=object)
        for start in tqdm(range(0, n, batch_size), desc=f"predict {self.name}", unit="batch",
                          disable=not progress or n <= batch_size):
            rows = np.arange(start, min(start + batch_size, n))
            images = table["cutout"][rows]
            batch_flags = _row_flags(table, rows, images)
            flags[rows] = batch_flags
            good = batch_flags == "ok"
            if not good.any():
                continue
            x = transform(np.ma.getdata(images)[good]).numpy()
            value, spread = self._predict_array(x, precision=precision, compile=compile_model,
                                                offset=start)
            values[rows[good]] = value
            if self.err_scale_ is not None:
                errors[rows[good]] = _combined_error(spread, self.err_scale_,
                                                     self.err_constant_)
            else:
                errors[rows[good]] = self.err_constant_
        unpredicted = flags != "ok"
        column = self.output_column
        out = Table()
        out[column] = MaskedColumn(values, mask=unpredicted, unit=self.output_unit,
                                   description=f"GPM-ResNet prediction of {self.target_}")
        out[f"{column}_err"] = MaskedColumn(errors, mask=unpredicted, unit=self.output_unit,
                                            description="1-sigma error (calibrated spread)")
        out[f"{column}_flag"] = Column(flags.astype(str), description="ok or reason")
        record_step(out, f"{self.name}.predict", precision=precision, compile=compile_model,
                    mc_passes=self.mc_passes, n_ensemble=len(self.models_),
                    batch_size=batch_size, err_scale=self.err_scale_,
                    err_constant=self.err_constant_, n_predicted=int((~unpredicted).sum()))
        return out

    # ------------------------------------------------------------------ persistence
    def model_card(self):
        """The JSON-able description saved next to the weights."""
        self._check_fitted()
        return {
            "format": CARD_FORMAT,
            "estimator": self.name,
            "output": self.output,
            "output_unit": self.output_unit,
            "target": self.target_,
            "architecture": self.config_.to_dict(),
            "input": {"bands": self.config_.bands, "table_bands": self.bands_,
                      "input_scaling": self.config_.input_scaling,
                      "asinh_softening": self.config_.asinh_softening,
                      "cutout_size": self.config_.cutout_size,
                      "input_size": self.config_.input_size, "flux_unit": "nanomaggy"},
            "target_standardization": {"mean": self.target_mean_, "std": self.target_std_},
            "uncertainty": {"n_ensemble": len(self.models_), "mc_passes": self.mc_passes,
                            "err_scale": self.err_scale_, "err_constant": self.err_constant_},
            "training_data": self.training_summary_,
            "metrics": {"validation": self.validation_metrics_},
            "package_version": package_version(),
            "torch_version": torch.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
        }

    def save(self, directory):
        """Write ``model.safetensors``, ``model_card.json`` and the loss history (CSV, PNG).

        Parameters
        ----------
        directory : str or path-like
            Created if needed; existing files of the same names are replaced.

        Returns
        -------
        pathlib.Path
            The weights file. Its sha256 is in the card (``weights_sha256``).
        """
        from safetensors.torch import save_file

        from gpm_astro.weights import sha256_of

        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        card = self.model_card()
        tensors = {}
        for member, model in enumerate(self.models_):
            for key, value in model.state_dict().items():
                tensors[f"member{member}.{key}"] = value.detach().cpu().contiguous()
        weights_path = directory / WEIGHTS_FILE
        tmp = weights_path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"format": CARD_FORMAT,
                                               "model_card": json.dumps(card)})
        os.replace(tmp, weights_path)
        card["weights_file"] = WEIGHTS_FILE
        card["weights_sha256"] = sha256_of(weights_path)
        (directory / CARD_FILE).write_text(json.dumps(card, indent=2))
        write_history(self.history_, str(directory / HISTORY_CSV))
        plot_history(self.history_, str(directory / HISTORY_PNG),
                     title=f"{self.name} ({self.config_.name})")
        return weights_path

    @classmethod
    def load(cls, path_or_name, *, sha256=None, device="auto", **params):
        """Load a saved model without unpickling anything.

        Parameters
        ----------
        path_or_name : str or path-like
            A directory written by `save`, a ``.safetensors`` file (its card is read from the
            file's metadata), a registered weights name (`gpm_astro.weights`), or a URL.
        sha256 : str, optional
            Expected digest of the weights file (needed for a bare URL).
        device : str, optional
            Device for prediction.
        **params
            Other constructor parameters (e.g. ``mc_passes``, ``predict_batch_size``).

        Returns
        -------
        GPMResNetEstimator

        Raises
        ------
        WeightsError
            Missing files, weights whose sha256 differs from the card or registry, or a card
            for another estimator.
        """
        from safetensors import safe_open
        from safetensors.torch import load_file

        from gpm_astro.weights import fetch_weights, sha256_of

        path = Path(path_or_name) if isinstance(path_or_name, (str, os.PathLike)) else None
        if path is None:
            raise WeightsError(f"weights must be a path or a name, got {path_or_name!r}")
        card = None
        if path.is_dir():
            card_path = path / CARD_FILE
            if not card_path.is_file():
                raise WeightsError(f"{str(path)!r} has no {CARD_FILE}")
            card = json.loads(card_path.read_text())
            weights_path = path / card.get("weights_file", WEIGHTS_FILE)
            if not weights_path.is_file():
                raise WeightsError(f"weights file {str(weights_path)!r} does not exist")
            actual = sha256_of(weights_path)
            if actual != card.get("weights_sha256"):
                msg = (f"sha256 of {str(weights_path)!r} is {actual}, but the model card says "
                       f"{card.get('weights_sha256')!r}; refusing tampered or mismatched weights")
                raise WeightsError(msg)
        elif path.is_file():
            weights_path = path
            if sha256 is not None:
                weights_path = Path(fetch_weights(str(path), sha256=sha256))
        else:
            weights_path = Path(fetch_weights(str(path_or_name), sha256=sha256))
        try:
            with safe_open(str(weights_path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(f"cannot read weights {str(weights_path)!r}: {exc}") from exc
        if card is None:
            if metadata.get("format") != CARD_FORMAT or "model_card" not in metadata:
                msg = f"{str(weights_path)!r} holds no {CARD_FORMAT} model card"
                raise WeightsError(msg)
            card = json.loads(metadata["model_card"])
        if card.get("output") != cls.output:
            msg = (f"the weights predict {card.get('output')!r} ({card.get('estimator')!r}); "
                   f"{cls.__name__} predicts {cls.output!r}")
            raise WeightsError(msg)
        config = GPMResNetConfig.from_dict(card["architecture"])
        uncertainty = card["uncertainty"]
        params.setdefault("mc_passes", uncertainty["mc_passes"])
        estimator = cls(config=config, n_ensemble=uncertainty["n_ensemble"], device=device,
                        **params)
        models = []
        for member in range(uncertainty["n_ensemble"]):
            prefix = f"member{member}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            model = GPMResNet(config)
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise WeightsError(f"weights do not fit the card's architecture: {exc}") from exc
            models.append(model.eval())
        estimator.config_ = config
        estimator.bands_ = card["input"]["table_bands"]
        estimator.target_ = card["target"]
        estimator.target_mean_ = card["target_standardization"]["mean"]
        estimator.target_std_ = card["target_standardization"]["std"]
        estimator.err_scale_ = uncertainty["err_scale"]
        estimator.err_constant_ = uncertainty["err_constant"]
        estimator.training_summary_ = card["training_data"]
        estimator.validation_metrics_ = card["metrics"]["validation"]
        estimator.models_ = models
        estimator._inference_cache = {}
        history_path = weights_path.parent / HISTORY_CSV
        if history_path.is_file():
            estimator.history_ = Table.read(str(history_path), format="ascii.csv")
        else:
            estimator.history_ = Table(names=("member", "epoch", "train_loss", "val_loss"))
        return estimator


class GPMResNetMassEstimator(GPMResNetEstimator):
    """Stellar mass log10(M*/Msun) from g, r, z cutouts with GPM-ResNet (paper §4.6).

    The same network and training as `GPMResNetEstimator`, trained by default on the MPA-JHU
    fibre mass ``lgm_fib_p50``; predictions go to ``logmstar_pred`` (``_err``, ``_flag``), the
    input of the ``mass_metallicity`` estimator.

    Examples
    --------
    >>> from gpm_astro_plugins.gpm_resnet import GPMResNetMassEstimator
    >>> GPMResNetMassEstimator().output_column
    'logmstar_pred'
    """

    name = "gpm_resnet_mass"
    output = "logmstar"
    output_unit = "dex(solMass)"
    default_target = "lgm_fib_p50"


def _combined_error(spread, scale, constant):
    """Per-galaxy error: the scaled stochastic spread added in quadrature to a constant."""
    return np.hypot(scale * np.asarray(spread), constant or 0.0)


def _fit_error_model(residual, spread):
    """Fit ``err = hypot(a * spread, b)`` to validation residuals.

    ``a`` and ``b`` maximise the Gaussian likelihood of the residuals; both are then scaled
    together so that exactly 68.27 % of the validation residuals lie within the error. ``b``
    absorbs the scatter the stochastic passes do not see (a galaxy whose passes agree still
    gets an honest error).
    """
    from scipy.optimize import minimize

    residual = np.asarray(residual, dtype=float)
    spread = np.asarray(spread, dtype=float)
    rms = float(np.sqrt(np.mean(residual ** 2))) or 1e-6

    def negative_log_likelihood(log_params):
        a, b = np.exp(log_params)
        variance = (a * spread) ** 2 + b ** 2 + 1e-12
        return float(np.sum(np.log(variance) + residual ** 2 / variance))

    start = np.log([1.0, 0.5 * rms])
    a, b = np.exp(minimize(negative_log_likelihood, start, method="Nelder-Mead").x)
    ratio = residual / np.maximum(_combined_error(spread, a, b), 1e-12)
    factor = float(np.quantile(ratio, ONE_SIGMA))
    return float(a * factor), float(b * factor)
