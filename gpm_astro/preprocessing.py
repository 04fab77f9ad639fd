"""Cutout cleaning: ``preprocess_cutouts`` and its streaming twin ``iter_preprocess_cutouts``.

The driver knows no concrete step: it runs a list of `~gpm_astro.base.PreprocessingStep`
plugins over batches of cutouts, gives each step only the rows every earlier step accepted,
and keeps the first rejection's reason for each row. Named configurations (lists of steps)
come from plugins too; the built-in ``gpm_astro_plugins.preprocessing`` registers ``paper``
(the GPM-ResNet paper's steps), ``default`` (a noise-aware pipeline chosen by measurement on
the mock sky) and ``strict_blends``.
"""

import os
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from collections.abc import Mapping

import numpy as np
from astropy import units as u
from astropy.table import Column, MaskedColumn

from ._preprocess_runtime import (_EXECUTORS, _WORKER_MAPPINGS,  # noqa: F401 (re-export)
                                  _executor, _keep_freed_memory, _opencv_threads, _run_slot,
                                  _SharedSlots)
from .base import PreprocessingStep, StepResult
from .exceptions import ParameterError, PluginError, SchemaError
from .image_checks import check_cutout_unit
from .process_pool import dead_worker_error
from .survey_constants import PIXEL_SCALE_ARCSEC
from .tables import (meta_value, record_step, require_positive_int, require_table,
                     resolve_columns, warn_empty)

__all__ = ["preprocess_cutouts", "iter_preprocess_cutouts", "resolve_steps", "run_steps",
           "configurations", "PREPROCESS_FLAGS"]

#: The values ``preprocess_flag`` takes with the built-in steps.
PREPROCESS_FLAGS = ("ok", "invalid_pixels", "no_central_source", "too_large", "blended",
                    "fragmented")

# output columns always present (masked where no step computed them): name -> (unit, doc)
_COLUMNS = {
    "target_x": (u.pix, "x of the target ellipse's centre (0-based pixel)"),
    "target_y": (u.pix, "y of the target ellipse's centre (0-based pixel)"),
    "target_a": (u.pix, "semi-major axis of the (enlarged) target ellipse used as mask"),
    "target_b": (u.pix, "semi-minor axis of the (enlarged) target ellipse used as mask"),
    "target_theta": (u.deg, "angle of the major axis from +x towards +y, in [0, 180)"),
    "enclosing_radius": (u.arcsec, "radius of the target's minimum enclosing circle"),
    "n_sources": (None, "number of sources found after deblending"),
}
#: descriptions of the per-row columns some built-in steps add (present when the step ran)
_STEP_COLUMNS = {
    "pixel_problem": (None, "why check_pixels called the pixels invalid: nonfinite, "
                            "zero_pixels, saturated, corrupt or constant_band ('' if not)"),
    "companion": (None, "share of the target's flux in the largest piece of its rotation "
                        "residual (blend_check's companion test)"),
}
_DEFAULT_PIXEL_SCALE = PIXEL_SCALE_ARCSEC
#: Cutouts per batch: 64 keeps a batch's temporaries (~18 MB) reused by the allocator instead
#: of fresh pages for every batch (256: 1.2-1.3 ms a cutout, 64: 1.1 ms; benchmarks/preprocess.py)
DEFAULT_BATCH_SIZE = 64


def configurations():
    """Return the registered step configurations: name -> list of (step name, parameters).

    Configurations come from plugins (hook ``gpm_astro_register_preprocessing_configs``); the
    built-in plugin registers ``default``, ``paper`` and ``strict_blends``.
    """
    from .plugins import list_components

    return {component.name: [(step, dict(params)) for step, params in component.steps]
            for component in list_components("preprocessing_config")}


