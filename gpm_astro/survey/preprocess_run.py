"""`run_preprocess`: clean many cutouts (the labelled sample) on Dask, into the archive layout.

The labelled side of the paper is 195,023 cutouts (54 GB): too many to clean in one table. The
same engine as the catalogue's splits the rows to clean into partitions; each task reads its
rows from the image source a chunk at a time, runs `gpm_astro.preprocess_cutouts`, adds the
label columns, and appends the cleaned rows to one archive file of its own through the source's
writer (written under a temporary name, renamed when complete). The output folder is then an
archive that the same source reads back, and that GPM-ResNet trains from batch by batch
(``GPMResNetEstimator.fit_archive``). The manifest and the resume rules are the catalogue's.
"""

import hashlib
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
from astropy.table import Column, MaskedColumn, Table, vstack

from ..exceptions import ParameterError, SchemaError
from ..io import writable_directory
from .cluster import open_client, oversubscription_note
from .engine import (CatalogueRunError, check_run_options, compute_partitions, failed_message,
                     format_summary, remove_unfinished_partitions, run_summary,
                     source_fingerprint, start_fresh)
from .manifest import MANIFEST_FILE, Manifest, file_sha256
from .partitions import plan_fingerprint, plan_partitions
from .task import UNREADABLE, _read

__all__ = ["run_preprocess", "preprocess_partition"]

#: columns of the cleaning kept in the written sample, besides the cleaned cutout
PREPROCESS_COLUMNS = ("preprocess_ok", "preprocess_flag", "enclosing_radius")


def _label_rows(labels, label_columns):
    """Input rows (increasing) and the label columns to carry, from a matched label table."""
    if "archive_row" not in labels.colnames:
        msg = (f"labels need an archive_row column (the matched image's row, as crossmatch "
               f"against the archive's catalogue gives it); columns: {labels.colnames}")
        raise SchemaError(msg)
    column = labels["archive_row"]
    absent = np.ma.getmaskarray(column)
    if absent.any():  # np.asarray would read the hidden value (or FITS's 999999) as a row
        msg = (f"{int(absent.sum())} label row(s) have no archive_row (masked; the first is row "
               f"{int(np.flatnonzero(absent)[0])}), as crossmatch leaves the labels it found no "
               f"image for; keep the matched ones first (labels[labels['matched']])")
        raise SchemaError(msg)
    data = np.ma.getdata(column)
    if data.dtype.kind not in "iu" and not (
            data.dtype.kind == "f" and np.all(np.isfinite(data)) and np.all(data % 1 == 0)):
        msg = f"archive_row must hold whole row numbers, got dtype {data.dtype} ({data[:3]!r})"
        raise SchemaError(msg)
    rows = data.astype(np.int64)
    order = np.argsort(rows, kind="stable")
    if np.any(np.diff(rows[order]) == 0):
        msg = "labels hold the same archive_row twice; crossmatch one to one first"
        raise ParameterError(msg)
    missing = [c for c in label_columns if c not in labels.colnames]
    if missing:
        msg = f"label columns {missing} are not in the label table"
        raise SchemaError(msg)
    return rows[order], labels[order]


def _labels_fingerprint(labels, label_columns):
    """SHA-256 of the label columns' values and masks (in row order): a rerun with other label
    values is another recipe, never resumed into files holding the old ones."""
    digest = hashlib.sha256()
    for name in label_columns:
        column = labels[name]
        data = np.ascontiguousarray(np.ma.getdata(column))
        if data.dtype.kind == "O":
            data = data.astype(str)
        digest.update(f"|{name}|{data.dtype.str}|{data.shape}|".encode())
        digest.update(data.tobytes())
        digest.update(np.ascontiguousarray(np.ma.getmaskarray(column)).tobytes())
    return digest.hexdigest()


def _with_labels(cleaned, labels, label_columns):
    out = cleaned.copy(copy_data=False)
    for name in label_columns:
        out[name] = labels[name]
    out["input_row"] = Column(np.asarray(cleaned["archive_row"], np.int64),
                              description="row of the galaxy in the input archive")
    out.remove_column("archive_row")  # the written archive numbers its own rows
    return out


def _unreadable(source, rows):
    """Rows whose image cannot be read: catalogue columns, a zero cutout, flagged."""
    table = source.query(rows=list(map(int, rows)), cutouts=False)  # raises if this fails too
    n = len(table)
    table["cutout"] = np.zeros((n, 3, 152, 152), np.float32)
    table["preprocess_ok"] = np.zeros(n, bool)
    table["preprocess_flag"] = np.full(n, UNREADABLE)
    table["enclosing_radius"] = MaskedColumn(np.zeros(n), mask=np.ones(n, bool))
    return table


