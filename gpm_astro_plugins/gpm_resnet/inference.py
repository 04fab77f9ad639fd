"""GPM-ResNet's inference engine: cached (optionally compiled, mixed-precision) networks,
Monte-Carlo DropBlock draws, and `predict` streaming a table in batches."""

import warnings

import numpy as np
import torch
from astropy.table import Column, MaskedColumn, Table
from tqdm.auto import tqdm

from gpm_astro.exceptions import GPMAstroWarning, ParameterError
from gpm_astro.tables import (record_step, require_positive_int, require_table,
                              with_column_names)

from .error_model import error_shape_shift
from .model import FeatureTail, InputTransform, mixed_precision_copy
from .seeing import BAD_SEEING_FLAG, SEEING_COLUMN, seeing_offset, table_seeing
from .table_inputs import _check_cutouts, _row_flags, _table_bands
from .domain import image_quantities, table_redshift
from .training import (LOG_VARIANCE_RANGE, _autocast, dihedral_view, resolve_device,
                       resolve_precision)

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


def _import_compile_dependencies():
    """Import what ``torch.compile`` loads on its first call, without torch's own noise.

    Its inductor backend imports ``torch.utils.mkldnn``, whose modules use the deprecated
    ``torch.jit.script_method`` and so raise DeprecationWarnings from inside torch that a user
    cannot act on. Importing that module once here, with exactly that warning silenced, keeps
    predict(compile=True) quiet; any other warning still shows.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated",
                                category=DeprecationWarning)
        import torch.utils.mkldnn  # noqa: F401


class InferenceMixin:
    """`predict` and the inference engine, for `GPMResNetEstimator`."""

    # ------------------------------------------------------------------ inference
    def _has_spread(self):
        """Whether galaxies get their own spread (error head, ensemble or MC DropBlock)."""
        drop = bool(self.config_.drop_stages) and self.config_.drop_prob > 0
        return (self.config_.error_head or self.n_ensemble > 1
                or (self.mc_passes > 1 and drop))

    def _mc_passes(self):
        """Monte-Carlo DropBlock passes drawn per member (none with an error head)."""
        drop = bool(self.config_.drop_stages) and self.config_.drop_prob > 0
        if self.config_.error_head or not drop or self.mc_passes <= 1:
            return 0
        return self.mc_passes

    def _inference_precision(self, requested=None):
        """``requested`` (default: the estimator's ``precision``) resolved for this device;
        "mixed" needs no resolution, it is an inference-only choice."""
        requested = self.precision if requested is None else requested
        device = resolve_device(self.device)
        return "mixed" if requested == "mixed" else resolve_precision(requested, device)

    def _inference_parts(self, member, device, precision, compile_model):
        """(model, trunk, tail, head, channels_last) of one network placed for inference, cached.

        ``trunk`` runs up to the first stage with DropBlock, ``tail(hidden, side)`` from there
        to the penultimate-layer features (``side``: ``model.side_input`` of the batch, or
        None), ``head`` the last linear layer."""
        mc = self._mc_passes() > 0
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
            tail = FeatureTail(model, split)
            head = model.pg[-1]
            if compile_model:
                _import_compile_dependencies()
                trunk = torch.compile(trunk)
                if not mc:
                    # a compiled graph does not follow DropBlock's Monte-Carlo switch, so the
                    # stochastic tail stays eager when MC passes are drawn
                    tail = torch.compile(tail)
            cache[key] = (model, trunk, tail, head, channels_last)
        return cache[key]

    def _forward_batch_size(self, device):
        value = self.predict_batch_size
        if isinstance(value, str) and value == "auto":
            return CPU_FORWARD_BATCH if device.type == "cpu" else GPU_FORWARD_BATCH
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            msg = f'predict_batch_size must be a positive integer or "auto", got {value!r}'
            raise ParameterError(msg)
        return int(value)

    def _predict_array(self, x, *, precision, compile, offset=0, features=False):
        """Value, spread (target units) and, if asked, features for network input ``x``.

        The value is the mean over ensemble members of the deterministic pass (DropBlock off;
        averaged over the eight flips and rotations with test-time augmentation), so a row's
        value never depends on the other rows of its batch. The spread is, with an error head,
        sqrt(mean of the members' predicted variances + variance of their values); otherwise
        the standard deviation over all stochastic draws: ``mc_passes`` DropBlock passes per
        member (or the members' deterministic passes when ``mc_passes`` is 1). ``features``
        asks for the first member's penultimate-layer features (untransformed cutout).
        """
        device = resolve_device(self.device)
        passes = self._mc_passes()
        values, spreads, feature_rows = [], [], []
        batch = self._forward_batch_size(device)
        cuda_devices = [device] if device.type == "cuda" else []
        for start in range(0, len(x), batch):
            xb = torch.as_tensor(x[start:start + batch]).to(device)
            deterministic, variances, draws = [], [], []
            # MC passes draw from a stream seeded by (seed, row offset): reproducible output
            with torch.random.fork_rng(devices=cuda_devices):
                torch.manual_seed(int(np.random.SeedSequence(
                    [int(self.seed), offset + start]).generate_state(1)[0]))
                for member in range(len(self.models_)):
                    det, log_variance, mc, member_features = self._member_draws(
                        member, xb, device, precision, compile, passes,
                        features and member == 0)
                    deterministic.append(det)
                    variances.append(log_variance)
                    draws.extend(mc)
                    if member_features is not None:
                        feature_rows.append(member_features)
            det = torch.stack(deterministic).double().numpy()
            det = det * self.target_std_ + self.target_mean_
            values.append(det.mean(axis=0))
            if self.config_.error_head:
                variance = np.exp(torch.stack(variances).double().numpy()).mean(axis=0)
                spreads.append(np.sqrt(variance * self.target_std_ ** 2 + det.var(axis=0)))
            elif draws:
                draws = torch.stack(draws).double().numpy() * self.target_std_
                spreads.append(draws.std(axis=0))
            else:
                spreads.append(det.std(axis=0))
        if not values:
            out = (np.empty(0), np.empty(0))
            width = self.config_.head_hidden
            return out + (np.empty((0, width), np.float32),) if features else out
        out = (np.concatenate(values), np.concatenate(spreads))
        if features:
            out = out + (torch.cat(feature_rows).numpy(),)
        return out

    def _member_draws(self, member, xb, device, precision, compile_model, passes,
                      features=False):
        """One member's deterministic value, log-variance (None without an error head),
        ``passes`` DropBlock draws (network scale) and, if asked, features."""
        model, trunk, tail, head, channels_last = self._inference_parts(
            member, device, precision, compile_model)
        views = range(8) if self.config_.test_time_augmentation else range(1)
        draws = []
        outputs, kept = [], None
        with torch.inference_mode(), _autocast(device, precision):
            # the aperture photometry is the same in every view: measured once
            side = model.side_input(xb)
            for view in views:
                xv = dihedral_view(xb, view)
                xin = xv.contiguous(memory_format=torch.channels_last) if channels_last else xv
                hidden = trunk(xin)
                last = tail(hidden, side)
                outputs.append(head(last).float().cpu())
                if view == 0:
                    trunk_features, kept = hidden, last.float().cpu()
            model.set_mc_dropout(True)
            try:
                for _ in range(passes):
                    draws.append(head(tail(trunk_features, side)).float()[:, 0].cpu())
            finally:
                model.set_mc_dropout(False)
        output = torch.stack(outputs).mean(dim=0)
        log_variance = None
        if self.config_.error_head:
            # the average variance over the views, as a log
            variances = torch.stack(outputs)[:, :, 1].clamp(*LOG_VARIANCE_RANGE).exp()
            log_variance = variances.mean(dim=0).log()
        return output[:, 0], log_variance, draws, (kept if features else None)

    def check_table(self, table):
        """`SchemaError` unless ``table["cutout"]`` is (n, bands, S, S) in nanomaggies with
        the model's bands and cutout size (see `gpm_astro.base.Estimator.check_table`);
        `ParameterError` for a prediction setting out of range (``mc_passes``,
        ``predict_batch_size``), so that it fails before any row, as a catalogue run asks."""
        self._check_fitted()
        require_positive_int(self.mc_passes, "mc_passes")
        self._forward_batch_size(torch.device("cpu"))  # checks predict_batch_size
        table = with_column_names(table, ["cutout"], f"{type(self).__name__}.predict")
        _check_cutouts(table, _table_bands(table), self.config_.cutout_size)

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
            ``len(table)`` rows in order: ``{output}_pred`` (masked where no prediction;
            with the model's seeing correction, `seeing`, when the table has ``psfsize``: a
            `GPMAstroWarning` says when it has not), ``{output}_pred_err``,
            ``{output}_pred_flag`` (``ok``, ``preprocess:<reason>``, one of
            `gpm_astro.image_checks.IMAGE_FLAGS`, or ``bad_psfsize`` for a corrected model and
            a row without a usable PSF FWHM), and for models with a domain model
            (`gpm_astro_plugins.gpm_resnet.domain`) ``{output}_pred_domain`` (a score, above 1
            outside the training domain) and ``{output}_pred_domain_flag`` (``in`` or
            ``out:<checks>``).

        Raises
        ------
        GPMAstroError
            If the estimator is not fitted.
        SchemaError
            Missing ``cutout`` column, or cutouts of another shape or band set.
        """
        self._check_fitted()
        require_positive_int(self.mc_passes, "mc_passes")  # 0 or -1 was one pass, silently
        require_table(table)
        table = with_column_names(table, ["cutout"], f"{type(self).__name__}.predict")
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
        domain = getattr(self, "domain_", None)
        shape = getattr(self, "err_shape_", None)
        scores = np.full(n, np.nan)
        domain_flags = np.full(n, "", dtype=object)
        redshift, _ = table_redshift(table) if domain is not None else (None, None)
        if domain is not None and redshift is None and "redshift" in domain.ranges:
            low, high = domain.ranges["redshift"]
            warnings.warn(
                f"this model was trained on redshifts {low:.3g}-{high:.3g} "
                f"({domain.redshift_column!r}); the table has no redshift column "
                f"(z_phot_median or z), so no row's domain flag checks the redshift",
                GPMAstroWarning, stacklevel=2)
        correction = getattr(self, "seeing_correction_", None)
        seeing, seeing_applied = None, "none fitted"
        if correction is not None and not self.seeing_correction:
            correction, seeing_applied = None, "switched off (seeing_correction=False)"
        if correction is not None or (domain is not None and "psfsize" in domain.ranges):
            seeing = table_seeing(table, np.arange(n), bands)
        if correction is not None and seeing is None:
            warnings.warn(
                f"this model corrects its predictions for the seeing with the "
                f"{SEEING_COLUMN!r} column (PSF FWHM, arcsec), which the table lacks: Z_pred "
                f"is not corrected (the correction is {correction['slope']:+.2f} dex per "
                f"arcsec of FWHM)", GPMAstroWarning, stacklevel=2)
            correction, seeing_applied = None, f"not applied: no {SEEING_COLUMN} column"
        elif correction is not None:
            seeing_applied = "applied"
        for start in tqdm(range(0, n, batch_size), desc=f"predict {self.name}", unit="batch",
                          disable=not progress or n <= batch_size):
            rows = np.arange(start, min(start + batch_size, n))
            images = table["cutout"][rows]
            batch_flags = _row_flags(table, rows, images)
            if correction is not None:
                batch_flags[(batch_flags == "ok") & np.isnan(seeing[rows])] = BAD_SEEING_FLAG
            flags[rows] = batch_flags
            good = batch_flags == "ok"
            if not good.any():
                continue
            raw = np.ma.getdata(images)[good]
            x = transform(raw).numpy()
            value, spread, *features = self._predict_array(
                x, precision=precision, compile=compile_model, offset=start,
                features=domain is not None)
            if correction is not None:
                value = value + seeing_offset(seeing[rows[good]], correction)
            values[rows[good]] = value + error_shape_shift(value, shape)
            if domain is not None:
                quantities = image_quantities(raw, bands)
                if redshift is not None:
                    quantities["redshift"] = redshift[rows[good]]
                if seeing is not None:
                    quantities["psfsize"] = seeing[rows[good]]
                scores[rows[good]], domain_flags[rows[good]] = domain.score(quantities,
                                                                            features[0])
            errors[rows[good]] = self._errors(value, spread)
        unpredicted = flags != "ok"
        column = self.output_column
        out = Table()
        out[column] = MaskedColumn(values, mask=unpredicted, unit=self.output_unit,
                                   description=f"GPM-ResNet prediction of {self.target_}")
        out[f"{column}_err"] = MaskedColumn(errors, mask=unpredicted, unit=self.output_unit,
                                            description="1-sigma error (calibrated spread)")
        out[f"{column}_flag"] = Column(flags.astype(str), description="ok or reason")
        if domain is not None:
            out[f"{column}_domain"] = MaskedColumn(
                scores, mask=unpredicted,
                description="distance from the training domain (above 1: outside)")
            out[f"{column}_domain_flag"] = Column(
                np.where(unpredicted, "", domain_flags).astype(str),
                description="'in', or 'out:' and the checks failed (see docs/gpm_resnet.rst)")
        record_step(out, f"{self.name}.predict", precision=precision, compile=compile_model,
                    mc_passes=self.mc_passes, n_ensemble=len(self.models_),
                    batch_size=batch_size, seeing_correction=seeing_applied,
                    err_scale=self.err_scale_,
                    err_constant=self.err_constant_,
                    err_shape_knots=len((getattr(self, "err_shape_", None) or {}).get(
                        "knots", [])), n_predicted=int((~unpredicted).sum()),
                    weights_check=getattr(self, "weights_check_", "trained in this session"),
                    n_outside_domain=int(np.sum(np.char.startswith(
                        domain_flags.astype(str), "out"))) if domain is not None else None)
        return out