def resolve_steps(steps=None, *, config="default"):
    """Turn a step specification into a list of step instances.

    Parameters
    ----------
    steps : list, optional
        Items are a registered step name, a ``(name, parameters)`` pair, a
        `~gpm_astro.base.PreprocessingStep` subclass or an instance. ``None`` uses ``config``.
    config : str
        Name of a configuration (``"default"`` or ``"paper"``), used when ``steps`` is None.

    Returns
    -------
    list of PreprocessingStep

    Raises
    ------
    ParameterError
        For an unknown configuration, a malformed item, or steps in an order where one needs
        a product (``requires``) that no earlier step provides.
    UnknownPluginError
        For an unknown step name (the message lists the known ones).

    Examples
    --------
    >>> [type(s).__name__ for s in resolve_steps(config="paper")][:2]
    ['CheckPixels', 'PaperMaskNeighbours']
    """
    from .plugins import get_step

    if steps is None:
        known = configurations()
        if config not in known:
            msg = f"config must be one of {sorted(known)}, got {config!r}"
            raise ParameterError(msg)
        steps = known[config]
    if isinstance(steps, (str, PreprocessingStep)) or not hasattr(steps, "__iter__"):
        msg = f"steps must be a list of steps, got {steps!r}"
        raise ParameterError(msg)
    resolved = []
    for item in steps:
        if isinstance(item, PreprocessingStep):
            resolved.append(item)
        elif isinstance(item, type) and issubclass(item, PreprocessingStep):
            resolved.append(item())
        elif isinstance(item, str):
            resolved.append(get_step(item)())
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) \
                and isinstance(item[1], dict):
            resolved.append(get_step(item[0])(**item[1]))
        else:
            msg = (f"a step must be a name, a (name, parameters) pair, a PreprocessingStep "
                   f"class or instance, got {item!r}")
            raise ParameterError(msg)
    _check_order(resolved)
    return resolved


def _step_name(step):
    return getattr(step, "name", None) or type(step).__name__


def _check_order(steps):
    available = set()
    for step in steps:
        missing = [name for name in step.requires if name not in available]
        if missing:
            order = [_step_name(s) for s in steps]
            msg = (f"step {_step_name(step)!r} needs {missing} from an earlier step, but the "
                   f"steps before it provide only {sorted(available)}; steps: {order}")
            raise ParameterError(msg)
        available.update(step.provides)


def run_steps(images, steps, *, pixel_scale=_DEFAULT_PIXEL_SCALE, bands="grz", copy=True):
    """Run steps over one batch of cutouts held in memory.

    Parameters
    ----------
    images : numpy.ndarray
        (n, bands, H, W) float32 cutouts in nanomaggies.
    steps : list of PreprocessingStep
        As returned by `resolve_steps`.
    pixel_scale : float
        Arcsec per pixel.
    bands : str
        Band letters of the cutouts' planes.
    copy : bool
        Work on a copy of ``images``; ``False`` writes the cleaned cutouts into ``images``.

    Returns
    -------
    images : numpy.ndarray
        (n, bands, H, W) float32 cleaned cutouts (for a rejected row: the image as the
        rejecting step left it).
    flags : numpy.ndarray
        (n,) str, ``"ok"`` or the first step's rejection reason.
    columns : dict
        name -> (values, computed) with ``computed`` False where no step set the value.
    """
    n = images.shape[0]
    output = np.array(images, dtype=np.float32, copy=copy)
    flags = np.full(n, "ok", dtype="<U32")
    # each product is kept as (rows it covers, values); a later step given the same rows
    # gets the values themselves, otherwise a subset is made when it reads them
    products, columns = {}, {}
    latest = (np.arange(n), output)
    for step in steps:
        alive = np.flatnonzero(flags == "ok")
        if alive.size == 0:
            break
        context = {"pixel_scale": pixel_scale, "bands": bands,
                   "rows": _RowsView(products, alive)}
        if getattr(step, "reads_images", True):
            step_images = _take(*latest, alive)
        else:  # the step only needs the shape: no copy of the rows' pixels
            step_images = np.broadcast_to(np.float32(0), (alive.size,) + output.shape[1:])
        result = step.process(step_images, context)
        _check_result(step, result, alive.size, output.shape[1:])
        if result.images is not step_images:
            if not getattr(step, "reads_images", True):
                msg = (f"step {_step_name(step)!r} declares reads_images = False, so it must "
                       f"return the images it was given unchanged")
                raise PluginError(msg)
            output[alive] = result.images
            latest = (alive, np.asarray(result.images))
        elif getattr(step, "reads_images", True):
            latest = (alive, step_images)
        for key, value in {**result.extras, **result.columns}.items():
            products[key] = (alive, np.asarray(value))
        for key, value in result.columns.items():
            value = np.asarray(value)
            if key not in columns:
                columns[key] = (_blank(n, value), np.zeros(n, bool))
            columns[key][0][alive] = value
            columns[key][1][alive] = True
        step_flags = np.asarray(result.flags).astype(str)
        flags[alive] = np.where(step_flags == "ok", "ok", step_flags)
    return output, flags, columns


