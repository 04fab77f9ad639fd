"""GPM-ResNet as a gpm_astro estimator: fit on a table of cutouts, predict Z with errors.

The per-galaxy error ``Z_pred_err`` comes from the network's error head (configurations with
``error_head``: a predicted variance per galaxy, plus the spread of an ensemble), or else from
the spread of stochastic passes: Monte-Carlo DropBlock (``mc_passes`` forward passes with
DropBlock active) and/or an ensemble of ``n_ensemble`` independently initialised networks. The
raw error is calibrated on the validation rows, which train no weight and are never reported
on (``calibrate_errors=True``): ``hypot(a * raw, b)``, scaled so that 68.3 % of them have
``|pred - true| < err``. With none of these, the error is the 68.3rd percentile of
``|pred - true|`` on the validation set, the same for every galaxy. Every prediction also gets
a domain-of-applicability score and flag (`domain`).

Models are saved as safetensors weights plus a JSON model card and loaded without unpickling.
"""

from gpm_astro.base import Estimator

from .disk_inputs import ArchiveFittingMixin
from .fitting import FittingMixin
from .inference import InferenceMixin
from .persistence import CARD_FILE, WEIGHTS_FILE, PersistenceMixin

__all__ = ["GPMResNetEstimator", "GPMResNetMassEstimator", "WEIGHTS_FILE", "CARD_FILE"]


class GPMResNetEstimator(FittingMixin, ArchiveFittingMixin, InferenceMixin, PersistenceMixin,
                         Estimator):
    """Z = 12 + log(O/H) from g, r, z cutouts with GPM-ResNet (paper §3).

    Parameters
    ----------
    config : str, dict or GPMResNetConfig, optional
        ``"paper"`` (default: the paper's network and training, 23.8 M parameters, for a GPU),
        ``"paper_recipe"`` (the same network trained with the recipe measured on the mock sky),
        ``"lite"`` (the fast CPU variant: trains on 2 cores in minutes), or a custom
        configuration (`GPMResNetConfig`, or a dict of its fields).
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
        Scale the raw spread so that 68.3 % of the calibration rows (the ``calibration``
        table of `fit`, else the validation rows) fall within one error.
    error_shape : bool, optional
        Also fit the error shape (`error_model.fit_error_shape`) on the calibration rows: a
        small bias correction of ``Z_pred`` and a factor on ``Z_pred_err``, both functions of
        ``Z_pred``, that make the coverage hold within quintiles of the label, the r
        magnitude and the radius. Off by default: on the mock sky, fitted on 16,000
        calibration galaxies, it brings every quintile's coverage within 0.014 of 0.683 (the
        Z_true quintiles' 0.55-0.77 without it) and keeps the errors ranking galaxies by their
        noise (Spearman correlation with the per-galaxy floor 0.78, against 0.88), but the
        correction costs about 1 % of rms accuracy; it wants many calibration rows (8,000: worst
        quintile 0.022 off; docs/gpm_resnet.rst). `calibrate` fits it on a saved model.
    seeing_correction : bool, optional
        Fit a linear correction of the prediction in the PSF FWHM (the catalogue column
        ``psfsize``, r band) on the calibration rows, and apply it at prediction
        (`seeing.fit_seeing_correction`): the network is not told the seeing, and reads a
        galaxy in poorer seeing as metal-poorer. Fitted only when the calibration rows have
        that column; a model with a correction then reads it at prediction. False on a
        loaded model: its correction, if any, is not applied.
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
        Factor on the spread (the error head's predicted sigma, or the stochastic spread; None
        for the constant error model); the error is ``hypot(err_scale_ * spread,
        err_constant_)``, fitted on the validation rows (the calibration split).
    err_constant_ : float or None
        Error (dex) added in quadrature to the scaled spread, or the whole error when there is
        no stochastic spread.
    history_ : astropy.table.Table
        Per-epoch losses (column ``member`` for ensembles).
    training_summary_ : dict
        Rows used and skipped (by reason), best epochs.
    validation_metrics_ : dict
        mu, sigma, nmad, coverage on the validation rows, of the predictions as `predict`
        gives them (seeing correction and error shape applied); after `calibrate`, marked
        ``measured_before_calibrate``.
    bands_ : str
        Bands of the training table, in cutout order.
    domain_ : DomainModel or None
        The training domain (`gpm_astro_plugins.gpm_resnet.domain`): predictions get
        ``Z_pred_domain`` and ``Z_pred_domain_flag`` from it.

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
    uses_validation = True

    def describe(self):
        """``GPM-ResNet (<configuration> configuration)``, e.g. ``lite``."""
        config = self.config if isinstance(self.config, str) else \
            getattr(self.config, "name", None) or "custom"
        what = "GPM-ResNet" if self.output == "Z" else "GPM-ResNet stellar mass"
        return f"{what} ({config} configuration)"

    def __init__(self, *, config="paper", epochs=None, batch_size=None, lr=None, seed=0,
                 device="auto", precision="auto", compile=False, n_ensemble=1, mc_passes=10,
                 validation_fraction=0.2, calibrate_errors=True, error_shape=False,
                 seeing_correction=True, deterministic=False,
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
        self.error_shape = error_shape
        self.seeing_correction = seeing_correction
        self.deterministic = deterministic
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.predict_batch_size = predict_batch_size
        self.progress = progress


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
