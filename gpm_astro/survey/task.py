"""The per-partition task: read rows lazily, clean, predict, write one Parquet file.

A task runs on a Dask worker. It reads its partition ``chunk_size`` rows at a time through
the data source, runs the very same public functions a user calls on a small table
(`gpm_astro.preprocess_cutouts`, `gpm_astro.predict_metallicity`,
`gpm_astro.pipeline.make_catalogue`), keeps only the small catalogue columns, and writes the
partition atomically. With ``prefetch`` (the default), a background thread reads and cleans
the next chunk while the current one is predicted (one chunk ahead, never more: at most two
chunks of cutouts are in memory); an error there is raised by the task, as without it. The
first chunks are smaller (an eighth, a quarter, a half of ``chunk_size``), since nothing
overlaps the reading and cleaning of a partition's first chunk. Where
the worker may start processes (not daemonic), that thread hands the cleaning to a child
process, so that cleaning and inference never wait for each other's interpreter lock.

Rows that cannot be read (a corrupt HDF5 chunk, an I/O error) are read again one by one; a row
that still fails keeps its place with ``preprocess_flag = "unreadable"`` and
``Z_pred_flag = "preprocess:unreadable"`` (its catalogue columns too when they can be read
without the image), and the error is returned for the manifest. Every input row of the
partition is in the output exactly once, in input order; the task checks this before writing.
"""

import contextlib
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from astropy.table import Column, MaskedColumn, Table, vstack

from ..exceptions import GPMAstroError
from ..process_pool import can_start_processes
from .parquet import CATALOGUE_SCHEMA, write_partition

__all__ = ["UNREADABLE", "process_partition", "catalogue_rows"]

#: preprocess_flag of a row whose data could not be read
UNREADABLE = "unreadable"
#: the input-row column every source's tables carry
ROW_COLUMN = "archive_row"
# per-chunk numbers and process counts dropped from the steps recorded in a partition's meta
# (none changes a row: the partition is the same bytes however it was computed)
_CHUNK_PARAMS = ("n_rows", "n_predicted", "chunk_index", "n_jobs")


def catalogue_rows(table, estimator, *, preprocess="default", preprocess_jobs=1,
                   predict_lock=None):
    """Catalogue rows for a table of input rows: clean, predict, keep Table 2's columns.

    Parameters
    ----------
    table : astropy.table.Table
        Input rows with ``archive_row`` and the source's catalogue columns (and ``cutout``
        when the estimator needs images).
    estimator : gpm_astro.base.Estimator
        A ready (loaded or fitted) estimator.
    preprocess : str, optional
        Preprocessing configuration, when the estimator reads cutouts.
    preprocess_jobs : int, optional
        Processes `preprocess_cutouts` may use (``n_jobs``).
    predict_lock : threading.Lock, optional
        Held while predicting (an estimator serves one thread at a time).

    Returns
    -------
    astropy.table.Table
        ``archive_row`` and the columns of `gpm_astro.pipeline.CATALOGUE_COLUMNS`.
    """
    table = _cleaned(table, estimator, preprocess, preprocess_jobs)
    return _predicted(table, estimator, predict_lock)


def _cleaned(table, estimator, preprocess, preprocess_jobs, in_child_processes=False):
    """``table`` through `gpm_astro.preprocess_cutouts` when the estimator reads cutouts.
    ``in_child_processes``: ``preprocess_jobs`` child processes clean it, and the calling
    thread only hands batches over (it holds the interpreter lock for no cleaning)."""
    from ..preprocessing import iter_preprocess_cutouts, preprocess_cutouts

    if "cutout" not in getattr(estimator, "required_columns", ()):
        return table
    if in_child_processes:
        return next(iter_preprocess_cutouts([table], config=preprocess,
                                            n_jobs=preprocess_jobs + 1, clean_here=False,
                                            progress=False))
    return preprocess_cutouts(table, config=preprocess, n_jobs=preprocess_jobs, progress=False)


def _predicted(table, estimator, predict_lock):
    """The catalogue rows of a cleaned table: predict, keep Table 2's columns."""
    from ..estimation import predict_metallicity
    from ..pipeline import make_catalogue

    keep = [name for name in table.colnames if name != "cutout"]
    with predict_lock or contextlib.nullcontext():
        predicted = predict_metallicity(table, estimator=estimator, keep_columns=keep,
                                        progress=False)
    catalogue = make_catalogue(predicted)
    if "preprocess_flag" not in catalogue.colnames:  # an estimator that reads no cutout
        catalogue["preprocess_flag"] = Column(np.full(len(catalogue), "not_run"),
                                              description="cutout preprocessing was not run")
    catalogue.add_column(Column(np.asarray(table[ROW_COLUMN], dtype=np.int64),
                                name=ROW_COLUMN, description="row number in the input"),
                         index=0)
    return catalogue