def _take(rows, values, wanted):
    """``values`` (one entry per index in ``rows``) restricted to the indices ``wanted``."""
    if rows.size == wanted.size and np.array_equal(rows, wanted):
        return values
    return values[np.searchsorted(rows, wanted)]


class _RowsView(Mapping):
    """Per-row products of earlier steps, restricted to the rows a step is given; an array is
    subset only when a step reads it (the big per-pixel ones are costly to copy)."""

    def __init__(self, products, rows):
        self._products, self._rows, self._cache = products, rows, {}

    def __getitem__(self, key):
        if key not in self._cache:
            self._cache[key] = _take(*self._products[key], self._rows)
        return self._cache[key]

    def __iter__(self):
        return iter(self._products)

    def __len__(self):
        return len(self._products)


def _blank(n, like):
    shape = (n,) + like.shape[1:]
    if like.dtype.kind == "f":
        return np.full(shape, np.nan, dtype=like.dtype)
    if like.dtype.kind in "US":
        return np.zeros(shape, dtype=like.dtype.kind + "32")
    return np.zeros(shape, dtype=like.dtype)


def _check_result(step, result, n, image_shape):
    name = _step_name(step)
    if not isinstance(result, StepResult):
        msg = f"step {name!r} must return a StepResult, got {type(result).__name__}"
        raise PluginError(msg)
    if np.shape(result.images) != (n,) + tuple(image_shape):
        msg = (f"step {name!r} returned images of shape {np.shape(result.images)}, expected "
               f"{(n,) + tuple(image_shape)}")
        raise PluginError(msg)
    if np.shape(result.flags) != (n,):
        msg = f"step {name!r} returned {np.shape(result.flags)} flags for {n} rows"
        raise PluginError(msg)
    for key, value in {**result.columns, **result.extras}.items():
        if np.ndim(value) == 0 or len(value) != n:
            msg = f"step {name!r} returned column {key!r} of shape {np.shape(value)} for {n} rows"
            raise PluginError(msg)


# ---------------------------------------------------------------------------- table level

