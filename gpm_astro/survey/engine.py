"""`run_catalogue`: the application catalogue of a whole survey, on Dask, resumable.

The client plans partitions (row ranges of the image source), checks the manifest, registers
the estimator plugin (the model is loaded once per worker), submits one task per partition
that is not finished yet, and records each partition in the manifest as it completes. It never
touches a cutout itself.
"""

import shutil
import sys
import time
import uuid
from pathlib import Path

from ..exceptions import GPMAstroError, ParameterError
from ..io import writable_directory
from ..tables import require_positive_int, resolve_columns
from .cluster import (gpu_resources, open_client, oversubscription_note,
                      workers_have_spare_cores)
from .manifest import MANIFEST_FILE, Manifest, file_sha256
from .parquet import partition_files
from .partitions import plan_fingerprint, plan_partitions, select_input_rows
from .task import process_partition
from .worker import EstimatorPlugin, load_estimator

__all__ = ["run_catalogue", "CatalogueRunError", "compute_partitions", "format_summary",
           "failed_message", "check_run_options"]


class CatalogueRunError(GPMAstroError):
    """Some partitions failed; the others are written and recorded, a rerun retries these."""


def check_run_options(*, partition_size, chunk_size, preprocess, preprocess_jobs, n_workers,
                      threads_per_worker):
    """Check the options of a run before anything is written, so that a typo is one error
    naming it, not a failed task per partition and a manifest recording the typo.

    Returns
    -------
    (int, int)
        ``partition_size`` and ``chunk_size`` as ints.

    Raises
    ------
    ParameterError, UnknownPluginError
        Naming the bad option and its value.
    """
    from ..preprocessing import resolve_steps

    partition_size = require_positive_int(partition_size, "partition_size")
    chunk_size = require_positive_int(chunk_size, "chunk_size")
    require_positive_int(preprocess_jobs, "preprocess_jobs")
    if n_workers is not None:  # 0 would start a cluster without workers and wait for ever
        require_positive_int(n_workers, "n_workers (local workers)")
    require_positive_int(threads_per_worker, "threads_per_worker")
    if not isinstance(preprocess, str):
        msg = f"preprocess must be the name of a preprocessing configuration, got {preprocess!r}"
        raise ParameterError(msg)
    resolve_steps(config=preprocess)
    return partition_size, chunk_size


def _model_record(estimator, weights, fit_table, fit_target, params):
    """The estimator part of the recipe, with checksums of the files it reads."""
    record = {"estimator": estimator, "weights": None if weights is None else str(weights),
              "fit_table": None if fit_table is None else str(Path(fit_table).resolve()),
              "fit_target": fit_target, "params": dict(params or {})}
    if weights is not None:
        path = Path(weights)
        card = path / "model_card.json"
        if card.is_file():
            import json

            record["weights"] = str(path.resolve())
            record["weights_sha256"] = json.loads(card.read_text()).get("weights_sha256")
        elif path.is_file():
            record["weights"] = str(path.resolve())
            record["weights_sha256"] = file_sha256(path)
    if fit_table is not None:
        record["fit_table_sha256"] = file_sha256(fit_table)
    return record


def source_fingerprint(reader):
    """What identifies the source's content (``reader.fingerprint()``, e.g. checksums of each
    archive file's coordinates), or None for a source without one; part of a run's recipe, so
    that another archive put at the same path is not resumed into."""
    fingerprint = getattr(reader, "fingerprint", None)
    return fingerprint() if callable(fingerprint) else None


def _check_source_columns(reader, rows, instance, estimator):
    """`SchemaError` unless the source's rows hold the columns the estimator reads, with the
    cutouts it takes (``check_table``: e.g. a network trained on 64 px cutouts against a
    152 px archive): asked of one row here, so that a mismatch is one error, not a failed
    task per partition."""
    needed = list(getattr(instance, "required_columns", ()))
    cutouts = any(c.lower() == "cutout" for c in needed)
    first = reader.query(rows=[int(rows[0])], cutouts=cutouts)
    resolve_columns(first, needed, f"estimator {estimator!r} (in the image source)")
    check_table = getattr(instance, "check_table", None)
    if callable(check_table):
        check_table(first)