def _unreadable_rows(rows, columns, template):
    """Catalogue rows for unreadable input rows: catalogue columns when known, else masked."""
    n = len(rows)
    out = Table()
    for name, type_name in CATALOGUE_SCHEMA.items():
        like = template[name] if template is not None and name in template.colnames else None
        if name == ROW_COLUMN:
            out[name] = Column(np.asarray(rows, np.int64), description="row number in the input")
        elif columns is not None and name in columns.colnames:
            out[name] = MaskedColumn(columns[name])
        elif name == "Z_pred_flag":
            out[name] = Column(np.full(n, f"preprocess:{UNREADABLE}"))
        elif name == "preprocess_flag":
            out[name] = Column(np.full(n, UNREADABLE))
        else:
            dtype = np.dtype(type_name if type_name != "string" else "U1")
            out[name] = MaskedColumn(np.zeros(n, dtype), mask=np.ones(n, bool))
        if like is not None:
            out[name].unit, out[name].description = like.unit, like.description
    return out


def _aligned(tables):
    """The tables with the same columns in one order. A column that only some have (one the
    estimator adds only to chunks where it predicted, e.g. Z_pred_domain; or to none of an
    unreadable chunk's rows) is masked in the others."""
    fullest = max(tables, key=lambda table: len(table.colnames))
    names = list(fullest.colnames)
    like = {name: fullest[name] for name in names}
    for table in tables:
        for name in table.colnames:
            if name not in like:
                names.append(name)
                like[name] = table[name]
    aligned = []
    for table in tables:
        n = len(table)
        for name in names:
            if name not in table.colnames:
                column = like[name]
                table[name] = MaskedColumn(np.zeros((n,) + column.shape[1:], column.dtype),
                                           mask=np.ones((n,) + column.shape[1:], bool),
                                           unit=column.unit, description=column.description)
        aligned.append(table[names])
    return aligned


def _read(source, rows, cutouts):
    """Read ``rows``; on an I/O error read them one by one. Returns (table, bad, errors)."""
    try:
        return source.query(rows=rows, cutouts=cutouts), [], []
    except OSError as exc:
        first_error = f"{type(exc).__name__}: {exc}"
    good, bad, errors = [], [], []
    for row in rows:
        try:
            good.append(source.query(rows=[int(row)], cutouts=cutouts))
        except OSError as exc:
            bad.append(int(row))
            errors.append({"row": int(row), "error": f"{type(exc).__name__}: {exc}"})
    if not errors:  # the chunk failed as a whole but every row reads alone
        errors.append({"rows": [int(rows[0]), int(rows[-1])], "error": first_error,
                       "recovered": True})
    table = vstack(good, metadata_conflicts="silent") if good else None
    return table, bad, errors


def _catalogue_columns_of(source, rows):
    """The catalogue columns of rows whose images cannot be read (None if those fail too)."""
    try:
        return source.query(rows=list(map(int, rows)), cutouts=False)
    except OSError:
        return None


def _partition_meta(first_meta, index, rows):
    info = dict(first_meta.get("gpm_astro", {})) if first_meta else {}
    info.pop("date", None)  # no clock in a partition file: a recomputed one is identical
    steps = []
    for step in info.get("steps", []):
        params = {k: v for k, v in step.get("params", {}).items() if k not in _CHUNK_PARAMS}
        steps.append({"step": step.get("step"), "params": params})
    info["steps"] = steps
    return {"gpm_astro": info, "partition": {"index": index, "n_rows": len(rows),
                                             "first_row": int(rows[0]),
                                             "last_row": int(rows[-1])}}


def _prepared_chunk(source, chunk_rows, spec, estimator, in_child_processes=False):
    """Read and clean one chunk: (cleaned table or None, unreadable rows, their catalogue
    columns or None, read errors)."""
    table, bad, errors = _read(source, chunk_rows, spec["cutouts"])
    if table is not None and len(table):
        table = _cleaned(table, estimator, spec["preprocess"], spec["preprocess_jobs"],
                         in_child_processes)
    else:
        table = None
    return table, bad, (_catalogue_columns_of(source, bad) if bad else None), errors


#: the first chunks of a partition, as fractions of ``chunk_size``: nothing overlaps the
#: reading and cleaning of a partition's first chunk, so it is small, and each next one at most
#: doubles, so that it is cleaned while the one before is predicted
RAMP = (1 / 8, 1 / 4, 1 / 2)


def _chunks(rows, chunk_size):
    """``rows`` cut into chunks of ``chunk_size`` rows, the first ones ramping up (`RAMP`).
    The cut depends on nothing but the rows and ``chunk_size``, so a recomputed partition
    predicts the same batches and gives the same bytes."""
    sizes = [max(1, int(chunk_size * fraction)) for fraction in RAMP]
    chunks, start = [], 0
    while start < len(rows):
        size = sizes[len(chunks)] if len(chunks) < len(sizes) else chunk_size
        chunks.append(rows[start:start + size])
        start += size
    return chunks


