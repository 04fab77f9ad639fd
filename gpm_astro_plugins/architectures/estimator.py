"""The comparison architectures as gpm_astro estimators (the paper's Table 1, §4.2).

`ArchitectureEstimator` trains one of the networks of `networks.ARCHITECTURES` exactly as
GPM-ResNet is trained: the same input transform (band selection, resize, flux scaling) and the
same training loop (`gpm_astro_plugins.gpm_resnet.training.train_network`: MSE, Adam, StepLR,
best validation epoch), with the recipe of a GPM-ResNet configuration (``recipe``). Only the
network differs, so a comparison measures the architecture. One subclass per architecture is
registered (``resnet34``, ``resnet50``, ``resnet101``, ``mobilenet_v2``, ``efficientnet_b0``,
``densenet121``).

The error ``Z_pred_err`` is one number for every galaxy: the 68.3rd percentile of
``|pred - true|`` on the validation rows.
"""

import time

import numpy as np
import torch
from astropy.table import Column, MaskedColumn, Table

from gpm_astro.base import Estimator
from gpm_astro.exceptions import GPMAstroError, ParameterError, SchemaError
from gpm_astro.tables import (missing_mask, record_step, require_columns, require_positive_int,
                              require_table)
from gpm_astro_plugins.gpm_resnet.fitting import split_validation, training_config
from gpm_astro_plugins.gpm_resnet.model import InputTransform
from gpm_astro_plugins.gpm_resnet.table_inputs import _check_cutouts, _row_flags, _table_bands
from gpm_astro_plugins.gpm_resnet.training import resolve_device, train_network

from .common import count_parameters
from .networks import build_network

__all__ = ["ArchitectureEstimator", "ResNet34Estimator", "ResNet50Estimator",
           "ResNet101Estimator", "MobileNetV2Estimator", "EfficientNetB0Estimator",
           "DenseNet121Estimator", "ARCHITECTURE_ESTIMATORS"]

ONE_SIGMA = 0.6827
FORWARD_BATCH = 64


