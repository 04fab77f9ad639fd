"""Saving and loading GPM-ResNet models: safetensors weights plus a JSON model card, no pickle."""

import datetime
import json
import math
import numbers
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from gpm_astro.exceptions import GPMAstroError, GPMAstroWarning, WeightsError
from gpm_astro.weights import DIGEST_KEYS
from gpm_astro.tables import package_version

from .domain import DomainModel
from .model import GPMResNet, GPMResNetConfig
from .training import HISTORY_CSV, HISTORY_PNG, plot_history, resolve_device, write_history

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
CARD_FORMAT = "gpm_astro.gpm_resnet/1"


class PersistenceMixin:
    """`model_card`, `save` and `load`, for `GPMResNetEstimator`."""

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
                            "err_scale": self.err_scale_, "err_constant": self.err_constant_,
                            "err_shape": getattr(self, "err_shape_", None),
                            "error_model": self._error_model_name(),
                            "calibration_split": getattr(self, "calibration_split_",
                                                         "validation")},
            "seeing_correction": getattr(self, "seeing_correction_", None),
            "domain": None if getattr(self, "domain_", None) is None else self.domain_.to_card(),
            "caveat": self.caveat,
            "training_data": self.training_summary_,
            "metrics": {"validation": self.validation_metrics_},
            "package_version": package_version(),
            "torch_version": torch.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
        }

    def _error_model_name(self):
        split = getattr(self, "calibration_split_", "validation")
        shape = getattr(self, "err_shape_", None)
        shaped = ""
        if shape:
            corrected = " with a bias correction of Z_pred" if "shift" in shape else ""
            shaped = (f", shaped over Z_pred{corrected} for coverage within quintiles of "
                      f"{', '.join(shape['groups'])}")
        if self.config_.error_head:
            return f"error head (predicted variance), scaled on the {split} rows{shaped}"
        if self._has_spread():
            return (f"Monte-Carlo DropBlock / ensemble spread, scaled on the {split} "
                    f"rows{shaped}")
        return f"constant: 68.3rd percentile of the {split} |residual|{shaped}"

    def save(self, directory):
        """Write ``model.safetensors``, ``model_card.json`` and the loss history (CSV, PNG).

        Parameters
        ----------
        directory : str or path-like
            Created if needed; existing files of the same names are replaced.

        Returns
        -------
        pathlib.Path
            The weights file. Its sha256 is in the card (``weights_sha256``); the card embedded
            in it records ``content_sha256`` (`gpm_astro.weights.model_digest` of the card and
            every tensor), which `load` checks, so editing either is detected.
        """
        from safetensors.torch import save_file

        from gpm_astro.io import atomic_file
        from gpm_astro.weights import model_digest, sha256_of

        self._check_fitted()
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file of that name, a file above it, no permission
            what = "it is a file, not a folder" if directory.is_file() else exc
            raise WeightsError(f"cannot save the model into {str(directory)!r}: {what}") from exc
        card = self.model_card()
        tensors = {}
        for member, model in enumerate(self.models_):
            for key, value in model.state_dict().items():
                tensors[f"member{member}.{key}"] = value.detach().cpu().contiguous()
        if getattr(self, "domain_", None) is not None:
            for key, value in self.domain_.tensors().items():
                tensors[key] = torch.as_tensor(value).contiguous()
        card["content_sha256"] = model_digest(card, tensors)
        weights_path = directory / WEIGHTS_FILE
        with atomic_file(weights_path) as tmp:
            save_file(tensors, tmp, metadata={"format": CARD_FORMAT,
                                              "model_card": json.dumps(card)})
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
            With ``weights_check_``: ``"sha256"`` (the file matched a checksum given from
            outside: ``sha256=`` or the registry), ``"content"`` (the weights and card matched
            the content checksum the card records) or ``"none"`` (a file saved without one:
            an `~gpm_astro.exceptions.UnverifiedWeightsWarning` says so). Predictions record it.

        Raises
        ------
        WeightsError
            Missing files; weights whose sha256 differs from the card or registry; weights or
            a card that differ from their content checksum (a flipped byte, an edited target
            mean); a ``model_card.json`` that differs from the card inside the weights file; a
            card that is not JSON, lacks an entry, is for another estimator, is of another
            format version than `CARD_FORMAT` (written by a newer or older gpm_astro) or holds
            values ``save`` never writes (a target std that is not positive, an error model or
            seeing correction that is not numbers); tensors that do not fit the card's network
            or domain model, or hold NaN. Every message names the file.
        ParameterError
            A ``device`` this machine lacks (``"cuda"`` without CUDA) or cannot name.
        """
        from safetensors import safe_open
        from safetensors.torch import load_file

        from gpm_astro.weights import (check_model_digest, fetch_weights, read_model_card,
                                       sha256_of)

        path = Path(path_or_name) if isinstance(path_or_name, (str, os.PathLike)) else None
        if path is None:
            raise WeightsError(f"weights must be a path or a name, got {path_or_name!r}")
        resolve_device(device)  # device="cuda" without CUDA: said now, not at the first predict
        card = None
        verified_by_sha256 = False
        if path.is_dir():
            card_path = path / CARD_FILE
            if not card_path.is_file():
                raise WeightsError(f"{str(path)!r} has no {CARD_FILE}")
            card = read_model_card(card_path.read_text(), str(card_path))
            weights_path = path / str(card.get("weights_file", WEIGHTS_FILE))
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
                verified_by_sha256 = True
        else:
            weights_path = Path(fetch_weights(str(path_or_name), sha256=sha256))
            verified_by_sha256 = True
        try:
            with safe_open(str(weights_path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(f"cannot read weights {str(weights_path)!r}: {exc}") from exc
        embedded = None
        if "model_card" in metadata:
            _check_format(metadata.get("format"), str(weights_path))
            embedded = read_model_card(metadata["model_card"], str(weights_path))
        if card is None:
            if embedded is None:
                msg = (f"{str(weights_path)!r} holds no {CARD_FORMAT} model card: it is no "
                       f"weights file written by {cls.__name__}.save")
                raise WeightsError(msg)
            card = embedded
        elif embedded is not None and _without_file_keys(card) != _without_file_keys(embedded):
            changed = sorted(k for k in set(card) | set(embedded)
                             if k not in DIGEST_KEYS and card.get(k) != embedded.get(k))
            msg = (f"{str(path / CARD_FILE)!r} differs from the model card inside "
                   f"{str(weights_path)!r} (entries {changed}); refusing an edited model card")
            raise WeightsError(msg)
        elif embedded is not None:
            card = embedded  # the same content, plus its content_sha256
        _check_format(card.get("format"), str(path / CARD_FILE) if path.is_dir()
                      else str(weights_path))
        weights_check = check_model_digest(card, tensors, source=str(path_or_name),
                                           verified_by_sha256=verified_by_sha256)
        try:
            estimator = cls._from_card(card, tensors, device, params)
        except WeightsError as exc:
            raise WeightsError(f"model {str(path_or_name)!r}: {exc}") from exc
        except GPMAstroError as exc:  # e.g. an architecture field this version does not know
            msg = f"model card of {str(path_or_name)!r} does not describe a usable model: {exc}"
            raise WeightsError(msg) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = (f"model card of {str(path_or_name)!r} lacks or garbles an entry "
                   f"({type(exc).__name__}: {exc}); it was not written by save()")
            raise WeightsError(msg) from exc
        estimator.weights_check_ = weights_check
        history_path = weights_path.parent / HISTORY_CSV
        estimator.history_ = Table(names=("member", "epoch", "train_loss", "val_loss"))
        if history_path.is_file():
            try:
                estimator.history_ = Table.read(str(history_path), format="ascii.csv")
            except Exception as exc:  # astropy's readers raise many kinds
                # the history is a record of the training, no part of the (verified) model
                warnings.warn(f"cannot read the loss history {str(history_path)!r} "
                              f"({type(exc).__name__}: {exc}); the model loads without it",
                              GPMAstroWarning, stacklevel=2)
        return estimator

    @classmethod
    def _from_card(cls, card, tensors, device, params):
        """Build the fitted estimator a verified card and its tensors describe."""
        if card.get("output") != cls.output:
            msg = (f"the weights predict {card.get('output')!r} ({card.get('estimator')!r}); "
                   f"{cls.__name__} predicts {cls.output!r}")
            raise WeightsError(msg)
        config = GPMResNetConfig.from_dict(card["architecture"])
        uncertainty = card["uncertainty"]
        params.setdefault("mc_passes", uncertainty["mc_passes"])
        params.setdefault("error_shape", uncertainty.get("err_shape") is not None)
        params.setdefault("seeing_correction", card.get("seeing_correction") is not None)
        estimator = cls(config=config, n_ensemble=uncertainty["n_ensemble"], device=device,
                        **params)
        models = []
        for member in range(uncertainty["n_ensemble"]):
            prefix = f"member{member}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not state:
                msg = (f"the weights file holds no tensors of ensemble member {member} (the "
                       f"card says n_ensemble {uncertainty['n_ensemble']})")
                raise WeightsError(msg)
            model = GPMResNet(config)
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                detail = " ".join(line.strip() for line in str(exc).splitlines()[1:])
                detail = detail if len(detail) <= 500 else detail[:500] + " ..."
                msg = (f"the weights of ensemble member {member} do not fit the card's "
                       f"architecture: {detail}")
                raise WeightsError(msg) from exc
            models.append(model.eval())
        _check_card_values(card, tensors, config)
        estimator.config_ = config
        estimator.bands_ = card["input"]["table_bands"]
        estimator.target_ = card["target"]
        estimator.target_mean_ = card["target_standardization"]["mean"]
        estimator.target_std_ = card["target_standardization"]["std"]
        estimator.err_scale_ = uncertainty["err_scale"]
        estimator.err_constant_ = uncertainty["err_constant"]
        # cards saved before the error shape existed have none: the error is unshaped
        estimator.err_shape_ = uncertainty.get("err_shape")
        estimator.calibration_split_ = uncertainty.get("calibration_split", "validation")
        # cards saved before the seeing correction existed have none: predictions uncorrected
        estimator.seeing_correction_ = card.get("seeing_correction")
        if card.get("caveat"):  # e.g. "mock sky: not for real galaxies": every prediction says so
            estimator.caveat = str(card["caveat"])
        estimator.training_summary_ = card["training_data"]
        estimator.validation_metrics_ = card["metrics"]["validation"]
        estimator.models_ = models
        estimator.domain_ = None
        if card.get("domain") is not None:
            estimator.domain_ = DomainModel.from_card(
                card["domain"], {k: v.numpy() for k, v in tensors.items()
                                 if k.startswith("domain.")})
        estimator._inference_cache = {}
        return estimator


def _number(value, what, *, low=None, positive=False, optional=False):
    """``value`` as a float; `WeightsError` naming the card entry ``what`` unless it is a finite
    real number (above ``low`` if given, or above 0 if ``positive``), or None if ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or (positive and not value > 0) \
            or (low is not None and value < low):
        need = "a positive" if positive else "a finite" if low is None else f"a >= {low}"
        raise WeightsError(f"card entry {what} must be {need} number, got {value!r}")
    return float(value)