def _in_order(prepare, chunks, prefetch):
    """Yield ``prepare(chunk)`` for each chunk in order. With ``prefetch``, one background
    thread prepares the next chunk while the caller works on the current one (one ahead,
    never more); its exception is raised here, and leaving early waits for that thread."""
    if not prefetch:
        for chunk in chunks:
            yield prepare(chunk)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpm-astro-prefetch")
    try:
        pending = pool.submit(prepare, chunks[0]) if chunks else None
        for following in [*chunks[1:], None]:
            ready = pending.result()
            pending = None if following is None else pool.submit(prepare, following)
            yield ready
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def process_partition(index, rows, spec, estimator=None):
    """Compute and write the catalogue of one partition (runs on a Dask worker).

    Parameters
    ----------
    index : int
        The partition's index (names its file).
    rows : numpy.ndarray of int64
        Its input rows, increasing.
    spec : dict
        ``source`` (registered name), ``source_params``, ``chunk_size``, ``preprocess``,
        ``preprocess_jobs``, ``cutouts`` (read images or not), ``out`` (the run folder) and
        optionally ``prefetch`` (default True: read and clean the next chunk in a background
        thread while the current one is predicted; the output is the same either way).
    estimator : gpm_astro.base.Estimator, optional
        Default: the one `gpm_astro.survey.worker.EstimatorPlugin` loaded on this worker
        (used under its lock).

    Returns
    -------
    dict
        ``file`` (relative to the run folder), ``n_rows``, ``first_row``, ``last_row``,
        ``sha256``, ``flags`` (``Z_pred_flag`` value -> count), ``read_errors``,
        ``seconds``, ``host``, ``pid`` and ``worker``.

    Raises
    ------
    GPMAstroError
        If the rows written would not be exactly the partition's input rows.
    """
    from ..plugins import get_source
    from .manifest import file_sha256
    from .worker import worker_estimator

    started = time.perf_counter()
    estimator, lock = worker_estimator() if estimator is None else (estimator, None)
    source = get_source(spec["source"])(**spec["source_params"])
    rows = np.asarray(rows, dtype=np.int64)
    parts, read_errors, first_meta, template = [], [], None, None
    chunks = _chunks(rows, int(spec["chunk_size"]))
    prefetch = spec.get("prefetch", True)
    # the prefetch thread leaves the cleaning to a child process where the worker may start
    # one: a cleaning thread would take turns with inference for the interpreter lock
    in_child_processes = bool(prefetch) and can_start_processes()
    prepared = _in_order(
        lambda chunk_rows: _prepared_chunk(source, chunk_rows, spec, estimator,
                                           in_child_processes), chunks, prefetch)
    with contextlib.closing(prepared):
        for table, bad, bad_columns, errors in prepared:
            read_errors.extend(errors)
            if table is not None:
                part = _predicted(table, estimator, lock)
                first_meta = first_meta or part.meta
                template = template or part
                parts.append(part)
            if bad:
                parts.append((bad, bad_columns))
    tables = [_unreadable_rows(p[0], p[1], template) if isinstance(p, tuple) else p
              for p in parts]
    catalogue = vstack(_aligned(tables), metadata_conflicts="silent", join_type="exact")
    catalogue = catalogue[np.argsort(np.asarray(catalogue[ROW_COLUMN]), kind="stable")]
    written = np.asarray(catalogue[ROW_COLUMN], dtype=np.int64)
    if len(written) != len(rows) or np.any(written != rows):
        msg = (f"partition {index}: the catalogue rows ({len(written)}) are not exactly the "
               f"input rows ({len(rows)}); refusing to write it")
        raise GPMAstroError(msg)
    catalogue.meta = _partition_meta(first_meta, index, rows)
    directory = Path(spec["out"]) / "partitions"
    path = write_partition(catalogue, directory / f"part-{index:06d}.parquet")
    flags, counts = np.unique(np.asarray(catalogue["Z_pred_flag"], dtype=str),
                              return_counts=True)
    worker = None
    try:
        from distributed import get_worker

        worker = get_worker().address
    except ValueError:  # called outside a worker
        pass
    return {"file": f"partitions/{path.name}", "n_rows": int(len(rows)),
            "first_row": int(rows[0]), "last_row": int(rows[-1]),
            "sha256": file_sha256(path),
            "flags": {str(f): int(c) for f, c in zip(flags, counts)},
            "read_errors": read_errors, "seconds": round(time.perf_counter() - started, 3),
            "host": socket.gethostname(), "pid": os.getpid(), "worker": worker}