def _prepare(table, pixel_scale):
    """Validate a table and return (a `_RowCopier` of its cutouts, pixel scale, bands)."""
    require_table(table)
    column = table[_cutout_name(table)]
    if column.dtype.kind not in "fiu" or column.dtype.kind == "b":
        msg = f"column 'cutout' must hold floating-point fluxes, got dtype {column.dtype}"
        raise SchemaError(msg)
    if column.dtype.kind in "iu":
        msg = (f"column 'cutout' must hold floating-point fluxes in nanomaggies, got integer "
               f"dtype {column.dtype}")
        raise SchemaError(msg)
    check_cutout_unit(column, "preprocess_cutouts")
    shape = column.shape
    if len(shape) != 4 or shape[1] != 3 or shape[2] < 16 or shape[3] < 16:
        msg = (f"column 'cutout' must have shape (n, 3, H, W) with H, W >= 16 (g, r, z "
               f"planes; 152 x 152 for Legacy Survey cutouts), got {shape}")
        raise SchemaError(msg)
    # found ignoring case: a FITS header reads back as BANDS, which must not mean "no bands"
    bands = meta_value(table.meta, "bands", "grz", "preprocess_cutouts")
    if isinstance(bands, bytes):
        bands = bands.decode("ascii", errors="replace")
    is_text = isinstance(bands, str) or (isinstance(bands, (list, tuple))
                                         and all(isinstance(b, str) for b in bands))
    if not is_text or "".join(bands) != "grz":
        msg = f"cutouts must hold the bands 'grz' in that order, table.meta['bands'] is {bands!r}"
        raise SchemaError(msg)
    if pixel_scale is None:
        given = meta_value(table.meta, "pixel_scale", _DEFAULT_PIXEL_SCALE, "preprocess_cutouts")
        scale = _arcsec(given)
        if scale is None:
            msg = (f"table.meta['pixel_scale'] must be a positive number of arcsec per pixel, "
                   f"got {given!r}")
            raise SchemaError(msg)
    else:
        scale = _arcsec(pixel_scale)
        if scale is None:
            msg = (f"pixel_scale must be a positive number of arcsec (or an angle Quantity), "
                   f"got {pixel_scale!r}")
            raise ParameterError(msg)
    return _RowCopier(column), scale, "grz"


def _arcsec(value):
    """A pixel scale as a positive finite float of arcsec, or None when it is not one.

    A number is arcsec; a Quantity may be an angle (``0.262 * u.arcsec``) or, as astropy's
    ``pixel_scale`` equivalency writes it, an angle per pixel (``0.262 * u.arcsec / u.pix``).
    """
    if isinstance(value, (bool, np.bool_)) or value is None:
        return None
    try:
        quantity = u.Quantity(value)
        if quantity.unit.is_equivalent(u.arcsec / u.pix):
            quantity = quantity * u.pix
        scale = float(u.Quantity(quantity, u.arcsec).value) if quantity.unit != u.one \
            else float(quantity.value)
    except (TypeError, ValueError, u.UnitsError):
        return None
    return scale if np.isfinite(scale) and scale > 0 else None


class _RowCopier:
    """Copies rows of a ``cutout`` column as float32 into a given array, batch by batch.

    Masked entries (a row with no cutout) become NaN, so the row is flagged, not dropped.
    The steps work on such copies; the table is never written to. Copying each batch just
    before it is cleaned spreads the cost of fresh memory over the run.
    """

    def __init__(self, column):
        self.data = np.ma.getdata(column)
        mask = np.ma.getmask(column)
        self.mask = None if mask is np.ma.nomask or not np.any(mask) else mask
        self.shape = column.shape

    def copy(self, start, stop, out):
        out[...] = self.data[start:stop]
        if self.mask is not None:
            out[np.broadcast_to(self.mask, self.shape)[start:stop]] = np.nan
        return out


def _cutout_name(table):
    """The table's own spelling of ``cutout`` (found ignoring case)."""
    return resolve_columns(table, ["cutout"], "preprocess_cutouts")["cutout"]