def _model_version(instance):
    """What the loaded estimator says about itself (its model card, when it has one)."""
    card = getattr(instance, "model_card", None)
    if not callable(card):
        return {"class": type(instance).__name__}
    try:
        card = card()
    except GPMAstroError:
        return {"class": type(instance).__name__}
    return {"class": type(instance).__name__, "package_version": card.get("package_version"),
            "architecture": card.get("architecture", {}).get("name"),
            "target": card.get("target")}


def _merge_target(out, merge):
    """Where ``merge`` puts the merged catalogue (relative names in ``out``), checked: a
    format `gpm_astro.io.write_table` knows by the name, in an existing folder."""
    if merge is None:
        return None
    from ..io import FORMATS

    target = Path(merge)
    target = target if target.is_absolute() else out / target
    if not any(target.name.lower().endswith(ending) for ending in FORMATS):
        msg = (f"merge: cannot tell the table format of {str(target)!r} from its name; use "
               f"one of the endings {sorted(FORMATS)}")
        raise ParameterError(msg)
    if not target.parent.is_dir():
        msg = f"merge: the folder of {str(target)!r} does not exist"
        raise ParameterError(msg)
    return target


def remove_merged(out, merged, log):
    """Delete the merged catalogue files a manifest records (``merged``: their paths), since
    they hold partitions that are being discarded or computed again; one outside ``out`` is
    left where it is, with a note that it is stale."""
    for name in merged:
        path = Path(name)
        if not path.exists():
            continue
        if out.resolve() in path.resolve().parents:
            path.unlink()
            log(f"removed the merged catalogue {str(path)!r}: its partitions are discarded or "
                f"computed again (--merge writes it anew)")
        else:
            log(f"note: {str(path)!r} was merged from this folder's earlier partitions and is "
                f"out of date now")


def start_fresh(out, log=print):
    import json

    manifest = out / MANIFEST_FILE
    try:
        merged = json.loads(manifest.read_text()).get("merged", []) if manifest.is_file() else []
    except (OSError, ValueError, AttributeError):
        merged = []
    remove_merged(out, merged, log)
    manifest.unlink(missing_ok=True)
    shutil.rmtree(out / "partitions", ignore_errors=True)


def refuse_unrecorded_partitions(out):
    """Refuse a folder whose ``partitions/`` holds files but that has no manifest: nothing
    says which run (model, selection, plan) made them."""
    found = partition_files(out)
    if found and not (out / MANIFEST_FILE).is_file():
        msg = (f"{str(out / 'partitions')!r} holds {len(found)} partition file(s) (first "
               f"{found[0].name!r}) but {str(out)!r} has no manifest recording what made them; "
               f"choose a new output folder, or restart to discard them")
        raise ParameterError(msg)


def remove_unfinished_partitions(manifest, done, files=None):
    """Delete the ``files`` (default: those in ``partitions/``) that are not finished
    partitions ``done`` of this run (a damaged file, one written before a crash but not
    recorded, one of an earlier plan), so that the folder holds nothing but this run's
    partitions for any reader."""
    keep = {manifest.directory / manifest.data["partitions"][f"{index:06d}"]["file"]
            for index in done}
    for path in partition_files(manifest.directory) if files is None else files:
        if path.exists() and path not in keep:
            path.unlink()


def run_summary(manifest, n_partitions, computed_rows, seconds, n_workers, failed):
    flags = {}
    n_rows = 0
    for record in manifest.data["partitions"].values():
        n_rows += record["n_rows"]
        for flag, count in record["flags"].items():
            flags[flag] = flags.get(flag, 0) + count
    rate = computed_rows / seconds if seconds > 0 else 0.0
    return {"n_partitions": n_partitions, "n_finished": len(manifest.data["partitions"]),
            "n_failed": len(failed), "failed": failed, "n_rows": n_rows,
            "flags": dict(sorted(flags.items(), key=lambda kv: -kv[1])),
            "computed_rows": computed_rows, "seconds": round(seconds, 3),
            "rows_per_second": round(rate, 2), "n_workers": n_workers,
            "rows_per_second_per_worker": round(rate / max(1, n_workers), 2)}


