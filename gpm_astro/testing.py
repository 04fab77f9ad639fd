"""Conformance checks for estimator plugins (in the spirit of scikit-learn's estimator checks).

A plugin author runs::

    from gpm_astro.testing import check_estimator
    check_estimator(MyEstimator)            # or an instance with chosen (e.g. fast) settings

Every check raises `EstimatorCheckError` (an AssertionError) naming the check and what was
wrong; `check_estimator` returns the names of the checks that passed.
"""

import copy
import inspect

import astropy.units as u
import numpy as np
from astropy.table import Table

from .base import Estimator
from .exceptions import GPMAstroError, SchemaError
from .survey_constants import BANDS, CUTOUT_SIZE, PIXEL_SCALE_ARCSEC, tremonti_metallicity

__all__ = ["EstimatorCheckError", "check_estimator", "make_estimator_table", "ESTIMATOR_CHECKS"]


class EstimatorCheckError(AssertionError):
    """An estimator broke the estimator contract."""


def make_estimator_table(n=12, *, seed=0, cutout_size=CUTOUT_SIZE):
    """A small synthetic table with every column the built-in estimators read.

    Galaxies follow a mass-metallicity relation with scatter; their g - r and r - z colours
    redden with metallicity, and each cutout holds a centred exponential disc in g, r, z whose
    brightness follows the fluxes. Values are plausible, not realistic: the table exists to
    exercise code, not to measure accuracy.

    Parameters
    ----------
    n : int, optional
        Number of rows.
    seed : int, optional
        Seed; the same seed gives the same table.
    cutout_size : int, optional
        Side of the square cutouts in pixels.

    Returns
    -------
    astropy.table.Table
        Columns ra, dec (deg), flux_g, flux_r, flux_z (nanomaggy), mag_r (mag), z, z_phot_median,
        lgm_tot_p50, lgm_fib_p50 (dex), oh_p50 (dex), cutout (n, 3, size, size) float32
        nanomaggies per pixel, preprocess_ok, preprocess_flag; ``meta`` has bands and pixel
        scale.

    Examples
    --------
    >>> from gpm_astro.testing import make_estimator_table
    >>> make_estimator_table(4)["cutout"].shape
    (4, 3, 152, 152)
    """
    rng = np.random.default_rng(seed)
    logmass = rng.uniform(8.8, 11.2, n)
    oh = tremonti_metallicity(logmass) + rng.normal(0, 0.08, n)
    g_r = 0.25 + 0.9 * (oh - 8.9) + rng.normal(0, 0.03, n)
    r_z = 0.20 + 0.6 * (oh - 8.9) + rng.normal(0, 0.03, n)
    mag_r = 17.5 - 0.8 * (logmass - 10.0) + rng.normal(0, 0.2, n)
    mags = np.stack([mag_r + g_r, mag_r, mag_r - r_z])
    fluxes = 10 ** ((22.5 - mags) / 2.5)  # nanomaggies

    yy, xx = np.mgrid[:cutout_size, :cutout_size] - (cutout_size - 1) / 2
    radius = np.hypot(xx, yy)
    scale = rng.uniform(3.0, 6.0, n)
    profile = np.exp(-radius[None] / scale[:, None, None])
    profile /= profile.sum(axis=(1, 2), keepdims=True)
    cutout = fluxes.T[:, :, None, None] * profile[:, None]
    cutout = (cutout + rng.normal(0, 0.002, cutout.shape)).astype(np.float32)

    table = Table()
    table["ra"] = rng.uniform(150, 160, n)
    table["ra"].unit = "deg"
    table["dec"] = rng.uniform(0, 10, n)
    table["dec"].unit = "deg"
    for band, flux in zip("grz", fluxes):
        table[f"flux_{band}"] = flux
        table[f"flux_{band}"].unit = "nanomaggy"
    table["mag_r"] = mags[1]
    table["mag_r"].unit = "mag"
    table["z"] = rng.uniform(0.02, 0.2, n)
    table["z_phot_median"] = table["z"] + rng.normal(0, 0.02, n)
    table["lgm_tot_p50"] = logmass
    table["lgm_fib_p50"] = logmass - rng.uniform(0.3, 0.8, n)
    table["oh_p50"] = oh
    for name in ("lgm_tot_p50", "lgm_fib_p50", "oh_p50"):
        table[name].unit = "dex"
    table["cutout"] = cutout
    table["cutout"].unit = "nanomaggy"
    table["preprocess_ok"] = np.ones(n, dtype=bool)
    table["preprocess_flag"] = np.full(n, "ok", dtype="U32")
    table.meta["bands"] = BANDS
    table.meta["pixel_scale"] = PIXEL_SCALE_ARCSEC
    return table


