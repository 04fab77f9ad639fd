"""``predict_metallicity``: run an estimator over a table of galaxies, in bounded memory.

The driver knows no concrete estimator: it resolves a registered name (or takes a class or an
instance), loads weights when asked, streams the table through ``estimator.predict`` in
slices of ``batch_size`` rows, and puts the small output columns back in place. Rows whose
preprocessing failed are never shown to the estimator; they keep their place, masked, with
the flag ``preprocess:<reason>``.
"""

import copy
import inspect

import numpy as np
from astropy.table import Column, MaskedColumn, Table
from tqdm.auto import tqdm

from .base import Estimator
from .exceptions import ParameterError, PluginError, SchemaError
from .image_checks import cutout_flags
from .tables import (boolean_column, optional_column, record_step, require_positive_int,
                     require_table, resolve_columns, warn_empty, with_column_names)

__all__ = ["predict_metallicity", "iter_predict_metallicity", "resolve_estimator"]

PREPROCESS_OK = "preprocess_ok"
PREPROCESS_FLAG = "preprocess_flag"
#: flag of a row the estimator returned no (finite) value for while calling it ``ok``
NO_PREDICTION = "no_prediction"


def resolve_estimator(estimator, *, weights=None, fit_table=None, fit_target=None,
                      **estimator_params):
    """Turn a name, class or instance into a ready estimator instance.

    Parameters
    ----------
    estimator : str, type or Estimator
        A registered name (see ``gpm-astro plugins``), an `~gpm_astro.base.Estimator`
        subclass, or an instance (used as given, fitted or not).
    weights : str or path-like, optional
        Passed to the estimator's ``load`` method (a registered weights name or a file). When
        ``load`` is a classmethod (it builds the estimator from the weights and their card),
        it is called as ``cls.load(weights, **estimator_params)``.
    fit_table : astropy.table.Table, optional
        When given, the estimator is fitted on it first.
    fit_target : str, optional
        Target column for ``fit``; the estimator's default when None.
    **estimator_params
        Constructor keywords; only allowed with a name or a class.

    Returns
    -------
    Estimator
        The instance to predict with.

    Raises
    ------
    UnknownPluginError
        If no estimator has the given name (the message lists the known names).
    ParameterError
        If ``weights`` is given to an estimator without ``load``, or keyword parameters are
        given with an instance.
    TypeError
        If ``estimator`` is none of the accepted kinds.

    Examples
    --------
    >>> from gpm_astro.estimation import resolve_estimator
    >>> resolve_estimator("mass_metallicity", mass_column="lgm_fib_p50").mass_column
    'lgm_fib_p50'
    """
    if isinstance(estimator, str):
        from .plugins import get_estimator

        estimator = get_estimator(estimator)
    if isinstance(estimator, type) and issubclass(estimator, Estimator):
        by_class_load = weights is not None and _loads_by_class(estimator)
        _check_params(estimator, estimator_params, by_class_load)
        if by_class_load:
            # a classmethod load builds the instance from the weights and their card
            instance = estimator.load(weights, **estimator_params)
            weights = None
        else:
            instance = estimator(**estimator_params)
    elif isinstance(estimator, Estimator):
        if estimator_params:
            msg = (f"estimator parameters {sorted(estimator_params)} cannot be combined with an "
                   f"estimator instance ({estimator!r}); set them on the instance instead")
            raise ParameterError(msg)
        instance = estimator
    else:
        msg = (f"estimator must be a registered name, an Estimator subclass or instance, "
               f"got {estimator!r}")
        raise TypeError(msg)

    if weights is not None:
        load = getattr(instance, "load", None)
        if not callable(load):
            msg = (f"estimator {type(instance).__name__} has no load method, so it cannot take "
                   f"weights={weights!r}")
            raise ParameterError(msg)
        loaded = load(weights)
        instance = loaded if isinstance(loaded, Estimator) else instance
    if fit_table is not None:
        require_table(fit_table, "fit_table")
        fitted = instance.fit(fit_table) if fit_target is None else \
            instance.fit(fit_table, target=fit_target)
        instance = fitted if isinstance(fitted, Estimator) else instance
    return instance


