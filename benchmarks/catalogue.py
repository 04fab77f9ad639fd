"""Throughput, scaling and memory of the catalogue engine (`gpm_astro.survey.run_catalogue`).

Usage::

    python benchmarks/catalogue.py [--unique 500] [--rows 10000 50000] [--partition-size 1000]
                                   [--step-rows 1000] [--weights MODEL] [--paper-rows 120]
                                   [--device cpu]

Everything is measured in one run, on the same cutouts and the same models:

1. what each step of a catalogue task costs a row on one thread, without the prefetch
   (reading, preprocessing, predicting, catalogue columns and writing);
2. the bare rate of ``predict_metallicity`` on cleaned cutouts already in memory, one torch
   thread (what one worker's inference can do at best);
3. the end-to-end rate of ``run_catalogue`` with one local worker process (one task thread) on
   the first archive size, each as a ratio of (2): with the prefetch as ``run_catalogue``'s own
   cluster runs it (a background thread reads the next chunk and a child process cleans it,
   on a core the worker's task does not use), with the prefetch on a daemonic worker (which
   may start no process, so the thread cleans too, taking turns with inference for the
   interpreter lock), with Dask's statistical profiler on (Dask's default; the engine's own
   clusters turn it off), and without the prefetch (one core's work);
4. the same with two workers (where every core runs a task, ``prefetch="auto"`` turns the
   prefetch off), as a ratio of one worker;
5. the peak resident memory of each worker (``VmHWM``, with its child processes) with two
   workers on each archive size: it should not grow with the number of rows;
6. the same ratio as (3) for the paper's network (the ``gpm_resnet`` default, ``config="paper"``,
   fitted for one epoch on 16 rows: its accuracy does not matter, its cost does) on the first
   ``--paper-rows`` rows;
7. a projection of the paper's run (8,462,944 EXP galaxies) on N CPU cores and on one GPU
   from the measured rates (``--device cuda`` measures the bare GPU rate of the paper's
   network; otherwise the GPU line is the bound set by the CPU reading and preprocessing).

The archives are virtual HDF5 datasets that repeat ``--unique`` mock galaxies (so 50,000 rows
take no disk space beyond the unique ones); every row is read, cleaned and predicted for real.
Without ``--weights`` a lite GPM-ResNet is fitted for one epoch on the mock cutouts (its
accuracy does not matter here; its cost is the lite network's). Close other work first: the
numbers are wall-clock rates.
"""

import argparse
import functools
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

PAPER_EXP_GALAXIES = 8_462_944


def make_unique_archive(directory, n_unique, seed):
    from gpm_astro_plugins.legacysurvey.archive import write_archive
    from gpm_astro_plugins.mock import MockSky

    data = MockSky(n_galaxies=n_unique, seed=seed, progress=False).generate()
    return write_archive(data.images, directory)[0]


def make_virtual_archive(source_file, directory, n_rows):
    """An archive file of ``n_rows`` rows whose datasets repeat those of ``source_file``."""
    from gpm_astro_plugins.legacysurvey.archive import archive_filename

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / archive_filename(0, n_rows)
    with h5py.File(source_file, "r") as source, h5py.File(path, "w") as out:
        for name, dataset in source.items():
            n_unique = dataset.shape[0]
            layout = h5py.VirtualLayout(shape=(n_rows,) + dataset.shape[1:], dtype=dataset.dtype)
            vsource = h5py.VirtualSource(dataset)
            for start in range(0, n_rows, n_unique):
                stop = min(start + n_unique, n_rows)
                layout[start:stop] = vsource[0:stop - start]
            out.create_virtual_dataset(name, layout)
            for key, value in dataset.attrs.items():
                out[name].attrs[key] = value
    return directory


def fit_lite_model(archive_file, directory):
    from gpm_astro.plugins import get_estimator, get_source

    table = get_source("legacysurvey_archive")(path=archive_file).query(rows=slice(0, 64))
    table["oh_p50"] = np.random.default_rng(0).normal(8.9, 0.15, len(table))
    estimator = get_estimator("gpm_resnet")(config="lite", epochs=1, progress=False)
    estimator.fit(table).save(directory)
    return directory