def preprocess_partition(index, rows, labels, spec):
    """Clean one partition's cutouts and write them as one archive file (on a Dask worker).

    Parameters
    ----------
    index : int
        The partition's index.
    rows : numpy.ndarray of int64
        Its input rows, increasing.
    labels : astropy.table.Table
        The label columns of those rows, in the same order.
    spec : dict
        ``source``, ``source_params``, ``chunk_size``, ``preprocess``, ``preprocess_jobs``,
        ``label_columns``, ``out`` and ``start`` (its first output row).

    Returns
    -------
    dict
        The manifest record: ``file``, ``n_rows``, ``sha256``, ``flags``, ``read_errors``, ...
    """
    from ..plugins import get_source
    from ..preprocessing import preprocess_cutouts

    started = time.perf_counter()
    source = get_source(spec["source"])(**spec["source_params"])
    columns = list(spec["label_columns"]) + list(PREPROCESS_COLUMNS) + ["input_row"]
    flags, read_errors = {}, []
    chunk = int(spec["chunk_size"])
    with source.writer(spec["out"], start=spec["start"], rows_per_file=len(rows),
                       extra_columns=columns) as writer:
        for begin in range(0, len(rows), chunk):
            chunk_rows = rows[begin:begin + chunk]
            table, bad, errors = _read(source, chunk_rows, True)
            read_errors.extend(errors)
            parts = []
            if table is not None and len(table):
                parts.append(preprocess_cutouts(table, config=spec["preprocess"],
                                                n_jobs=spec["preprocess_jobs"], progress=False))
            if bad:
                parts.append(_unreadable(source, bad))
            cleaned = vstack(parts, metadata_conflicts="silent") if len(parts) > 1 else parts[0]
            cleaned = cleaned[np.argsort(np.asarray(cleaned["archive_row"]), kind="stable")]
            if not np.array_equal(np.asarray(cleaned["archive_row"]), chunk_rows):
                msg = f"partition {index}: cleaned rows are not the input rows; not written"
                raise SchemaError(msg)
            writer.append(_with_labels(cleaned, labels[begin:begin + chunk],
                                       spec["label_columns"]))
            for flag in np.asarray(cleaned["preprocess_flag"], dtype=str):
                flags[flag] = flags.get(flag, 0) + 1
    (path,) = writer.paths
    return {"file": path.name, "n_rows": int(len(rows)), "first_row": int(rows[0]),
            "last_row": int(rows[-1]), "sha256": file_sha256(path), "flags": flags,
            "read_errors": read_errors, "seconds": round(time.perf_counter() - started, 3),
            "host": socket.gethostname(), "pid": os.getpid()}