def _finish(table, images, flags, columns, steps, pixel_scale, n_jobs, batch_size):
    out = table.copy(copy_data=False)
    name = _cutout_name(table)  # the output keeps the table's name for it
    # the cleaned cutouts were made for this table: no copy of the biggest column
    out.replace_column(name, Column(images, name=name, copy=False), copy=False)
    out[name].unit = table[name].unit or u.nanomaggy
    out[name].description = "cleaned g, r, z cutout (0 outside the target), nanomaggy"
    # an earlier result spelt otherwise (PREPROCESS_OK from a FITS tool) is replaced, not
    # left beside the new one with its stale values
    written = {c.lower() for c in ("preprocess_ok", "preprocess_flag", *_COLUMNS, *columns)}
    out.remove_columns([c for c in out.colnames if c.lower() in written and c != name])
    out["preprocess_ok"] = flags == "ok"
    out["preprocess_ok"].description = "True when the cutout passed every preprocessing step"
    out["preprocess_flag"] = flags.astype("<U20")
    out["preprocess_flag"].description = "ok, or the reason the first failing step gave"
    n = len(table)
    names = list(_COLUMNS) + [k for k in columns if k not in _COLUMNS]
    for name in names:
        values, computed = columns.get(name, (None, np.zeros(n, bool)))
        if values is None:
            values = np.full(n, np.nan) if name != "n_sources" else np.zeros(n, np.int64)
        mask = ~computed
        if values.dtype.kind == "f":
            mask = mask | ~np.isfinite(values)
        unit, description = _COLUMNS.get(name) or _STEP_COLUMNS.get(
            name, (None, f"per-row output of a step: {name}"))
        out[name] = MaskedColumn(values, mask=mask, unit=unit, description=description)
    for key in ("bands", "pixel_scale"):
        out.meta.setdefault(key, {"bands": "grz", "pixel_scale": pixel_scale}[key])
    record_step(out, "preprocess_cutouts", n_jobs=n_jobs, batch_size=batch_size,
                pixel_scale=pixel_scale,
                steps=[{"step": _step_name(s), "class": f"{type(s).__module__}."
                        f"{type(s).__qualname__}", "params": s.get_params()} for s in steps])
    return out


def _check_options(n_jobs, batch_size):
    require_positive_int(batch_size, "batch_size")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 \
            or n_jobs < -1:
        msg = f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}"
        raise ParameterError(msg)
    return (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)


class _Chunk:
    """One input table on its way through the steps: its prepared cutouts (cleaned in place
    batch by batch), flags and per-row columns, and how many batches are still out."""

    def __init__(self, table, images, pixel_scale, n_batches):
        self.table, self.images, self.pixel_scale = table, images, pixel_scale
        self.flags = np.full(len(table), "", "<U32")
        self.columns = {}
        self.outstanding = n_batches

    def add(self, start, flags, columns):
        n = len(self.table)
        stop = start + len(flags)
        self.flags[start:stop] = flags
        for key, (values, computed) in columns.items():
            if key not in self.columns:
                self.columns[key] = (_blank(n, values), np.zeros(n, bool))
            self.columns[key][0][start:stop] = values
            self.columns[key][1][start:stop] = computed
        self.outstanding -= 1