def fit_paper_model(archive_file, directory):
    """The paper's network (``config="paper"``) after one epoch on 16 rows: its cost only."""
    from gpm_astro.plugins import get_estimator, get_source

    table = get_source("legacysurvey_archive")(path=archive_file).query(rows=slice(0, 16))
    table["oh_p50"] = np.random.default_rng(0).normal(8.9, 0.15, len(table))
    estimator = get_estimator("gpm_resnet")(config="paper", epochs=1, batch_size=8,
                                            progress=False)
    estimator.fit(table).save(directory)
    return directory


def step_costs(archive_file, weights, n_rows, chunk_size, out):
    """Milliseconds a row of each step of a catalogue task, one thread, no prefetch.

    The task's own functions, chunk by chunk as `gpm_astro.survey.task.process_partition`
    calls them (the same chunks): read (``_read``), preprocess (``_cleaned``), predict and
    catalogue columns (``_predicted``, i.e. ``predict_metallicity`` and ``make_catalogue``),
    then one ``write_partition`` of the rows.
    """
    import cv2
    import torch
    from astropy.table import vstack

    from gpm_astro.plugins import get_estimator, get_source
    from gpm_astro.survey import task
    from gpm_astro.survey.parquet import write_partition

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    estimator = get_estimator("gpm_resnet").load(weights, progress=False)
    source = get_source("legacysurvey_archive")(path=archive_file)
    spent = dict.fromkeys(("read", "preprocess", "predict + catalogue columns", "write"), 0.0)
    warm = task._cleaned(task._read(source, np.arange(16), True)[0], estimator, "default", 1)
    # a worker imports pyarrow once: the first write's import is no cost of a partition
    write_partition(task._predicted(warm, estimator, None), Path(out).with_suffix(".warm"))
    parts = []
    for rows in task._chunks(np.arange(n_rows), chunk_size):
        began = time.perf_counter()
        table, _, _ = task._read(source, rows, True)
        read = time.perf_counter()
        table = task._cleaned(table, estimator, "default", 1)
        cleaned = time.perf_counter()
        parts.append(task._predicted(table, estimator, None))
        done = time.perf_counter()
        spent["read"] += read - began
        spent["preprocess"] += cleaned - read
        spent["predict + catalogue columns"] += done - cleaned
    began = time.perf_counter()
    write_partition(vstack(parts, metadata_conflicts="silent"), out)
    spent["write"] = time.perf_counter() - began
    return {name: 1000 * seconds / n_rows for name, seconds in spent.items()}


def bare_predict_rate(archive_file, weights, n_rows, device="cpu", config_rows=None,
                      repeats=5):
    """Rows per second of predict_metallicity on cleaned cutouts in memory, one thread: the
    rate of each of ``repeats`` passes after a warm-up, and the rows predicted."""
    import torch

    from gpm_astro import predict_metallicity, preprocess_cutouts
    from gpm_astro.plugins import get_estimator, get_source

    torch.set_num_threads(1)
    table = get_source("legacysurvey_archive")(path=archive_file).query(
        rows=slice(0, config_rows or n_rows))
    clean = preprocess_cutouts(table, progress=False)
    estimator = get_estimator("gpm_resnet").load(weights, device=device, progress=False)
    predict_metallicity(clean[:64 if repeats > 1 else 8], estimator=estimator,
                        progress=False)  # warm up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict_metallicity(clean, estimator=estimator, progress=False)
        rates.append(len(clean) / (time.perf_counter() - started))
    return rates, int(np.sum(clean["preprocess_ok"]))