def run_preprocess(images, out, labels, *, label_columns=("oh_p50",),
                   source="legacysurvey_archive", source_params=None, partition_size=10_000,
                   chunk_size=256, preprocess="default", preprocess_jobs=1, client=None,
                   scheduler=None, n_workers=None, threads_per_worker=1, processes=True,
                   dashboard_address=":8787", restart=False, progress=True, log=None):
    """Clean the cutouts of matched labelled galaxies into an archive folder, on Dask.

    Parameters
    ----------
    images : str or path-like
        The image archive (as for `gpm_astro.survey.run_catalogue`).
    out : str or path-like
        Output folder: ``images_npix152_*.h5`` (one file per partition, rows in the order of
        ``archive_row``) holding the cleaned cutouts, the archive's catalogue columns, the
        label columns, ``preprocess_ok``, ``preprocess_flag``, ``enclosing_radius`` and
        ``input_row``; plus ``manifest.json``.
    labels : astropy.table.Table
        One row per galaxy to clean, with ``archive_row`` (its row in ``images``, as a
        crossmatch against the archive's catalogue gives; masked, repeated or out-of-range
        values are refused) and the ``label_columns``.
    label_columns : sequence of str, optional
        Label columns written beside the cutouts (the training target, e.g. ``oh_p50``).
    source, source_params, partition_size, chunk_size, preprocess, preprocess_jobs, client, \
scheduler, n_workers, threads_per_worker, processes, dashboard_address, restart, progress, log
        As for `gpm_astro.survey.run_catalogue`.

    Returns
    -------
    dict
        The summary (rows, ``preprocess_flag`` counts, throughput, failed partitions).

    Raises
    ------
    SchemaError, ParameterError
        Bad labels or options, or an output folder holding another recipe.
    CatalogueRunError
        Some partitions failed; a rerun retries them.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    partition_size, chunk_size = check_run_options(
        partition_size=partition_size, chunk_size=chunk_size, preprocess=preprocess,
        preprocess_jobs=preprocess_jobs, n_workers=n_workers,
        threads_per_worker=threads_per_worker)
    label_columns = list(label_columns)
    rows, labels = _label_rows(labels, label_columns)
    inside = Path(images).resolve()
    if inside.is_dir() and inside in (Path(out).resolve(), *Path(out).resolve().parents):
        msg = (f"the output folder {str(out)!r} lies inside the image archive {str(images)!r}: "
               f"its cleaned archive files would be read as part of the archive (which is "
               f"searched recursively); choose a folder outside it")
        raise ParameterError(msg)
    out = writable_directory(out, "output folder of the cleaned sample")
    if restart:
        start_fresh(out, log)
        for stale in out.glob("images_npix*_*_*.h5"):
            stale.unlink()
    written = sorted(out.glob("images_npix*_*_*.h5"))
    if written and not (out / MANIFEST_FILE).is_file():
        msg = (f"{str(out)!r} holds {len(written)} archive file(s) (first {written[0].name!r}) "
               f"but no manifest recording what made them; choose a new output folder, or "
               f"restart to discard them")
        raise ParameterError(msg)
    source_kwargs = {"path": str(Path(images).resolve()), **dict(source_params or {})}
    from ..plugins import get_source

    reader = get_source(source)(**source_kwargs)
    try:  # every archive_row within the archive, checked here rather than in a failed task
        reader.select_rows(rows=rows)
    except ParameterError as exc:
        msg = f"the labels' archive_row values do not fit the archive {str(images)!r}: {exc}"
        raise ParameterError(msg) from exc
    content = source_fingerprint(reader)
    partitions = plan_partitions(rows, partition_size)
    spec = {"source": source, "source_params": source_kwargs, "chunk_size": chunk_size,
            "preprocess": preprocess, "preprocess_jobs": preprocess_jobs,
            "label_columns": label_columns, "out": str(out)}
    label_digest = plan_fingerprint(rows, partition_size)
    recipe = {"kind": "preprocess",
              "input": {"source": source, "params": source_kwargs, "n_rows": int(len(rows)),
                        "partition_size": partition_size, "n_partitions": len(partitions),
                        "plan_sha256": label_digest, "label_columns": label_columns,
                        "labels_sha256": _labels_fingerprint(labels, label_columns),
                        "content": content},
              "processing": {"preprocess": preprocess, "chunk_size": chunk_size}}
    manifest = Manifest(out, recipe).open()
    done = manifest.resumable(log)
    # files not finished (damaged, unrecorded, another plan's) would be read back as part of
    # the sample: only this run's finished partitions stay
    remove_unfinished_partitions(manifest, done, written)
    todo = [p for p in partitions if p.index not in done]
    starts = np.concatenate([[0], np.cumsum([p.n_rows for p in partitions])])

    def call_for(partition):
        first = partition.index * partition_size
        part_labels = Table({name: labels[name][first:first + partition.n_rows]
                             for name in label_columns})
        return (preprocess_partition, partition.index, partition.rows, part_labels,
                {**spec, "start": int(starts[partition.index])})

    note = oversubscription_note(client, scheduler, n_workers, threads_per_worker)
    if note:
        log(note)
    with open_client(client=client, scheduler=scheduler, n_workers=n_workers,
                     threads_per_worker=threads_per_worker, processes=processes,
                     dashboard_address=dashboard_address, log=log) as dask_client:
        dashboard, address = dask_client.dashboard_link, dask_client.scheduler.address
        workers = dask_client.scheduler_info(n_workers=-1).get("workers", {})
        log(f"gpm-astro preprocess: scheduler {address}, {len(workers)} worker(s)")
        log(f"dashboard: {dashboard}")
        manifest.start_session(scheduler=address, dashboard=dashboard,
                               n_workers=len(workers), n_todo=len(todo))
        began = time.perf_counter()
        computed_rows, failed = compute_partitions(
            dask_client, todo, call_for, manifest, progress=progress,
            n_partitions=len(partitions), n_done=len(done), resources=None)
        seconds = time.perf_counter() - began
    summary = run_summary(manifest, len(partitions), computed_rows, seconds,
                          max(1, len(workers)), failed)
    summary.update(dashboard=dashboard, scheduler=address, out=str(out))
    manifest.end_session(seconds=summary["seconds"], computed_rows=computed_rows,
                         failed=failed)
    log(format_summary(summary, what="cleaned sample", ok_label="clean"))
    if failed:
        raise CatalogueRunError(failed_message(failed, "call"))
    return summary