def _fail(check, message):
    raise EstimatorCheckError(f"{check}: {message}")


def _fresh(estimator):
    """A new, unfitted instance with the same parameters."""
    cls = estimator if isinstance(estimator, type) else type(estimator)
    params = {} if isinstance(estimator, type) else estimator.get_params()
    return cls(**params)


def _snapshot(table):
    return table.copy(copy_data=True), copy.deepcopy(table.meta)


def _tables_equal(a, b):
    if a.colnames != b.colnames or len(a) != len(b):
        return False
    for name in a.colnames:
        x, y = np.ma.asanyarray(a[name]), np.ma.asanyarray(b[name])
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if not np.array_equal(np.ma.getmaskarray(x), np.ma.getmaskarray(y)):
            return False
        xd, yd = np.ma.getdata(x), np.ma.getdata(y)
        if xd.dtype.kind in "fc":
            if not np.array_equal(xd, yd, equal_nan=True):
                return False
        elif not np.array_equal(xd, yd):
            return False
        if a[name].unit != b[name].unit:
            return False
    return True


def _fit(estimator, table):
    return estimator.fit(table)


def _same_unit(unit, expected):
    if unit is None:
        return expected is None
    try:
        return u.Unit(unit) == u.Unit(expected)
    except (TypeError, ValueError):
        return False


def _output_names(estimator):
    name = estimator.output_column
    return name, f"{name}_err", f"{name}_flag"