def _loads_by_class(cls):
    return isinstance(inspect.getattr_static(cls, "load", None), classmethod)


def _keywords(function):
    """Keyword names ``function`` accepts, or None when it takes ``**kwargs``."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                      inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def _check_params(cls, params, by_class_load):
    """`ParameterError` naming the parameters ``cls`` does not take (and those it takes)."""
    accepted = _keywords(cls.__init__)
    if accepted is None:
        return
    accepted.discard("self")
    if by_class_load:
        accepted |= (_keywords(cls.load) or set()) - {"cls", "path_or_name"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        msg = (f"estimator {getattr(cls, 'name', None) or cls.__name__!r} has no parameter(s) "
               f"{unknown}; it takes {sorted(accepted)}")
        raise ParameterError(msg)


def _estimator_label(estimator):
    return getattr(estimator, "name", None) or type(estimator).__name__


def _output_names(estimator, suffix):
    if not isinstance(suffix, str):
        msg = f"suffix must be a str (e.g. '_2'), got {suffix!r}"
        raise ParameterError(msg)
    base = estimator.output_column
    return base + suffix, f"{base}_err{suffix}", f"{base}_flag{suffix}"


def _check_input(table, estimator, names, keep_columns):
    """Check the table; return (the table as the estimator reads it, keep_columns).

    Columns are found ignoring case: the estimator sees a view with its own spelling of the
    columns it needs (``flux_g`` for a table's ``FLUX_G``), the output keeps the table's
    names (``keep_columns`` resolved to them).
    """
    require_table(table)
    needed = list(getattr(estimator, "required_columns", ()))
    view = with_column_names(table, needed, f"estimator {_estimator_label(estimator)!r}")
    check_table = getattr(estimator, "check_table", None)  # plugins need not subclass Estimator
    if callable(check_table):
        check_table(view)  # whatever rows reach predict: a wrong shape is an error, not flags
    clashes = [n for n in names if n.lower() in {c.lower() for c in table.colnames}]
    if clashes:
        msg = (f"the table already has column(s) {clashes} (compared ignoring case); pass "
               f"suffix=... (e.g. '_2') to keep both predictions")
        raise SchemaError(msg)
    if keep_columns is not None:
        if isinstance(keep_columns, str):  # one name, not its letters
            keep_columns = [keep_columns]
        keep_columns = list(resolve_columns(table, list(keep_columns), "keep_columns").values())
    return view, keep_columns


def _rows_to_predict(table):
    """Boolean mask of rows to show the estimator, and the flag of the others."""
    n = len(table)
    # found ignoring case: a catalogue's PREPROCESS_OK = False must keep its rows unpredicted
    ok_name = optional_column(table, PREPROCESS_OK, "predict_metallicity")
    if ok_name is None:
        return np.ones(n, dtype=bool), np.full(n, "ok", dtype=object)
    ok = boolean_column(table[ok_name], "predict_metallicity")
    flags = np.full(n, "ok", dtype=object)
    flag_name = optional_column(table, PREPROCESS_FLAG, "predict_metallicity")
    if flag_name is not None:
        reasons = np.ma.filled(np.ma.asanyarray(table[flag_name]).astype(str), "masked")
    else:
        reasons = np.full(n, "failed", dtype=object)
    for i in np.flatnonzero(~ok):  # a masked preprocess_ok whose flag says ok: not "ok"
        flags[i] = "preprocess:" + ("failed" if reasons[i] == "ok" else str(reasons[i]))
    return ok, flags


def _uses_images(estimator):
    return "cutout" in tuple(getattr(estimator, "required_columns", ()))


def _predict_chunk(table, estimator, batch_size, progress_bar):
    """Predict every row of ``table``: values, their mask, errors, their mask, flags (arrays of
    len(table)) and the estimator's extra ``{output}_pred_*`` columns (e.g. GPM-ResNet's domain
    score), name -> (values, mask)."""
    n = len(table)
    extras = {}
    values = np.full(n, np.nan)
    errors = np.full(n, np.nan)
    masked = np.ones(n, dtype=bool)
    ok, flags = _rows_to_predict(table)
    images = _uses_images(estimator)
    pred_name = estimator.output_column
    called = False
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = start + np.flatnonzero(ok[start:stop])
        if rows.size and images:
            # images that cannot be a galaxy never reach the network (gpm_astro.image_checks)
            image_flags = cutout_flags(table["cutout"][rows])
            flags[rows] = image_flags
            rows = rows[image_flags == "ok"]
        if rows.size:
            batch = table[rows] if rows.size < stop - start else table[start:stop]
            result = estimator.predict(batch)
            called = True
            _check_result(result, rows.size, estimator, pred_name)
            value = np.ma.asanyarray(result[pred_name])
            err = np.ma.asanyarray(result[f"{pred_name}_err"])
            values[rows] = np.ma.getdata(value).astype(float)
            errors[rows] = np.ma.filled(err.astype(float), np.nan)
            masked[rows] = np.ma.getmaskarray(value) | ~np.isfinite(values[rows])
            got = np.ma.filled(np.ma.asanyarray(result[f"{pred_name}_flag"]).astype(str), "")
            got = got.astype(object)
            # a row the estimator gave no value must not read back as a good measurement
            got[masked[rows] & np.isin(got, ("ok", ""))] = NO_PREDICTION
            flags[rows] = got
            _collect_extras(extras, result, pred_name, rows, n)
        if progress_bar is not None:
            progress_bar.update(stop - start)
    if not called:
        # no row reached the estimator (an empty table, or every row failed): its answer to an
        # empty table (which the estimator contract requires) still names its extra columns,
        # so every table and chunk has the same columns (e.g. GPM-ResNet's Z_pred_domain)
        result = estimator.predict(table[:0])
        _check_result(result, 0, estimator, pred_name)
        _collect_extras(extras, result, pred_name, np.zeros(0, dtype=np.int64), n)
    err_masked = masked | ~np.isfinite(errors)
    return values, masked, errors, err_masked, flags, extras


def _collect_extras(extras, result, pred_name, rows, n):
    """Copy the result's extra ``{pred_name}_*`` columns into ``extras`` at ``rows``."""
    standard = {pred_name, f"{pred_name}_err", f"{pred_name}_flag"}
    for name in result.colnames:
        if name in standard or not name.startswith(f"{pred_name}_"):
            continue
        column = np.ma.asanyarray(result[name])
        tail = name[len(pred_name):]
        if tail not in extras:
            kind = column.dtype.kind
            empty = np.full(n, np.nan) if kind in "fiub" else np.full(n, "", dtype=object)
            extras[tail] = (empty, np.ones(n, dtype=bool), result[name].description)
        data, mask, _ = extras[tail]
        data[rows] = np.ma.getdata(column)
        mask[rows] = np.ma.getmaskarray(column)