def paper_network_rate(archive_file, n_rows, device):
    """Images per second through the paper's full network (untrained weights), one thread."""
    import torch

    from gpm_astro.plugins import get_source
    from gpm_astro_plugins.gpm_resnet.model import build_model

    torch.set_num_threads(1)
    model = build_model("paper").eval().to(device)
    table = get_source("legacysurvey_archive")(path=archive_file).query(rows=slice(0, n_rows))
    x = torch.as_tensor(np.asarray(table["cutout"], dtype=np.float32)).to(device)
    batch = 8 if device == "cpu" else 256
    with torch.inference_mode():
        model(x[:2])
        if device != "cpu":
            x = x.repeat(max(1, 1024 // len(x)), 1, 1, 1)
            torch.cuda.synchronize()
        started = time.perf_counter()
        for start in range(0, len(x), batch):
            model(x[start:start + batch])
        if device != "cpu":
            torch.cuda.synchronize()
    return len(x) / (time.perf_counter() - started)


def _peak_rss_mib(pid="self"):
    """Peak resident memory of a process, MiB: ``VmHWM`` where Linux gives it (the high-water
    mark of the process's own memory; ``ru_maxrss`` also counts what a worker started by
    fork + exec held before its exec, i.e. its parent's size), else ``ru_maxrss`` (own
    process only)."""
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if pid == "self" else 0.0


def _worker_peak_rss_mib():
    """A worker's peak resident memory, MiB, with that of its child processes (the process
    that cleans its prefetched chunks and the forkserver that started it) added."""
    import psutil

    children = psutil.Process().children(recursive=True)
    return _peak_rss_mib() + sum(_peak_rss_mib(child.pid) for child in children)


def engine_run(archive, out, weights, n_workers, partition_size, chunk_size, prefetch="auto",
               daemonic_workers=False, dask_profiler=False):
    """One run_catalogue on a fresh local cluster: (summary, peak RSS MiB of each worker
    with its child processes).

    The cluster is the one `run_catalogue` starts by itself (`LOCAL_WORKER_CONFIG`:
    non-daemonic workers, whose prefetch cleans in a child process, without Dask's profiler);
    ``daemonic_workers=True`` gives daemonic workers instead, as a cluster started elsewhere
    may have, whose prefetch cleans in a thread; ``dask_profiler=True`` turns Dask's
    statistical profiler on (its default elsewhere).
    """
    import dask
    from distributed import Client, LocalCluster

    from gpm_astro.survey import run_catalogue
    from gpm_astro.survey.cluster import LOCAL_WORKER_CONFIG

    config = dict(LOCAL_WORKER_CONFIG, **{"distributed.worker.daemon": daemonic_workers,
                                          "distributed.worker.profile.enabled": dask_profiler})
    with dask.config.set(config), \
            LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as cluster, Client(cluster) as client:
        started = time.perf_counter()
        summary = run_catalogue(archive, out, weights=weights, client=client, source_type=None,
                                partition_size=partition_size, chunk_size=chunk_size,
                                prefetch=prefetch, progress=False, log=lambda message: None)
        summary["wall_seconds"] = time.perf_counter() - started
        rss = sorted(client.run(_worker_peak_rss_mib).values())
    return summary, rss


def projection(rate_per_core, gpu_rate, preprocess_rate):
    lines = [f"  {PAPER_EXP_GALAXIES / rate_per_core / 3600:,.0f} core-hours in all"]
    for cores in (2, 16, 64, 256, 1024):
        hours = PAPER_EXP_GALAXIES / (rate_per_core * cores) / 3600
        lines.append(f"  {cores:5d} CPU cores: {hours:10.1f} h")
    gpu_bound = "measured" if gpu_rate else "not measured; preprocessing bound only"
    for cores in (8, 16, 32, 64):
        rate = cores * preprocess_rate if not gpu_rate else min(gpu_rate, cores * preprocess_rate)
        hours = PAPER_EXP_GALAXIES / rate / 3600
        lines.append(f"  1 GPU + {cores:2d} cores preprocessing: {hours:8.1f} h "
                     f"(GPU inference {gpu_bound})")
    return "\n".join(lines)


def steady_rate(out):
    """Rows a second a worker over the partitions after each worker's first one (whose time
    holds the worker's one-off warm-up: first imports, first passes through the network)."""
    import json

    records = json.loads((Path(out) / "manifest.json").read_text())["partitions"].values()
    first = {}
    for record in sorted(records, key=lambda r: r["first_row"]):
        first.setdefault(record["worker"], record["first_row"])
    later = [r for r in records if r["first_row"] != first[r["worker"]]]
    seconds = sum(r["seconds"] for r in later)
    return sum(r["n_rows"] for r in later) / seconds if seconds else float("nan")


def _ratio_line(label, summary, bare, reference_name="the bare predict rate"):
    rate = summary["rows_per_second_per_worker"]
    prefetch = "on" if summary["prefetch"] else "off"
    steady = steady_rate(summary["out"])
    return (f"{label} (prefetch {prefetch}): {rate:.1f} rows/s = {rate / bare:.2f} of "
            f"{reference_name} (after each worker's first partition: {steady:.1f} rows/s "
            f"= {steady / bare:.2f})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unique", type=int, default=500, help="distinct mock galaxies")
    parser.add_argument("--rows", type=int, nargs=2, default=(10_000, 50_000),
                        metavar=("SMALL", "LARGE"), help="rows of the two archives")
    parser.add_argument("--partition-size", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--step-rows", type=int, default=1000,
                        help="rows of the per-step cost measurement")
    parser.add_argument("--weights", default=None, help="a saved GPM-ResNet (default: lite)")
    parser.add_argument("--paper-rows", type=int, default=120,
                        help="rows through the paper's network, bare and end to end (0: skip)")
    parser.add_argument("--device", default="cpu", help="device of the bare paper-network rate")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--keep", default=None,
                        help="work in this folder and keep it (a later run reuses its unique "
                             "cutouts and models)")
    args = parser.parse_args(argv)

    work = Path(args.keep or tempfile.mkdtemp(prefix="gpm_catalogue_bench_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)
        started = time.perf_counter()
        kept = sorted((work / "unique").glob("images_npix152_*.h5"))
        if kept:  # a --keep folder of an earlier run: the same cutouts and models again
            unique = kept[0]
            print(f"reusing {unique}", flush=True)
        else:
            unique = make_unique_archive(work / "unique", args.unique, args.seed)
            print(f"{args.unique} unique mock galaxies in {time.perf_counter() - started:.0f} s",
                  flush=True)
        weights = args.weights
        if weights is None:
            weights = work / "lite_model"
            if not (weights / "model_card.json").is_file():
                fit_lite_model(unique, weights)
        paper_weights = work / "paper_model"
        if args.paper_rows and not (paper_weights / "model_card.json").is_file():
            fit_paper_model(unique, paper_weights)
        for name in ("out_1w", "out_1w_thread", "out_1w_profiler", "out_1w_off", "out_2w",
                     "out_2w_large", "out_paper"):
            shutil.rmtree(work / name, ignore_errors=True)  # every run computes from scratch
        small, large = (make_virtual_archive(unique, work / f"archive_{n}", n)
                        for n in args.rows)
        small_file = next(small.glob("*.h5"))

        costs = step_costs(small_file, weights, args.step_rows, args.chunk_size,
                           work / "steps.parquet")
        print(f"per-step cost of a task, 1 thread, no prefetch, {args.step_rows:,} rows "
              f"(ms a row):", flush=True)
        for name, value in costs.items():
            print(f"  {name:28s} {value:6.2f}")
        outside = sum(v for k, v in costs.items() if not k.startswith("predict"))
        print(f"  {'everything but predict':28s} {outside:6.2f}", flush=True)

        run = functools.partial(engine_run, partition_size=args.partition_size,
                                chunk_size=args.chunk_size)
        # the bare rate: passes before and after the one-worker runs, so that a drift of the
        # machine's speed during them (it scatters by ~10 % here) moves both sides alike; the
        # median, since the end-to-end rates are averages over many chunks (a best pass would
        # understate every ratio by about half the scatter)
        n_bare = min(args.unique, 1024)
        bare_before, n_ok = bare_predict_rate(unique, weights, n_bare)
        one, rss_one = run(small, work / "out_1w", weights, 1)
        threaded, _ = run(small, work / "out_1w_thread", weights, 1, daemonic_workers=True)
        profiled, _ = run(small, work / "out_1w_profiler", weights, 1, dask_profiler=True)
        one_off, rss_one_off = run(small, work / "out_1w_off", weights, 1, prefetch=False)
        bare_after, _ = bare_predict_rate(unique, weights, n_bare)
        bare = float(np.median(bare_before + bare_after))
        print(f"bare predict_metallicity (cleaned cutouts in memory, 1 thread): {bare:.1f} "
              f"rows/s, the median of 10 passes, 5 before and 5 after the one-worker runs "
              f"(before {min(bare_before):.1f}-{max(bare_before):.1f}, after "
              f"{min(bare_after):.1f}-{max(bare_after):.1f}; {n_ok} of {n_bare} rows "
              f"predicted)", flush=True)
        print(_ratio_line(f"end to end, 1 worker, {args.rows[0]:,} rows", one, bare)
              + f"; peak RSS {rss_one[0]:.0f} MiB", flush=True)
        print(_ratio_line(f"end to end, 1 daemonic worker (cleaning in the prefetch thread), "
                          f"{args.rows[0]:,} rows", threaded, bare), flush=True)
        print(_ratio_line(f"end to end, 1 worker with Dask's statistical profiler on, "
                          f"{args.rows[0]:,} rows", profiled, bare), flush=True)
        print(_ratio_line(f"end to end, 1 worker, {args.rows[0]:,} rows", one_off, bare)
              + f"; peak RSS {rss_one_off[0]:.0f} MiB", flush=True)
        two, rss_small = run(small, work / "out_2w", weights, 2)
        print(f"end to end, 2 workers, {args.rows[0]:,} rows (prefetch "
              f"{'on' if two['prefetch'] else 'off'}): {two['rows_per_second']:.1f} rows/s = "
              f"{two['rows_per_second'] / one['rows_per_second']:.2f}x one worker with its "
              f"prefetch, {two['rows_per_second'] / one_off['rows_per_second']:.2f}x one "
              f"without", flush=True)
        big, rss_large = run(large, work / "out_2w_large", weights, 2)
        print(f"end to end, 2 workers, {args.rows[1]:,} rows: {big['rows_per_second']:.1f} "
              f"rows/s", flush=True)
        print(f"peak RSS per worker: {args.rows[0]:,} rows {[round(r) for r in rss_small]} MiB;"
              f" {args.rows[1]:,} rows {[round(r) for r in rss_large]} MiB "
              f"(ratio {max(rss_large) / max(rss_small):.2f})", flush=True)

        paper_bare = paper_gpu = None
        if args.paper_rows:
            n_paper = min(args.paper_rows, args.unique)
            paper_rates, paper_ok = bare_predict_rate(unique, paper_weights, n_paper, repeats=1)
            paper_bare = paper_rates[0]
            print(f"paper network (gpm_resnet default), bare predict_metallicity, 1 thread: "
                  f"{paper_bare:.2f} rows/s ({paper_ok} of {n_paper} rows predicted)",
                  flush=True)
            paper_archive = make_virtual_archive(unique, work / f"archive_{n_paper}", n_paper)
            paper, _ = run(paper_archive, work / "out_paper", paper_weights, 1,
                           partition_size=max(1, n_paper // 2))
            print(_ratio_line(f"paper network end to end, 1 worker, {n_paper} rows", paper,
                              paper_bare, "its bare predict rate"), flush=True)
            if args.device != "cpu":
                paper_gpu = paper_network_rate(unique, n_paper, args.device)
                print(f"paper network, bare forward passes, {args.device}: {paper_gpu:.0f} "
                      f"images/s")
        # one core's work per row outside inference, from the per-step costs
        preprocess_rate = 1000 / outside
        per_core = two["rows_per_second_per_worker"]  # every core runs a worker
        print(f"\nprojection for {PAPER_EXP_GALAXIES:,} EXP galaxies, lite network (measured "
              f"with a task on every core: {per_core:.1f} rows/s a core; reading and "
              f"preprocessing {preprocess_rate:.0f} rows/s a core):")
        print(projection(per_core, None, preprocess_rate))
        if paper_bare:
            paper_core = 1 / (1 / paper_bare + outside / 1000)
            print(f"projection, paper network (bare predict {paper_bare:.2f} rows/s a core plus "
                  f"{outside:.2f} ms a row of reading and preprocessing: {paper_core:.2f} "
                  f"rows/s a core):")
            print(projection(paper_core, paper_gpu, preprocess_rate))
        print(f"total benchmark time {time.perf_counter() - started:.0f} s")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