def check_init_stores_params(estimator, fit_table, predict_table):
    """``__init__`` takes keyword-only parameters, stores them unchanged and does nothing else."""
    check = "init_stores_params"
    cls = estimator if isinstance(estimator, type) else type(estimator)
    signature = inspect.signature(cls.__init__)
    for param in list(signature.parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            _fail(check, f"{cls.__name__}.__init__ takes *args/**kwargs ({param}); list every "
                         f"parameter explicitly")
        if param.kind is not param.KEYWORD_ONLY:
            _fail(check, f"parameter {param.name!r} of {cls.__name__}.__init__ must be "
                         f"keyword-only (put it after '*')")
    names = [p for p in signature.parameters if p != "self"]
    if isinstance(estimator, type):
        no_default = [p.name for p in list(signature.parameters.values())[1:]
                      if p.default is p.empty]
        if no_default:
            _fail(check, f"parameters {no_default} of {cls.__name__}.__init__ need defaults")
        params = {}
    else:
        params = {name: getattr(estimator, name) for name in names}
    instance = cls(**params)
    sentinel_params = {}
    for name in names:
        value = params.get(name, signature.parameters[name].default)
        sentinel_params[name] = value
        if getattr(instance, name, None) is not value:
            _fail(check, f"attribute {name!r} differs from the value given to __init__")
    extra = sorted(k for k in vars(instance) if k not in sentinel_params)
    if extra:
        _fail(check, f"__init__ set attributes other than its parameters: {extra}")
    # a marker object must come back unchanged (no copying, validation or conversion)
    for name in sentinel_params:
        marker = object()
        try:
            probe = cls(**{**sentinel_params, name: marker})
        except Exception as exc:  # noqa: BLE001 - any work done in __init__ is the failure
            _fail(check, f"__init__ did work on parameter {name!r} (raised {exc!r}); "
                         f"validate in fit/predict instead")
        if getattr(probe, name) is not marker:
            _fail(check, f"__init__ did not store parameter {name!r} unchanged")


def check_get_params_round_trip(estimator, fit_table, predict_table):
    """``get_params`` returns every parameter; a clone from it has equal parameters."""
    check = "get_params_round_trip"
    instance = _fresh(estimator)
    params = instance.get_params()
    signature_names = [p for p in inspect.signature(type(instance).__init__).parameters
                       if p != "self"]
    if sorted(params) != sorted(signature_names):
        _fail(check, f"get_params() keys {sorted(params)} differ from the __init__ parameters "
                     f"{sorted(signature_names)}")
    clone = type(instance)(**params)
    if clone.get_params().keys() != params.keys() or any(
            clone.get_params()[k] is not params[k] for k in params):
        _fail(check, "a clone built from get_params() has different parameters")
    if instance.set_params(**params) is not instance:
        _fail(check, "set_params must return self")


def check_fit_returns_self(estimator, fit_table, predict_table):
    """``fit`` returns the estimator itself, does not change parameters, learns into ``*_``."""
    check = "fit_returns_self"
    instance = _fresh(estimator)
    before_params = dict(instance.get_params())
    before_attrs = set(vars(instance))
    fitted = _fit(instance, fit_table)
    if fitted is not instance:
        _fail(check, f"fit returned {type(fitted).__name__} instead of self")
    after_params = instance.get_params()
    changed = sorted(k for k in before_params if after_params[k] is not before_params[k])
    if changed:
        _fail(check, f"fit changed the parameter(s) {changed}; learned state belongs in "
                     f"attributes ending in '_'")
    new = sorted(k for k in set(vars(instance)) - before_attrs
                 if not k.startswith("_") and not k.endswith("_"))
    if new:
        _fail(check, f"fit created public attributes not ending in '_': {new}")


def check_unfitted_predict_raises(estimator, fit_table, predict_table):
    """When ``requires_fit``, ``predict`` before ``fit`` raises a clear gpm_astro error."""
    check = "unfitted_predict_raises"
    instance = _fresh(estimator)
    if not instance.requires_fit:
        return
    try:
        instance.predict(predict_table)
    except GPMAstroError as exc:
        if not str(exc):
            _fail(check, "the error raised by an unfitted predict has an empty message")
        return
    except Exception as exc:  # noqa: BLE001
        _fail(check, f"predict before fit raised {type(exc).__name__}: {exc}, which is not a "
                     f"gpm_astro.exceptions.GPMAstroError")
    _fail(check, "predict before fit returned a result although requires_fit is True")


def _fitted(estimator, fit_table):
    instance = _fresh(estimator)
    _fit(instance, fit_table)
    return instance


def check_predict_output(estimator, fit_table, predict_table):
    """``predict`` returns a new Table: len(table) rows, the three columns with units, string
    flags, masked exactly where there is no value, non-negative errors."""
    check = "predict_output"
    instance = _fitted(estimator, fit_table)
    result = instance.predict(predict_table)
    if not isinstance(result, Table):
        _fail(check, f"predict returned {type(result).__name__}, not an astropy Table")
    if result is predict_table:
        _fail(check, "predict returned its input table; it must return a new one")
    if len(result) != len(predict_table):
        _fail(check, f"predict returned {len(result)} rows for {len(predict_table)}")
    value_name, err_name, flag_name = _output_names(instance)
    missing = [c for c in (value_name, err_name, flag_name) if c not in result.colnames]
    if missing:
        _fail(check, f"predict output lacks column(s) {missing}; it has {result.colnames}")
    for name in (value_name, err_name):
        if not _same_unit(result[name].unit, instance.output_unit):
            _fail(check, f"column {name!r} must carry the unit {instance.output_unit!r}, got "
                         f"{result[name].unit!r}")
    flags = np.asarray(result[flag_name])
    if flags.dtype.kind not in "US" and not all(isinstance(f, str) for f in flags):
        _fail(check, f"flags must be strings, got dtype {flags.dtype}")
    flags = flags.astype(str)
    values = np.ma.asanyarray(result[value_name])
    has_value = ~np.ma.getmaskarray(values) & np.isfinite(np.ma.getdata(values).astype(float))
    bad = np.flatnonzero((flags == "ok") & ~has_value)
    if bad.size:
        _fail(check, f"rows {bad.tolist()} are flagged 'ok' but have no (finite, unmasked) value")
    if np.any(flags == ""):
        _fail(check, "empty flag strings: use 'ok' or a reason")
    errors = np.ma.asanyarray(result[err_name]).astype(float)
    err_ok = ~np.ma.getmaskarray(errors) & has_value
    err_values = np.ma.getdata(errors)[err_ok]
    if np.any(~np.isfinite(err_values)) or np.any(err_values < 0):
        _fail(check, "errors of predicted rows must be finite and non-negative")


def check_input_not_mutated(estimator, fit_table, predict_table):
    """Neither ``fit`` nor ``predict`` modifies its input table (columns, values, meta)."""
    check = "input_not_mutated"
    fit_copy, fit_meta = _snapshot(fit_table)
    pred_copy, pred_meta = _snapshot(predict_table)
    instance = _fresh(estimator)
    _fit(instance, fit_table)
    instance.predict(predict_table)
    if not _tables_equal(fit_table, fit_copy) or fit_table.meta != fit_meta:
        _fail(check, "fit modified the table it was given")
    if not _tables_equal(predict_table, pred_copy) or predict_table.meta != pred_meta:
        _fail(check, "predict modified the table it was given")


def check_row_order(estimator, fit_table, predict_table, *, rtol=1e-5, atol=1e-5):
    """Row i of the output belongs to row i of the input: a permuted input permutes the output,
    and a prefix gives the prefix."""
    check = "row_order"
    instance = _fitted(estimator, fit_table)
    value_name, _, flag_name = _output_names(instance)
    full = instance.predict(predict_table)
    order = np.random.default_rng(0).permutation(len(predict_table))[::-1].copy()
    permuted = instance.predict(predict_table[order])
    head = instance.predict(predict_table[: max(1, len(predict_table) // 2)])
    for label, result, rows in (("permuted", permuted, order),
                                ("prefix", head, np.arange(len(head)))):
        expected = np.ma.asanyarray(full[value_name])[rows]
        got = np.ma.asanyarray(result[value_name])
        if not np.array_equal(np.ma.getmaskarray(expected), np.ma.getmaskarray(got)) or not \
                np.allclose(np.ma.filled(got.astype(float), 0.0),
                            np.ma.filled(expected.astype(float), 0.0), rtol=rtol, atol=atol):
            _fail(check, f"predicting a {label} table does not give the matching rows of the "
                         f"full prediction (rows are out of order or depend on each other)")
        if not np.array_equal(np.asarray(result[flag_name]).astype(str),
                              np.asarray(full[flag_name]).astype(str)[rows]):
            _fail(check, f"flags of a {label} table do not match the full prediction")


def check_single_rows(estimator, fit_table, predict_table, *, rtol=1e-5, atol=1e-5, n_rows=3):
    """A row predicted alone gets the value and mask it gets in a full table, and a finite,
    non-negative error (a one-row batch breaks code that squeezes arrays or uses statistics of
    the batch, such as BatchNorm left in training mode)."""
    check = "single_rows"
    instance = _fitted(estimator, fit_table)
    value_name, err_name, _ = _output_names(instance)
    full_values = np.ma.asanyarray(instance.predict(predict_table)[value_name]).astype(float)
    for row in range(min(n_rows, len(predict_table))):
        alone = instance.predict(predict_table[row:row + 1])
        if len(alone) != 1:
            _fail(check, f"predict on the one-row table of row {row} returned {len(alone)} rows")
        value = np.ma.asanyarray(alone[value_name]).astype(float)
        if bool(np.ma.getmaskarray(value)[0]) != bool(np.ma.getmaskarray(full_values)[row]):
            _fail(check, f"row {row} is masked alone but not in the full table, or vice versa")
        if np.ma.getmaskarray(value)[0]:
            continue
        if not np.isclose(float(value[0]), float(full_values[row]), rtol=rtol, atol=atol):
            _fail(check, f"row {row} predicted alone gives {float(value[0])!r}, in the full "
                         f"table {float(full_values[row])!r}")
        error = np.ma.asanyarray(alone[err_name]).astype(float)
        if not np.ma.getmaskarray(error)[0] and not float(error[0]) >= 0:
            _fail(check, f"row {row} predicted alone has error {float(error[0])!r}")


def check_empty_table(estimator, fit_table, predict_table):
    """A 0-row table gives a 0-row result with the full schema."""
    check = "empty_table"
    instance = _fitted(estimator, fit_table)
    try:
        result = instance.predict(predict_table[:0])
    except Exception as exc:  # noqa: BLE001
        _fail(check, f"predict on an empty table raised {type(exc).__name__}: {exc}")
    names = _output_names(instance)
    if not isinstance(result, Table) or len(result) != 0 or \
            any(n not in result.colnames for n in names):
        _fail(check, f"predict on an empty table must return a 0-row Table with {list(names)}, "
                     f"got {result!r}")


def check_deterministic(estimator, fit_table, predict_table):
    """Two predictions of the same input are identical; so are two fits of the same data."""
    check = "deterministic"
    first = _fitted(estimator, fit_table)
    value_name, err_name, flag_name = _output_names(first)
    a = first.predict(predict_table)
    b = first.predict(predict_table)
    c = _fitted(estimator, fit_table).predict(predict_table)
    for label, other in (("a repeated predict", b), ("a second fit", c)):
        for name in (value_name, err_name, flag_name):
            x, y = np.ma.asanyarray(a[name]), np.ma.asanyarray(other[name])
            same_mask = np.array_equal(np.ma.getmaskarray(x), np.ma.getmaskarray(y))
            xd, yd = np.ma.getdata(x), np.ma.getdata(y)
            equal = np.array_equal(xd, yd, equal_nan=True) if xd.dtype.kind == "f" else \
                np.array_equal(xd.astype(str), yd.astype(str))
            if not (same_mask and equal):
                _fail(check, f"{label} changed column {name!r}")


def check_missing_columns(estimator, fit_table, predict_table):
    """``predict`` on a table lacking a required column raises SchemaError."""
    check = "missing_columns"
    instance = _fitted(estimator, fit_table)
    required = list(instance.required_columns)
    if not required:
        _fail(check, "required_columns is empty; list the columns predict reads")
    absent = [c for c in required if c not in predict_table.colnames]
    if absent:
        _fail(check, f"the predict table lacks required columns {absent}")
    for name in required:
        reduced = predict_table.copy(copy_data=False)
        reduced.remove_column(name)
        try:
            instance.predict(reduced)
        except SchemaError:
            continue
        except Exception as exc:  # noqa: BLE001
            _fail(check, f"without column {name!r} predict raised {type(exc).__name__}: "
                         f"{exc}; raise gpm_astro.exceptions.SchemaError")
        _fail(check, f"predict accepted a table without its required column {name!r}")


#: the checks, in the order `check_estimator` runs them
ESTIMATOR_CHECKS = (
    check_init_stores_params,
    check_get_params_round_trip,
    check_unfitted_predict_raises,
    check_fit_returns_self,
    check_predict_output,
    check_input_not_mutated,
    check_deterministic,
    check_row_order,
    check_single_rows,
    check_empty_table,
    check_missing_columns,
)


def check_estimator(estimator, *, fit_table=None, predict_table=None, checks=None):
    """Run the estimator contract on a class or an instance.

    Parameters
    ----------
    estimator : type or Estimator
        The class (built with its default parameters) or an instance whose parameters are used
        to build fresh copies (so a slow estimator can be checked with fast settings).
    fit_table, predict_table : astropy.table.Table, optional
        Data for ``fit`` and ``predict``; by default small synthetic tables from
        `make_estimator_table` (16 and 8 rows).
    checks : sequence of callables, optional
        A subset of `ESTIMATOR_CHECKS`.

    Returns
    -------
    list of str
        Names of the checks run, all passed.

    Raises
    ------
    EstimatorCheckError
        At the first failed check, naming it and what was wrong.
    TypeError
        If ``estimator`` is not an `~gpm_astro.base.Estimator` class or instance.

    Examples
    --------
    >>> from gpm_astro.testing import check_estimator
    >>> from gpm_astro.plugins import get_estimator
    >>> "row_order" in check_estimator(get_estimator("mass_metallicity"))
    True
    """
    is_class = isinstance(estimator, type) and issubclass(estimator, Estimator)
    if not is_class and not isinstance(estimator, Estimator):
        msg = f"check_estimator needs an Estimator class or instance, got {estimator!r}"
        raise TypeError(msg)
    if fit_table is None:
        fit_table = make_estimator_table(16, seed=1)
    if predict_table is None:
        predict_table = make_estimator_table(8, seed=2)
    passed = []
    for check in checks or ESTIMATOR_CHECKS:
        # fresh copies, so that one check's mutation cannot hide from another
        check(estimator, fit_table.copy(), predict_table.copy())
        passed.append(check.__name__.removeprefix("check_"))
    return passed