class ArchitectureEstimator(Estimator):
    """Z from g, r, z cutouts with a standard CNN, trained with GPM-ResNet's recipe.

    Subclasses set ``architecture`` (a key of
    `gpm_astro_plugins.architectures.networks.ARCHITECTURES`) and ``name``.

    Parameters
    ----------
    width : float, optional
        Channel multiplier (1 is the reference network; 0.25 trains on a CPU in seconds).
    recipe : str, dict or GPMResNetConfig, optional
        The GPM-ResNet configuration whose input transform (bands, ``input_size``,
        ``input_scaling``) and training (epochs, batch size, learning rate and its schedule,
        weight decay, augmentation, target standardisation) are used; its architecture fields
        are ignored. ``"paper"`` by default, as in the paper's comparison.
    epochs, batch_size, lr : int, int, float, optional
        Override the recipe's values.
    seed : int, optional
        Seeds initialisation, the validation split and every training random stream.
    device : str, optional
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    precision : str, optional
        ``"auto"``, ``"fp32"`` or ``"bf16"`` (training autocast; prediction stays fp32).
    validation_fraction : float, optional
        Share of the usable rows held out when ``fit`` gets no ``validation`` table.
    progress : bool, optional
        Progress bars.

    Attributes
    ----------
    models_ : list of torch.nn.Module
        The trained network (one), on the CPU, in eval mode.
    recipe_ : GPMResNetConfig
        The recipe used (with ``cutout_size`` from the data).
    n_parameters_ : int
        Parameters of the trained network.
    training_seconds_ : float
        Wall time of the training loop.
    err_constant_ : float
        The error given to every prediction (dex).
    history_ : astropy.table.Table
        Per-epoch losses.
    target_, bands_, target_mean_, target_std_ : learned bookkeeping
    """

    architecture = None
    output = "Z"
    output_unit = "dex"
    required_columns = ("cutout",)
    default_target = "oh_p50"
    uses_validation = True

    def __init__(self, *, width=1.0, recipe="paper", epochs=None, batch_size=None, lr=None,
                 seed=0, device="auto", precision="auto", validation_fraction=0.2,
                 progress=True):
        self.width = width
        self.recipe = recipe
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.device = device
        self.precision = precision
        self.validation_fraction = validation_fraction
        self.progress = progress

    def describe(self):
        """E.g. ``'resnet50 at width 0.25, GPM-ResNet recipe ablation_quick'``."""
        recipe = self.recipe if isinstance(self.recipe, str) else getattr(
            self.recipe, "name", None) or dict(self.recipe).get("name", "custom")
        return f"{self.architecture} at width {self.width:g}, GPM-ResNet recipe {recipe}"

    def _resolved_recipe(self):
        return training_config(self.recipe, epochs=self.epochs, batch_size=self.batch_size,
                               lr=self.lr)

    def _check_fitted(self):
        if not hasattr(self, "models_"):
            msg = (f"this {type(self).__name__} is not fitted: call fit(table) first")
            raise GPMAstroError(msg)

    def _usable_rows(self, table, target):
        """Rows with a usable cutout and target."""
        use = ~missing_mask(table[target])
        rows = np.flatnonzero(use)
        keep = np.ones(len(rows), dtype=bool)
        for start in range(0, len(rows), 512):
            part = rows[start:start + 512]
            flags = _row_flags(table, part, table["cutout"][part], what=type(self).__name__)
            keep[start:start + 512] = flags == "ok"
        return rows[keep]

    def _network_input(self, table, rows, transform):
        parts = [transform(np.ma.getdata(table["cutout"][rows[i:i + 256]])).numpy()
                 for i in range(0, len(rows), 256)]
        if not parts:
            size = transform.config.input_size or transform.config.cutout_size
            return np.zeros((0, len(transform.config.bands), size, size), np.float32)
        return np.concatenate(parts)

    @staticmethod
    def _bands(table, expected_size=None):
        bands = _table_bands(table)
        return bands, _check_cutouts(table, bands, expected_size)

    def fit(self, table, *, target=None, validation=None):
        """Train on the rows of ``table`` with a usable cutout and target.

        Parameters
        ----------
        table : astropy.table.Table
            ``cutout`` (n, bands, S, S) in nanomaggies and the ``target`` column.
        target : str, optional
            Column of true values (default ``oh_p50``).
        validation : astropy.table.Table, optional
            Rows for the best-epoch choice and the error; without it ``validation_fraction``
            of the usable rows are held out.

        Returns
        -------
        ArchitectureEstimator
            self, fitted.

        Raises
        ------
        SchemaError
            Missing column or wrong cutout shape.
        ParameterError
            Invalid hyper-parameter or too few usable rows.
        """
        target = self.default_target if target is None else target
        if not 0 < self.validation_fraction < 1:
            msg = f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            raise ParameterError(msg)
        require_table(table)
        require_columns(table, ["cutout", target], f"{type(self).__name__}.fit")
        bands, size = self._bands(table)
        recipe = self._resolved_recipe().replace(cutout_size=size)
        transform = InputTransform(recipe, bands)
        rows = self._usable_rows(table, target)
        if validation is None:
            train_rows, val_rows = split_validation(rows, self.validation_fraction, self.seed)
            val_table = table
        else:
            require_table(validation, "validation")
            require_columns(validation, ["cutout", target], "validation table")
            if self._bands(validation, size)[0] != bands:
                msg = f"validation bands differ from the training bands {bands!r}"
                raise SchemaError(msg)
            val_table, train_rows = validation, rows
            val_rows = self._usable_rows(validation, target)
        if len(train_rows) < 2 or len(val_rows) < 2:
            msg = (f"need at least 2 usable training and 2 validation rows, got "
                   f"{len(train_rows)} and {len(val_rows)}")
            raise ParameterError(msg)
        train_x = self._network_input(table, train_rows, transform)
        val_x = self._network_input(val_table, val_rows, transform)
        train_y = np.asarray(np.ma.getdata(table[target][train_rows]), dtype=np.float64)
        val_y = np.asarray(np.ma.getdata(val_table[target][val_rows]), dtype=np.float64)
        mean, std = 0.0, 1.0
        if recipe.standardize_target:
            mean, std = float(train_y.mean()), float(train_y.std()) or 1.0
        torch.manual_seed(int(self.seed))
        network = build_network(self.architecture, in_channels=len(recipe.bands),
                                width=self.width)
        started = time.perf_counter()
        result = train_network(
            network, train_x, ((train_y - mean) / std).astype(np.float32), val_x,
            ((val_y - mean) / std).astype(np.float32), config=recipe, seed=int(self.seed),
            device=self.device, precision=self.precision, progress=self.progress)
        self.training_seconds_ = time.perf_counter() - started
        self.models_ = [network.cpu().eval()]
        self.recipe_ = recipe
        self.bands_ = bands
        self.target_ = target
        self.target_mean_, self.target_std_ = mean, std
        self.n_parameters_ = count_parameters(network)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        residual = np.abs(self._predict_array(val_x) - val_y)
        self.err_constant_ = float(np.quantile(residual, ONE_SIGMA))
        return self

    def _predict_array(self, x):
        network = self.models_[0]
        device = resolve_device(self.device)
        network.to(device)
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), FORWARD_BATCH):
                batch = torch.as_tensor(x[start:start + FORWARD_BATCH]).to(device)
                out.append(network(batch).float().squeeze(1).cpu().double().numpy())
        network.cpu()
        values = np.concatenate(out) if out else np.empty(0)
        return values * self.target_std_ + self.target_mean_

    def check_table(self, table):
        """`SchemaError` unless ``table["cutout"]`` has the model's bands and size (see
        `gpm_astro.base.Estimator.check_table`)."""
        self._check_fitted()
        require_columns(table, ["cutout"], f"{type(self).__name__}.predict")
        self._bands(table, self.recipe_.cutout_size)

    def predict(self, table, *, batch_size=256):
        """Predict Z and its (constant) 1-sigma error per row.

        Parameters
        ----------
        table : astropy.table.Table
            ``cutout`` with the bands and size the model was trained on.
        batch_size : int, optional
            Rows loaded and transformed at a time.

        Returns
        -------
        astropy.table.Table
            ``Z_pred`` (masked where there is none), ``Z_pred_err``, ``Z_pred_flag``.

        Raises
        ------
        GPMAstroError
            If not fitted.
        SchemaError
            Missing ``cutout`` or cutouts of another shape or band set.
        """
        self._check_fitted()
        require_table(table)
        require_columns(table, ["cutout"], f"{type(self).__name__}.predict")
        require_positive_int(batch_size, "batch_size")
        bands, _ = self._bands(table, self.recipe_.cutout_size)
        transform = InputTransform(self.recipe_, bands)
        n = len(table)
        values = np.full(n, np.nan)
        flags = np.full(n, "ok", dtype=object)
        for start in range(0, n, batch_size):
            rows = np.arange(start, min(start + batch_size, n))
            images = table["cutout"][rows]
            flags[rows] = _row_flags(table, rows, images, what=type(self).__name__)
            good = flags[rows] == "ok"
            if good.any():
                x = transform(np.ma.getdata(images)[good]).numpy()
                values[rows[good]] = self._predict_array(x)
        missing = flags != "ok"
        out = Table()
        column = self.output_column
        out[column] = MaskedColumn(values, mask=missing, unit=self.output_unit,
                                   description=f"{self.architecture} prediction of "
                                               f"{self.target_}")
        out[f"{column}_err"] = MaskedColumn(np.full(n, self.err_constant_), mask=missing,
                                            unit=self.output_unit,
                                            description="1-sigma error (validation residuals)")
        out[f"{column}_flag"] = Column(flags.astype(str), description="ok or reason")
        record_step(out, f"{self.name}.predict", width=self.width,
                    n_parameters=self.n_parameters_, n_predicted=int((~missing).sum()))
        return out