def run_catalogue(images, out, *, estimator="gpm_resnet", weights=None, fit_table=None,
                  fit_target=None, estimator_params=None, source="legacysurvey_archive",
                  source_params=None, source_type="EXP", partition_size=10_000,
                  chunk_size=256, preprocess="default", preprocess_jobs=1, prefetch="auto",
                  client=None, scheduler=None, n_workers=None, threads_per_worker=1,
                  processes=True, dashboard_address=":8787", restart=False, merge=None,
                  progress=True, log=None):
    """Predict Z for every selected galaxy of an image source, partition by partition.

    Parameters
    ----------
    images : str or path-like
        The image source's location: an archive directory or file (``legacysurvey_archive``,
        e.g. what ``gpm-astro mock`` or the cutout service's ``output=`` writes).
    out : str or path-like
        Output folder: ``partitions/part-NNNNNN.parquet``, ``manifest.json`` and, with
        ``merge``, the merged catalogue. A rerun into the same folder computes only the
        partitions not finished yet.
    estimator : str, optional
        Registered estimator name.
    weights : str or path-like, optional
        Saved model (directory or file) or registered weights name.
    fit_table : str or path-like, optional
        Table file to fit the estimator on first (e.g. ``colour_polynomial``), on each worker.
    fit_target : str, optional
        Target column of that fit.
    estimator_params : dict, optional
        Estimator constructor keywords.
    source : str, optional
        Registered data source that reads ``images`` (needs ``select_rows`` and ``query(rows=,
        cutouts=)``, and tables with ``archive_row``).
    source_params : dict, optional
        More keywords of the source.
    source_type : str or None, optional
        Tractor type to catalogue (the paper: ``"EXP"``); None for every row.
    partition_size : int, optional
        Input rows per partition (one task, one file).
    chunk_size : int, optional
        Rows a task reads and processes at a time (bounds a worker's memory); a partition's
        first three chunks are an eighth, a quarter and a half of it.
    preprocess : str, optional
        Preprocessing configuration.
    preprocess_jobs : int, optional
        Processes each task's `preprocess_cutouts` may use (``n_jobs``; for GPU workers).
    prefetch : bool or "auto", optional
        Each task reads and cleans its next chunk in a background thread while the current
        one is predicted (one chunk ahead). It pays where a worker has a spare core or waits on
        its disk; where every core runs a task it only takes turns with them. "auto" (default):
        on when every worker's machine has more cores than task threads
        (`gpm_astro.survey.cluster.workers_have_spare_cores`). The output is the same either
        way, so it is no part of the run's recipe.
    client, scheduler, n_workers, threads_per_worker, processes, dashboard_address
        Where to run; see `gpm_astro.survey.cluster.open_client`.
    restart : bool, optional
        Discard the folder's manifest and partitions first.
    merge : str or path-like, optional
        When every partition is finished, also write them as one catalogue file (``.fits``
        or ``.ecsv``; relative names go in ``out``).
    progress : bool, optional
        Progress bar over partitions.
    log : callable, optional
        Receives the messages (dashboard address, summary); default print to stderr.

    Returns
    -------
    dict
        The summary: ``n_rows``, ``flags`` (``Z_pred_flag`` value -> count), ``seconds``,
        ``rows_per_second``, ``rows_per_second_per_worker``, ``n_partitions``,
        ``n_finished``, ``failed``, ``dashboard``, ``scheduler``, ``merged``, ``prefetch``.

    Raises
    ------
    ParameterError
        Bad options, an unreadable source, or an output folder holding another recipe.
    CatalogueRunError
        Some partitions failed (the others are kept; a rerun retries only the failed ones).
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    partition_size, chunk_size = check_run_options(
        partition_size=partition_size, chunk_size=chunk_size, preprocess=preprocess,
        preprocess_jobs=preprocess_jobs, n_workers=n_workers,
        threads_per_worker=threads_per_worker)
    if not (isinstance(prefetch, bool) or prefetch == "auto"):
        msg = f'prefetch must be True, False or "auto", got {prefetch!r}'
        raise ParameterError(msg)
    out = writable_directory(out, "catalogue output folder")
    merge_target = _merge_target(out, merge)  # a bad name fails now, not after the last task
    if restart:
        start_fresh(out, log)
    refuse_unrecorded_partitions(out)
    (out / "partitions").mkdir(exist_ok=True)

    from ..plugins import get_source

    source_kwargs = {"path": str(Path(images).resolve()), **dict(source_params or {})}
    reader = get_source(source)(**source_kwargs)
    rows = select_input_rows(reader, source_type=source_type)
    if len(rows) == 0:
        msg = (f"no galaxy of source_type {source_type!r} in {str(images)!r}; nothing to "
               f"catalogue")
        raise ParameterError(msg)
    partitions = plan_partitions(rows, partition_size)
    model = _model_record(estimator, weights, fit_table, fit_target, estimator_params)
    instance = load_estimator(model)  # here first, so a bad model fails before any task
    if getattr(instance, "requires_fit", False) and callable(getattr(instance, "is_fitted", None)) \
            and not instance.is_fitted():
        msg = (f"estimator {estimator!r} must be trained before it predicts: give weights "
               f"(--weights MODEL) or a table to fit it on (--fit-table TABLE)")
        raise ParameterError(msg)
    _check_source_columns(reader, rows, instance, estimator)
    if getattr(instance, "output_column", None) != "Z_pred":
        msg = (f"estimator {estimator!r} predicts {getattr(instance, 'output_column', None)!r}"
               f"; the catalogue needs a metallicity estimator (Z_pred)")
        raise ParameterError(msg)
    spec = {"source": source, "source_params": source_kwargs, "chunk_size": chunk_size,
            "preprocess": preprocess, "preprocess_jobs": preprocess_jobs,
            "cutouts": "cutout" in getattr(instance, "required_columns", ()),
            "out": str(out)}
    recipe = {"input": {"source": source, "params": source_kwargs, "source_type": source_type,
                        "n_rows": int(len(rows)), "partition_size": partition_size,
                        "n_partitions": len(partitions),
                        "plan_sha256": plan_fingerprint(rows, partition_size),
                        "content": source_fingerprint(reader)},
              "model": {**model, "version": _model_version(instance)},
              "processing": {"preprocess": preprocess, "chunk_size": chunk_size,
                             "reads_cutouts": spec["cutouts"]}}
    del instance
    manifest = Manifest(out, recipe).open()
    done = manifest.resumable(log)
    remove_unfinished_partitions(manifest, done)
    todo = [p for p in partitions if p.index not in done]
    if todo and manifest.data.get("merged"):
        remove_merged(out, manifest.data.pop("merged"), log)
        manifest.save()

    note = oversubscription_note(client, scheduler, n_workers, threads_per_worker)
    if note:
        log(note)
    with open_client(client=client, scheduler=scheduler, n_workers=n_workers,
                     threads_per_worker=threads_per_worker, processes=processes,
                     dashboard_address=dashboard_address, log=log) as dask_client:
        dashboard = dask_client.dashboard_link
        address = dask_client.scheduler.address
        workers = dask_client.scheduler_info(n_workers=-1).get("workers", {})
        log(f"gpm-astro catalogue: scheduler {address}, {len(workers)} worker(s)")
        log(f"dashboard: {dashboard}")
        if not workers:  # a batch queue's workers may come much later: say what it waits for
            log("waiting for the first worker to join the scheduler (Ctrl-C stops; finished "
                "partitions are kept)")
        if prefetch == "auto":
            prefetch = workers_have_spare_cores(dask_client)
        spec["prefetch"] = prefetch
        log(f"prefetch of the next chunk in each task: {'on' if prefetch else 'off'}")
        log(f"{len(rows):,d} galaxies in {len(partitions):,d} partitions; "
            f"{len(done):,d} already finished, {len(todo):,d} to compute")
        manifest.start_session(scheduler=address, dashboard=dashboard,
                               n_workers=len(workers), n_todo=len(todo))
        loading = time.perf_counter()
        if todo:
            cleaning = ({"preprocess": preprocess, "processes": preprocess_jobs}
                        if prefetch and spec["cutouts"] else None)
            dask_client.register_plugin(EstimatorPlugin(model, cleaning=cleaning))
            log(f"model loaded on the workers in {time.perf_counter() - loading:.1f} s")
        started = time.perf_counter()
        computed_rows, failed = compute_partitions(
            dask_client, todo, lambda p: (process_partition, p.index, p.rows, spec), manifest,
            progress=progress, n_partitions=len(partitions), n_done=len(done))
        seconds = time.perf_counter() - started
    summary = run_summary(manifest, len(partitions), computed_rows, seconds,
                          max(1, len(workers)), failed)
    summary.update(dashboard=dashboard, scheduler=address, merged=None, out=str(out),
                   prefetch=prefetch)
    manifest.end_session(seconds=summary["seconds"], computed_rows=computed_rows,
                         failed=failed)
    log(format_summary(summary))
    if failed:
        raise CatalogueRunError(failed_message(failed, "command"))
    if merge is not None:
        from .merge import merge_catalogue

        summary["merged"] = str(merge_catalogue(out, merge_target))
        manifest.record_merged(Path(summary["merged"]).resolve())
        log(f"merged catalogue: {summary['merged']}")
    return summary


def compute_partitions(client, todo, call_for, manifest, *, progress, n_partitions, n_done,
                       resources="auto"):
    """Submit one task per partition, record each in the manifest as it finishes.

    Parameters
    ----------
    client : distributed.Client
    todo : list of Partition
    call_for : callable
        ``call_for(partition)`` gives ``(function, *args)`` of its task; the function returns
        the partition's manifest record (with ``n_rows``).
    manifest : Manifest
    progress : bool
    n_partitions, n_done : int
        For the progress bar over all partitions.
    resources : dict, None or "auto"
        Dask resources of each task; "auto" asks for a GPU where workers have one.

    Returns
    -------
    (int, list)
        Rows computed, and ``{"index", "error"}`` of each failed partition.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    if not todo:
        return 0, []
    resources = gpu_resources(client) if resources == "auto" else resources
    token = uuid.uuid4().hex[:8]
    futures = {}
    for partition in todo:
        function, *args = call_for(partition)
        future = client.submit(function, *args,
                               key=f"gpm-astro-partition-{partition.index:06d}-{token}",
                               pure=False, resources=resources)
        futures[future] = partition
    computed_rows, failed = 0, []
    bar = tqdm(total=n_partitions, initial=n_done, desc="partitions", unit="partition",
               disable=not progress)
    try:
        for future in as_completed(futures):
            partition = futures.pop(future)
            if future.status == "error":
                error = future.exception()
                failed.append({"index": partition.index,
                               "error": f"{type(error).__name__}: {error}"})
            elif future.status != "finished":  # cancelled (e.g. by the scheduler), or lost:
                # a failure to report like any other, not a crash that drops the others
                failed.append({"index": partition.index,
                               "error": f"the task was {future.status} by Dask"})
            else:
                result = future.result()
                manifest.record(partition.index, result)
                computed_rows += result["n_rows"]
            future.release()
            bar.update(1)
    finally:
        bar.close()
    return computed_rows, failed