def iter_preprocess_cutouts(chunks, *, steps=None, config="default", n_jobs=1,
                            batch_size=DEFAULT_BATCH_SIZE, pixel_scale=None, max_pending=None,
                            clean_here=True, progress=True, total=None):
    """Preprocess a stream of tables, yielding each cleaned table in input order.

    Memory stays bounded: each chunk is yielded as soon as its last batch is done, and at
    most ``max_pending`` batches are out in worker processes at a time (each in a reused
    shared-memory buffer), so millions of cutouts pass through chunk by chunk.

    Parameters
    ----------
    chunks : iterable of `~astropy.table.Table`
        Each with a ``cutout`` column, as `preprocess_cutouts` takes.
    steps, config, n_jobs, batch_size, pixel_scale :
        As in `preprocess_cutouts`.
    max_pending : int, optional
        Most batches out in worker processes at a time (default ``2 * (n_jobs - 1)``;
        unused with ``n_jobs=1``).
    clean_here : bool, optional
        Whether this process also cleans batches while every worker is busy (default). False
        leaves all cleaning to the ``n_jobs - 1`` workers, this process only copying batches
        in and out: for a thread whose process has other work on its core (a catalogue task
        predicting). Needs ``n_jobs >= 2``.
    progress : bool, optional
        Show a progress bar over cutouts.
    total : int, optional
        Cutouts in all chunks together, when known: the progress bar then shows the fraction
        done and the time left.

    Yields
    ------
    `~astropy.table.Table`
        One cleaned table per input chunk, as `preprocess_cutouts` returns it.

    Raises
    ------
    SchemaError, ParameterError
        As `preprocess_cutouts`, when a chunk is malformed.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> chunks = (Table({"cutout": np.zeros((2, 3, 32, 32), "f4")}) for _ in range(3))
    >>> [t["preprocess_flag"].tolist() for t in iter_preprocess_cutouts(chunks, progress=False)]
    [['invalid_pixels', 'invalid_pixels'], ['invalid_pixels', 'invalid_pixels'], \
['invalid_pixels', 'invalid_pixels']]
    """
    from tqdm.auto import tqdm

    n_jobs = _check_options(n_jobs, batch_size)
    if not clean_here and n_jobs < 2:
        msg = f"clean_here=False needs worker processes (n_jobs >= 2), got n_jobs={n_jobs}"
        raise ParameterError(msg)
    steps = resolve_steps(steps, config=config)
    _keep_freed_memory()
    max_pending = require_positive_int(
        max(2 * (n_jobs - 1), 1) if max_pending is None else max_pending, "max_pending")
    chunks_open = deque()  # _Chunk, in input order, until yielded
    in_flight = deque()  # (chunk, start, slot, future) of the batches in worker processes
    slots = None
    n_workers = n_jobs - 1  # this process cleans batches too
    bar = tqdm(total=total, desc="preprocess", unit="cutout", disable=not progress)

    def complete_oldest_batch():
        chunk, start, slot, future = in_flight.popleft()
        try:
            flags, columns = future.result()
        except BrokenProcessPool as exc:
            _EXECUTORS.pop(n_workers, None)  # a later call starts a new pool
            raise dead_worker_error(f"preprocess_cutouts(n_jobs={n_jobs})", exc) from exc
        chunk.images[start:start + len(flags)] = slots.arrays[slot][:len(flags)]
        slots.free.append(slot)
        chunk.add(start, flags, columns)
        bar.update(len(flags))

    def finished(chunk):
        return _finish(chunk.table, chunk.images, chunk.flags, chunk.columns, steps,
                       chunk.pixel_scale, n_jobs, batch_size)

    try:
        for table in chunks:
            rows, scale, bands = _prepare(table, pixel_scale)
            images = np.empty(rows.shape, np.float32)  # the cleaned cutouts, batch by batch
            chunk = _Chunk(table, images, scale, -(-len(table) // batch_size))
            chunks_open.append(chunk)
            shape = (batch_size,) + images.shape[1:]
            if n_workers and len(table) and (slots is None or slots.shape != shape):
                while in_flight:
                    complete_oldest_batch()
                if slots is not None:
                    slots.close()
                slots = _SharedSlots(max_pending, shape)
            for start in range(0, len(table), batch_size):
                stop = min(start + batch_size, len(table))
                while in_flight and in_flight[0][3].done():
                    complete_oldest_batch()
                if n_workers and not (slots.free or clean_here):
                    complete_oldest_batch()  # wait for a worker to take this batch
                if n_workers and slots.free:
                    # a worker takes the batch; this process goes on with the next one
                    slot = slots.free.popleft()
                    rows.copy(start, stop, slots.arrays[slot][:stop - start])
                    future = _executor(n_workers).submit(_run_slot, slots.paths[slot], shape,
                                                         stop - start, steps, scale, bands,
                                                         len(slots.paths))
                    in_flight.append((chunk, start, slot, future))
                    continue
                batch = rows.copy(start, stop, images[start:stop])
                with _opencv_threads(1 if n_workers else None):
                    _, flags, columns = run_steps(batch, steps, pixel_scale=scale, bands=bands,
                                                  copy=False)
                chunk.add(start, flags, columns)
                bar.update(stop - start)
            while chunks_open and chunks_open[0].outstanding == 0:
                yield finished(chunks_open.popleft())
        while chunks_open:
            while chunks_open[0].outstanding > 0:
                complete_oldest_batch()
            yield finished(chunks_open.popleft())
    finally:
        bar.close()
        for *_, future in in_flight:
            future.cancel()
        if slots is not None:
            slots.close()


def preprocess_cutouts(table, *, steps=None, config="default", n_jobs=1,
                       batch_size=DEFAULT_BATCH_SIZE, pixel_scale=None, progress=True):
    """Clean galaxy cutouts: mask neighbours, limit size, reject blends (paper §2.2).

    Parameters
    ----------
    table : `~astropy.table.Table`
        With a ``cutout`` column (found ignoring case; the output keeps its name) of shape
        (n, 3, H, W) (Legacy Survey: 152 x 152), bands g, r, z in nanomaggies. Never
        modified.
    steps : list, optional
        The steps to run, in order: registered names, ``(name, parameters)`` pairs, or
        `~gpm_astro.base.PreprocessingStep` classes or instances (see `resolve_steps`).
        Default: the steps of ``config``.
    config : {"default", "paper"}
        ``default``: the noise-aware pipeline; ``paper``: the paper's recipe.
    n_jobs : int
        Processes cleaning batches: this one plus ``n_jobs - 1`` workers (1: this process
        only; -1: one per core).
    batch_size : int
        Cutouts per batch handed to the steps (and to a worker).
    pixel_scale : float or `~astropy.units.Quantity`, optional
        Arcsec per pixel (a Quantity: an angle, or an angle per pixel such as
        ``0.262 * u.arcsec / u.pix``); default ``table.meta["pixel_scale"]`` (read the same
        way) or 0.262 (Legacy Survey).
    progress : bool, optional
        Show a progress bar (only for more than one batch).

    Returns
    -------
    `~astropy.table.Table`
        The same rows in the same order; ``cutout`` replaced by the cleaned cutout (0 outside
        the target); ``preprocess_ok`` (bool), ``preprocess_flag`` (one of ``ok``,
        ``invalid_pixels``, ``no_central_source``, ``too_large``, ``blended``,
        ``fragmented``), ``target_x``, ``target_y``, ``target_a``, ``target_b`` (px),
        ``target_theta`` (deg), ``enclosing_radius`` (arcsec), ``n_sources``, plus any
        other per-row column a step returns (masked where the row was rejected before that
        step ran). ``meta["gpm_astro"]["steps"]`` records the steps and their parameters.

    Raises
    ------
    SchemaError
        No ``cutout`` column, or one of the wrong shape, band count or dtype.
    ParameterError
        An unknown configuration, a bad option, or steps in an impossible order.
    UnknownPluginError
        An unknown step name.

    Notes
    -----
    On glibc systems the first call sets two ``malloc`` thresholds of this process
    (``mallopt``: 32 MB for ``mmap``, 64 MB of free heap before trimming; the largest values
    glibc's adaptive thresholds reach by themselves), so that a batch's freed temporaries are
    reused by the next batch instead of being faulted in again (~15 % of the time otherwise;
    docs/preprocessing.rst, "Speed").

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> rng = np.random.default_rng(0)
    >>> y, x = np.mgrid[:152, :152]
    >>> galaxy = 0.3 * np.exp(-((x - 75.5) ** 2 + (y - 75.5) ** 2) / 20.0)
    >>> cutouts = (galaxy + rng.normal(0, 0.005, (2, 3, 152, 152))).astype("f4")
    >>> cutouts[1, :, 70:80, 70:80] = np.nan
    >>> out = preprocess_cutouts(Table({"cutout": cutouts}), progress=False)
    >>> out["preprocess_flag"].tolist()
    ['ok', 'invalid_pixels']
    """
    n_jobs = _check_options(n_jobs, batch_size)
    require_table(table)
    n_batches = -(-len(table) // batch_size)
    show = progress and n_batches > 1
    result = next(iter_preprocess_cutouts([table], steps=steps, config=config, n_jobs=n_jobs,
                                          batch_size=batch_size, pixel_scale=pixel_scale,
                                          progress=show, total=len(table)))
    if len(result) == 0:
        warn_empty("preprocess_cutouts")
    return result
