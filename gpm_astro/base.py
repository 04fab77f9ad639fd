"""Base classes of the three kinds of plugin components, and the contracts they sign.

A plugin registers subclasses of these through the hooks in `gpm_astro.hookspecs`. The core
calls a component only through the methods defined here, so a plugin's component is used
exactly like a built-in one:

- `Estimator`: ``fit(table, *, target, validation=None)``, ``predict(table)``, ``describe()``;
- `PreprocessingStep`: ``process(images, context)``;
- `Command`: ``add_arguments(parser)``, ``run(args)`` (a ``gpm-astro`` subcommand);
- `DataSource`: ``query(**criteria)``; a source that can feed the pipeline's ``sky`` stage
  (`gpm_astro.pipeline`) also implements `PipelineSource`'s ``pipeline_tables()`` and
  ``pipeline_cutouts(images, truth)``.
"""

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Configurable", "Estimator", "PreprocessingStep", "StepResult", "DataSource",
           "PipelineSource", "PipelineTables", "Command"]


class Configurable(ABC):
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
    - ``fit(table, *, target=..., validation=None)`` learns from a table and returns ``self``;
      learned state lives in attributes whose names end in ``_``. Estimators with nothing to
      learn still accept it. An estimator that uses held-out rows (to pick an epoch, to
      calibrate its errors) sets ``uses_validation = True``; the pipeline then passes its
      validation split as ``validation`` (a table of the same columns).
    - ``predict(table)`` returns a new `~astropy.table.Table` with exactly ``len(table)`` rows in
      input order and the columns ``{output}`` (masked where no prediction could be made),
      ``{output}_err`` and ``{output}_flag`` (``"ok"`` or a machine-readable reason). The input
      table is never modified.
    - ``required_columns`` lists the input columns ``predict`` needs.
    - ``describe()`` says in a few words what the configured estimator is (reports, logs).
    """

    #: quantity predicted; ``Z`` gives columns Z_pred, Z_pred_err, Z_pred_flag
    output = "Z"
    #: unit of the prediction
    output_unit = "dex"
    #: columns that ``predict`` reads
    required_columns = ()
    #: whether ``predict`` needs a prior ``fit``
    requires_fit = True
    #: whether ``fit`` uses its ``validation`` table
    uses_validation = False
    #: a warning every prediction carries (e.g. "mock sky: not for real galaxies" for weights
    #: trained on the mock sky): `gpm_astro.predict_metallicity` writes it into a column
    #: ``{output}_pred_caveat`` and ``meta['caveat']``; None for none
    caveat = None

    @property
    def output_column(self):
        return f"{self.output}_pred"

    @abstractmethod
    def fit(self, table, *, target="oh_p50", validation=None):
        """Learn from ``table``; ``target`` names the column of true values. Returns self.

        ``validation``, when given, holds held-out rows of the same columns; an estimator
        whose ``uses_validation`` is False may ignore it.
        """

    @abstractmethod
    def predict(self, table):
        """Return a Table of predictions, one row per input row, in input order."""

    def check_table(self, table):
        """Check the columns of a whole table (their shape, bands, unit) before any row is
        predicted; raise `~gpm_astro.exceptions.SchemaError` for one that cannot be right.

        `gpm_astro.predict_metallicity` calls it once per table before it hands ``predict``
        only the rows worth predicting, so that a column of the wrong shape (cutouts stored
        channels-last, two bands) is an error even when no row reaches ``predict`` (every
        cutout blank or rejected by preprocessing), not a table of row flags. The default
        checks nothing.
        """

    def describe(self):
        """A short description of this configured estimator, for reports and logs.

        The default is the registered name and the parameters that differ from the defaults.

        Examples
        --------
        >>> from gpm_astro.plugins import get_estimator
        >>> get_estimator("colour_polynomial")(order=3).describe()
        'colour polynomial, order 3'
        """
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        changed = {k: v for k, v in self.get_params().items()
                   if defaults.get(k, inspect.Parameter.empty) != v}
        options = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        label = self.name or type(self).__name__
        return f"{label} ({options})" if options else label

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

    @abstractmethod
    def process(self, images, context):
        """Clean a batch (n, bands, H, W) and return a `StepResult` for its n rows."""


class DataSource(Configurable):
    """Something that yields tables: labels, image catalogues, or cutouts.

    ``provides`` says which: any of ``"labels"``, ``"catalog"``, ``"cutouts"``. Remote sources
    follow astroquery's conventions (see `gpm_astro.remote.RemoteDataSource`): a ``conf``, one
    request method through which all traffic goes, ``cache`` and ``timeout`` options, and
    ``get_query_payload=True`` to see a query without sending it.
    """

    provides = ()
    #: glob patterns of file names this source reads as one table with `read_file` (then
    #: `gpm_astro.io.read_table`, and so every command, reads such files too)
    file_patterns = ()

    @classmethod
    def read_file(cls, path):
        """Read one file in this source's own layout as a Table (see ``file_patterns``)."""
        msg = f"data source {cls.name!r} reads no files"
        raise NotImplementedError(msg)

    @abstractmethod
    def query(self, **criteria):
        """Return the whole result as one Table."""

    def iter_query(self, *, chunk_size=10_000, **criteria):
        """Yield the result in Tables of at most ``chunk_size`` rows (bounded memory)."""
        table = self.query(**criteria)
        for start in range(0, len(table), chunk_size):
            yield table[start:start + chunk_size]