def failed_message(failed, what):
    """The error of a run some of whose partitions failed: which, and the first error."""
    indices = sorted(f["index"] for f in failed)
    named = indices if len(indices) <= 20 else [*indices[:20], "..."]
    first = min(failed, key=lambda f: f["index"])
    return (f"{len(failed)} partition(s) {named} failed (partition {first['index']}: "
            f"{first['error']}); the others are written; run the same {what} again to retry "
            f"them")


def format_summary(summary, *, what="catalogue", ok_label="predicted"):
    """The end-of-run summary as text: rows, rows flagged by reason, throughput.

    ``what`` names the product (``"cleaned sample"`` for `run_preprocess`), ``ok_label`` the
    rows flagged ``ok`` (``"clean"`` there: nothing is predicted)."""
    lines = [f"{what}: {summary['n_rows']:,d} rows in {summary['n_finished']:,d} of "
             f"{summary['n_partitions']:,d} partitions"]
    ok = summary["flags"].get("ok", 0)
    lines.append(f"  {ok_label}: {ok:,d}")
    for flag, count in summary["flags"].items():
        if flag != "ok":
            lines.append(f"  flagged {flag}: {count:,d}")
    lines.append(f"this session: {summary['computed_rows']:,d} rows in {summary['seconds']:.1f} s "
                 f"= {summary['rows_per_second']:.1f} rows/s "
                 f"({summary['rows_per_second_per_worker']:.1f} per worker, "
                 f"{summary['n_workers']} worker(s))")
    if summary["failed"]:
        lines.append(f"failed partitions: {[f['index'] for f in summary['failed']]}")
    return "\n".join(lines)