class ResNet34Estimator(ArchitectureEstimator):
    """ResNet-34 (basic blocks 3-4-6-3; 21.8 M parameters at width 1 with 1000 classes)."""

    name = "resnet34"
    architecture = "resnet34"


class ResNet50Estimator(ArchitectureEstimator):
    """ResNet-50 (bottlenecks 3-4-6-3; 25.6 M parameters at width 1 with 1000 classes)."""

    name = "resnet50"
    architecture = "resnet50"


class ResNet101Estimator(ArchitectureEstimator):
    """ResNet-101 (bottlenecks 3-4-23-3; 44.5 M parameters at width 1 with 1000 classes)."""

    name = "resnet101"
    architecture = "resnet101"


class MobileNetV2Estimator(ArchitectureEstimator):
    """MobileNetV2 (inverted residuals; 3.5 M parameters at width 1 with 1000 classes)."""

    name = "mobilenet_v2"
    architecture = "mobilenet_v2"


class EfficientNetB0Estimator(ArchitectureEstimator):
    """EfficientNet-B0 (MBConv with squeeze-excitation; 5.3 M parameters at width 1 with 1000
    classes)."""

    name = "efficientnet_b0"
    architecture = "efficientnet_b0"


class DenseNet121Estimator(ArchitectureEstimator):
    """DenseNet-121 (dense blocks 6-12-24-16; 8.0 M parameters at width 1 with 1000 classes)."""

    name = "densenet121"
    architecture = "densenet121"


#: the registered estimator classes, in the paper's order
ARCHITECTURE_ESTIMATORS = (ResNet34Estimator, ResNet50Estimator, ResNet101Estimator,
                           MobileNetV2Estimator, EfficientNetB0Estimator, DenseNet121Estimator)