def _check_result(result, n_rows, estimator, pred_name):
    needed = [pred_name, f"{pred_name}_err", f"{pred_name}_flag"]
    if not isinstance(result, Table) or len(result) != n_rows or \
            any(c not in result.colnames for c in needed):
        got = (f"{type(result).__name__} with {len(result)} rows and columns "
               f"{getattr(result, 'colnames', None)}") if hasattr(result, "__len__") \
            else repr(result)
        msg = (f"estimator {_estimator_label(estimator)!r} broke the estimator contract: "
               f"predict on {n_rows} rows must return a Table of {n_rows} rows with columns "
               f"{needed}, got {got}")
        raise PluginError(msg)


def _attach(table, names, values, masked, errors, err_masked, flags, extras, unit,
            keep_columns, suffix="", caveat=None):
    if keep_columns is None:
        out = table.copy(copy_data=False)
    else:
        out = Table([table[c] for c in keep_columns], copy=False)
    out.meta = copy.deepcopy(table.meta)
    pred_name, err_name, flag_name = names
    out[pred_name] = MaskedColumn(values, mask=masked, unit=unit,
                                  description="predicted value; masked where none could be made")
    out[err_name] = MaskedColumn(errors, mask=err_masked, unit=unit,
                                 description="1-sigma uncertainty of the prediction")
    out[flag_name] = Column(flags.astype(str), description="'ok', or why there is no prediction")
    for tail, (data, mask, description) in extras.items():
        target = f"{pred_name[:len(pred_name) - len(suffix)]}{tail}{suffix}"
        if data.dtype == object:
            out[target] = Column(data.astype(str), description=description)
        else:
            out[target] = MaskedColumn(data, mask=mask, description=description)
    if caveat:  # e.g. weights trained on the mock sky: every row and the meta say so
        out[flag_name.replace("_flag", "_caveat", 1)] = Column(
            np.full(len(out), str(caveat)), description="warning that comes with the prediction")
        out.meta["caveat"] = str(caveat)
    return out