@dataclass
class PipelineTables:
    """What a `PipelineSource` hands the pipeline's ``sky`` stage.

    Attributes
    ----------
    labels : astropy.table.Table
        The spectroscopic label table (MPA-JHU column names: ``ra``, ``dec``, ``oh_p50``, ...),
        as `gpm_astro.select_starforming` reads it.
    images : astropy.table.Table
        The image catalogue (Legacy Survey column names: ``ra``, ``dec``, ``source_type``,
        ``flux_g``, ...), one row per cutout, without the ``cutout`` column.
    truth : astropy.table.Table or None
        Optional, one row per image row in the same order (e.g. the mock's ``Z_best``, from
        which the pipeline reports a noise floor).
    """

    labels: object
    images: object
    truth: object = None


class PipelineSource(DataSource):
    """A data source that can feed the pipeline (``gpm-astro run``, `gpm_astro.pipeline`).

    The ``sky`` stage calls `pipeline_tables` once, numbers the image rows (column
    ``image_row``, 0 to n - 1), and then asks `pipeline_cutouts` for the cutouts of those rows
    chunk by chunk (possibly in worker processes, so the source must be picklable), writing
    them to its cutout store. Nothing else of the source is used, so any registered source
    that implements these two methods can be named in a configuration's ``source.name``.
    Parameters of the source come from the configuration's ``source.params`` (and the
    ``source.labels``, ``source.images`` and ``source.truth`` paths, when set).
    """

    def check_params(self):
        """Raise `~gpm_astro.exceptions.ParameterError` for a bad parameter, without any work.

        Called when a configuration is loaded, so that a run fails before its first stage.
        """

    @abstractmethod
    def pipeline_tables(self):
        """Return the label table, the image catalogue and the optional truth.

        Returns
        -------
        PipelineTables
        """

    @abstractmethod
    def pipeline_cutouts(self, images, truth=None):
        """Return the cutouts of rows of the image catalogue.

        Parameters
        ----------
        images : astropy.table.Table
            Rows of the image catalogue `pipeline_tables` returned (a chunk, in order), with
            the column ``image_row``: each row's number in that catalogue.
        truth : astropy.table.Table, optional
            The matching rows of the truth table, when there is one.

        Returns
        -------
        numpy.ndarray
            (len(images), 3, 152, 152) float32, bands g, r, z in nanomaggies.
        """


class Command(ABC):
    """A ``gpm-astro`` subcommand that a plugin adds (hook ``gpm_astro_register_commands``).

    The command line builds the subcommand's parser with ``help`` and ``description``, lets
    `add_arguments` declare the options, and calls `run` with the parsed arguments.
    """

    #: the subcommand (the registered name takes precedence)
    name = None
    #: one line for ``gpm-astro --help``
    help = ""
    #: the paragraph of ``gpm-astro NAME --help`` (default: ``help``)
    description = None

    @abstractmethod
    def add_arguments(self, parser):
        """Declare the options on ``parser`` (an `argparse.ArgumentParser`)."""

    @abstractmethod
    def run(self, args):
        """Do the work; return the exit code (0 or None for success).

        Raise a `~gpm_astro.exceptions.GPMAstroError` for bad input: the command line prints
        its message and exits with 1.
        """