def _check_card_values(card, tensors, config):
    """`WeightsError` naming the entry or tensor when the card's numbers or the tensors could
    not come from `save`: a model that would predict NaN, constants or raise mid-``predict``."""
    standardization = card["target_standardization"]
    _number(standardization["mean"], "target_standardization.mean")
    _number(standardization["std"], "target_standardization.std", positive=True)
    uncertainty = card["uncertainty"]
    for key in ("n_ensemble", "mc_passes"):
        value = uncertainty[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise WeightsError(f"card entry uncertainty.{key} must be a count >= 1, "
                               f"got {value!r}")
    scale = _number(uncertainty["err_scale"], "uncertainty.err_scale", low=0, optional=True)
    _number(uncertainty["err_constant"], "uncertainty.err_constant", low=0,
            optional=scale is not None)
    shape = uncertainty.get("err_shape")
    if shape is not None:
        for key in ("centre", "scale", "err_reference", "err_power"):
            _number(shape[key], f"uncertainty.err_shape.{key}", positive=key in (
                "scale", "err_reference"))
        knots = [_number(v, "uncertainty.err_shape.knots") for v in shape["knots"]]
        logs = [_number(v, "uncertainty.err_shape.log_scale") for v in shape["log_scale"]]
        shifts = [_number(v, "uncertainty.err_shape.shift") for v in shape.get("shift", logs)]
        if (len(knots) < 2 or len(logs) != len(knots) or len(shifts) != len(knots)
                or np.any(np.diff(knots) <= 0)):
            raise WeightsError("card entry uncertainty.err_shape needs two or more increasing "
                               "knots and one log_scale (and shift) a knot")
    correction = card.get("seeing_correction")
    if correction is not None:
        for key in ("reference", "intercept", "slope"):
            _number(correction[key], f"seeing_correction.{key}")
        low, high = (_number(v, "seeing_correction.range") for v in correction["range"])
        if not low <= high:
            raise WeightsError(f"card entry seeing_correction.range must be [low, high], got "
                               f"{correction['range']!r}")
    if card.get("domain") is not None:
        width = config.head_hidden
        for key, shape in (("domain.feature_mean", (width,)),
                           ("domain.feature_precision", (width, width))):
            if key in tensors and tuple(tensors[key].shape) != shape:
                raise WeightsError(f"tensor {key} has shape {tuple(tensors[key].shape)}, the "
                                   f"card's network gives {width} features: expected {shape}")
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise WeightsError(f"tensor {key} holds NaN or infinite values")


def _check_format(found, source):
    """`WeightsError` unless ``found`` is the `CARD_FORMAT` this version reads."""
    if found == CARD_FORMAT:
        return
    prefix, _, version = str(found).rpartition("/")
    why = ""
    if prefix == CARD_FORMAT.rpartition("/")[0] and version.isdigit():
        newer = int(version) > int(CARD_FORMAT.rpartition("/")[2])
        why = ("; it was written by a newer gpm_astro: upgrade the package" if newer else
               "; it was written by an older gpm_astro: save the model again with this one")
    msg = (f"model card of {source!r} is of format {found!r}, but gpm_astro "
           f"{package_version()} reads {CARD_FORMAT!r}{why}")
    raise WeightsError(msg)


def _without_file_keys(card):
    return {key: value for key, value in card.items() if key not in DIGEST_KEYS}