def _record(out, estimator, *, weights, batch_size, suffix, n_predicted, chunk_index=None):
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    record_step(out, "predict_metallicity", estimator=_estimator_label(estimator),
                estimator_class=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
                estimator_params=params, weights=None if weights is None else str(weights),
                batch_size=batch_size, suffix=suffix, n_rows=len(out),
                n_predicted=n_predicted, chunk_index=chunk_index,
                weights_check=getattr(estimator, "weights_check_", None),
                caveat=getattr(estimator, "caveat", None))


def predict_metallicity(table, *, estimator="gpm_resnet", weights=None, batch_size=256,
                        fit_table=None, fit_target=None, suffix="", keep_columns=None,
                        progress=True, **estimator_params):
    """Predict Z = 12 + log(O/H) (or the estimator's quantity) for every row of a table.

    Parameters
    ----------
    table : astropy.table.Table
        Galaxies with the columns the estimator needs (`Estimator.required_columns`; the
        image estimators need ``cutout``), found ignoring case (``FLUX_G`` serves for
        ``flux_g``; the output keeps the table's names). When ``preprocess_ok`` is present,
        rows where it is False are not predicted.
    estimator : str, type or Estimator, optional
        A registered name (``gpm_resnet``, ``colour_polynomial``, ``mass_metallicity``, ...),
        an Estimator subclass, or an instance.
    weights : str or path-like, optional
        Given to the estimator's ``load`` (a weights name from the registry or a file).
    batch_size : int, optional
        Rows handed to ``estimator.predict`` at a time; bounds the memory the estimator uses.
    fit_table : astropy.table.Table, optional
        Fit the estimator on this table first (e.g. the colour polynomial's training set).
    fit_target : str, optional
        Target column for that fit; the estimator's default when None.
    suffix : str, optional
        Appended to the output column names, to keep several predictions in one table.
    keep_columns : sequence of str, optional
        Input columns to carry into the output; all of them (the default) or e.g. no ``cutout``
        for a light catalogue.
    progress : bool, optional
        Show a progress bar over rows.
    **estimator_params
        Constructor keywords for a name or class (e.g. ``order=3``).

    Returns
    -------
    astropy.table.Table
        A new table: the input rows in order (sharing column data with the input, whose own
        columns and meta are never modified), plus ``Z_pred`` (dex; masked where no prediction
        was made), ``Z_pred_err`` (dex) and ``Z_pred_flag`` (``ok`` or a reason;
        ``preprocess:<preprocess_flag>`` for rows whose preprocessing failed). An estimator
        with another output (e.g. ``logmstar``) gives ``logmstar_pred`` etc.
        ``meta['gpm_astro']['steps']`` records the estimator, its parameters and the weights.
        An estimator with a ``caveat`` (e.g. weights trained on the mock sky) adds the column
        ``Z_pred_caveat`` and ``meta['caveat']``, both holding it.

    Raises
    ------
    UnknownPluginError
        If ``estimator`` names no registered estimator (the message lists them).
    SchemaError
        If a required column is missing or an output column already exists.
    ParameterError
        If ``batch_size`` is not a positive integer, or weights are given to an estimator that
        cannot load them.
    PluginError
        If the estimator returns something that breaks the estimator contract.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from gpm_astro import predict_metallicity
    >>> t = Table({"lgm_tot_p50": [9.0, 10.0, 12.0]})
    >>> out = predict_metallicity(t, estimator="mass_metallicity", progress=False)
    >>> out["Z_pred_flag"].tolist()
    ['ok', 'ok', 'mass_out_of_range']
    """
    require_positive_int(batch_size, "batch_size")
    instance = resolve_estimator(estimator, weights=weights, fit_table=fit_table,
                                 fit_target=fit_target, **estimator_params)
    names = _output_names(instance, suffix)
    view, keep_columns = _check_input(table, instance, names, keep_columns)
    n = len(table)
    bar = tqdm(total=n, desc=f"predict {_estimator_label(instance)}", unit="gal",
               disable=not progress or n <= batch_size)
    try:
        arrays = _predict_chunk(view, instance, batch_size, bar)
    finally:
        bar.close()
    out = _attach(table, names, *arrays, unit=instance.output_unit, keep_columns=keep_columns,
                  suffix=suffix, caveat=getattr(instance, "caveat", None))
    _record(out, instance, weights=weights, batch_size=batch_size, suffix=suffix,
            n_predicted=int((~arrays[1]).sum()))
    if n == 0:
        warn_empty("predict_metallicity")
    return out


