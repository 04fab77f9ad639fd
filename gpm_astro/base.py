"""Base classes of the three kinds of plugin components.

A plugin registers subclasses of these through the hooks in `gpm_astro.hookspecs`.
"""

import inspect
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Configurable", "Estimator", "PreprocessingStep", "StepResult", "DataSource"]


class Configurable:
    """Keyword-only configuration, scikit-learn style.

    ``__init__`` stores its keyword arguments as attributes of the same name and does nothing
    else; `get_params` reads them back from the signature.
    """

    name = None

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self):
        """Return the constructor's keyword arguments as a dict."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters; an unknown name is an error. Returns self."""
        from .exceptions import ParameterError

        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                msg = f"{type(self).__name__} has no parameter {key!r}; valid: {sorted(valid)}"
                raise ParameterError(msg)
            setattr(self, key, value)
        return self

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


class Estimator(Configurable):
    """Predicts one scalar per galaxy (by default Z = 12 + log(O/H)) from a table.

    Contract (checked by `gpm_astro.testing.check_estimator`):

    - ``__init__`` takes keyword hyper-parameters only, stores them unchanged, does no work.
    - ``fit(table, *, target=...)`` learns from a table and returns ``self``; learned state lives
      in attributes whose names end in ``_``. Estimators with nothing to learn still accept it.
    - ``predict(table)`` returns a new `~astropy.table.Table` with exactly ``len(table)`` rows in
      input order and the columns ``{output}`` (masked where no prediction could be made),
      ``{output}_err`` and ``{output}_flag`` (``"ok"`` or a machine-readable reason). The input
      table is never modified.
    - ``required_columns`` lists the input columns ``predict`` needs.
    """

    #: quantity predicted; ``Z`` gives columns Z_pred, Z_pred_err, Z_pred_flag
    output = "Z"
    #: unit of the prediction
    output_unit = "dex"
    #: columns that ``predict`` reads
    required_columns = ()
    #: whether ``predict`` needs a prior ``fit``
    requires_fit = True
    #: a warning every prediction carries (e.g. "mock sky: not for real galaxies" for weights
    #: trained on the mock sky): `gpm_astro.predict_metallicity` writes it into a column
    #: ``{output}_pred_caveat`` and ``meta['caveat']``; None for none
    caveat = None

    @property
    def output_column(self):
        return f"{self.output}_pred"

    def fit(self, table, *, target="oh_p50"):
        """Learn from ``table``; ``target`` names the column of true values. Returns self."""
        raise NotImplementedError

    def predict(self, table):
        """Return a Table of predictions, one row per input row, in input order."""
        raise NotImplementedError

    def is_fitted(self):
        """True when the estimator holds learned state (attributes ending in ``_``)."""
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))


@dataclass
class StepResult:
    """What a preprocessing step returns for a batch of ``n`` cutouts.

    Attributes
    ----------
    images : numpy.ndarray
        (n, bands, height, width) float32, the cleaned cutouts.
    flags : numpy.ndarray
        (n,) str: ``"ok"`` for a row that passed, else the reason (e.g. ``"blended"``).
    columns : dict
        Per-row output columns, name -> array with first axis n.
    extras : dict
        Per-row intermediate products for later steps (not written to the output table),
        name -> array with first axis n, e.g. ``"target_mask"``. Later steps of the same run
        read them, and ``columns``, from ``context["rows"]``.
    """

    images: np.ndarray
    flags: np.ndarray
    columns: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)


class PreprocessingStep(Configurable):
    """One stage of cutout cleaning.

    ``__init__`` holds the configuration (keyword-only). ``process(images, context)`` receives a
    batch (n, bands, H, W) in nanomaggies and a ``context`` dict shared by the steps of one
    pipeline run for that batch (e.g. ``pixel_scale`` in arcsec, ``bands``, and anything an
    earlier step stored, such as the target mask); it returns a `StepResult`.

    The driver (`gpm_astro.preprocessing.preprocess_cutouts`) passes a step only the rows that
    every earlier step accepted; ``context["rows"]`` holds, for exactly those rows, the
    ``columns`` and ``extras`` that earlier steps returned. ``requires`` names the entries of
    ``context["rows"]`` a step reads, so that a pipeline in the wrong order fails with a clear
    error before any work is done.
    """

    #: names of per-row products (``context["rows"]``) that earlier steps must provide
    requires = ()
    #: names of per-row products this step adds (its ``columns`` and ``extras``)
    provides = ()
    #: False for a step that never reads the pixel values of ``images`` (only its shape) and
    #: returns it unchanged: the driver then hands it a read-only zero-copy stand-in of the
    #: right shape instead of copying the accepted rows' cutouts
    reads_images = True

    def process(self, images, context):
        raise NotImplementedError


class DataSource(Configurable):
    """Something that yields tables: labels, image catalogues, or cutouts.

    ``provides`` says which: any of ``"labels"``, ``"catalog"``, ``"cutouts"``. Remote sources
    follow astroquery's conventions (see `gpm_astro.remote.RemoteDataSource`): a ``conf``, one
    request method through which all traffic goes, ``cache`` and ``timeout`` options, and
    ``get_query_payload=True`` to see a query without sending it.
    """

    provides = ()

    def query(self, **criteria):
        """Return the whole result as one Table."""
        raise NotImplementedError

    def iter_query(self, *, chunk_size=10_000, **criteria):
        """Yield the result in Tables of at most ``chunk_size`` rows (bounded memory)."""
        table = self.query(**criteria)
        for start in range(0, len(table), chunk_size):
            yield table[start:start + chunk_size]