def iter_predict_metallicity(chunks, *, estimator="gpm_resnet", weights=None, batch_size=256,
                             fit_table=None, fit_target=None, suffix="", keep_columns=None,
                             progress=True, **estimator_params):
    """Predict over a stream of Tables (e.g. 1,000,000-galaxy archive files read by chunks).

    The estimator is resolved (and its weights loaded, or it is fitted) once; each chunk is
    predicted exactly as `predict_metallicity` would, so only one chunk's images are held at a
    time.

    Parameters
    ----------
    chunks : iterable of astropy.table.Table
        The input tables, e.g. from a data source's ``iter_query``.
    estimator, weights, batch_size, fit_table, fit_target, suffix, keep_columns, progress, \
**estimator_params
        As in `predict_metallicity`. ``progress`` shows a bar over chunks.

    Yields
    ------
    astropy.table.Table
        One output table per input chunk, in order.

    Raises
    ------
    UnknownPluginError, SchemaError, ParameterError, PluginError
        As in `predict_metallicity`; a schema problem is raised at the chunk that has it.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from gpm_astro.estimation import iter_predict_metallicity
    >>> chunks = (Table({"lgm_tot_p50": [9.0 + i, 10.0]}) for i in range(2))
    >>> [len(t) for t in iter_predict_metallicity(chunks, estimator="mass_metallicity")]
    [2, 2]
    """
    require_positive_int(batch_size, "batch_size")
    instance = resolve_estimator(estimator, weights=weights, fit_table=fit_table,
                                 fit_target=fit_target, **estimator_params)
    names = _output_names(instance, suffix)
    for index, table in enumerate(tqdm(chunks, desc="chunks", unit="chunk",
                                       disable=not progress)):
        view, kept = _check_input(table, instance, names, keep_columns)
        arrays = _predict_chunk(view, instance, batch_size, None)
        out = _attach(table, names, *arrays, unit=instance.output_unit, keep_columns=kept,
                      suffix=suffix, caveat=getattr(instance, "caveat", None))
        _record(out, instance, weights=weights, batch_size=batch_size, suffix=suffix,
                n_predicted=int((~arrays[1]).sum()), chunk_index=index)
        yield out
