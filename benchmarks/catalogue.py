"""Throughput, scaling and memory of the catalogue engine (`gpm_astro.survey.run_catalogue`).

Usage::

    python benchmarks/catalogue.py [--unique 500] [--rows 10000 50000] [--partition-size 1000]
                                   [--weights MODEL] [--paper-rows 32] [--device cpu]

Everything is measured in one run, on the same cutouts and the same model:

1. the bare rate of ``predict_metallicity`` on cleaned cutouts already in memory, one torch
   thread (what one worker's inference can do at best);
2. the end-to-end rate of ``run_catalogue`` with one local worker process on the first archive
   size (reading, preprocessing, prediction and writing, per worker), as a ratio of (1);
3. the same with two workers, as a ratio of one worker;
4. the peak resident memory of each worker (``ru_maxrss``) with two workers on each archive
   size: it should not grow with the number of rows;
5. a projection of the paper's run (8,462,944 EXP galaxies) on N CPU cores and on one GPU
   from the measured rates (``--device cuda`` measures the bare GPU rate of the paper's
   network; otherwise the GPU line is the bound set by the CPU preprocessing alone).

The archives are virtual HDF5 datasets that repeat ``--unique`` mock galaxies (so 50,000 rows
take no disk space beyond the unique ones); every row is read, cleaned and predicted for real.
Without ``--weights`` a lite GPM-ResNet is fitted for one epoch on the mock cutouts (its
accuracy does not matter here; its cost is the lite network's). Close other work first: the
numbers are wall-clock rates.
"""

import argparse
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


def bare_predict_rate(archive_file, weights, n_rows, device="cpu", config_rows=None):
    """Rows per second of predict_metallicity on cleaned cutouts in memory (one thread)."""
    import torch

    from gpm_astro import predict_metallicity, preprocess_cutouts
    from gpm_astro.plugins import get_estimator, get_source

    torch.set_num_threads(1)
    table = get_source("legacysurvey_archive")(path=archive_file).query(
        rows=slice(0, config_rows or n_rows))
    clean = preprocess_cutouts(table, progress=False)
    estimator = get_estimator("gpm_resnet").load(weights, device=device, progress=False)
    predict_metallicity(clean[:64], estimator=estimator, progress=False)  # warm up
    best = np.inf
    for _ in range(2):
        started = time.perf_counter()
        predict_metallicity(clean, estimator=estimator, progress=False)
        best = min(best, time.perf_counter() - started)
    return len(clean) / best, int(np.sum(clean["preprocess_ok"]))


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


def _worker_peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engine_run(archive, out, weights, n_workers, partition_size, chunk_size):
    """One run_catalogue on a fresh local cluster: (summary, peak RSS MiB of each worker)."""
    from distributed import Client, LocalCluster

    from gpm_astro.survey import run_catalogue

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        started = time.perf_counter()
        summary = run_catalogue(archive, out, weights=weights, client=client, source_type=None,
                                partition_size=partition_size, chunk_size=chunk_size,
                                progress=False, log=lambda message: None)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unique", type=int, default=500, help="distinct mock galaxies")
    parser.add_argument("--rows", type=int, nargs=2, default=(10_000, 50_000),
                        metavar=("SMALL", "LARGE"), help="rows of the two archives")
    parser.add_argument("--partition-size", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--weights", default=None, help="a saved GPM-ResNet (default: lite)")
    parser.add_argument("--paper-rows", type=int, default=32,
                        help="images through the paper's network for its bare rate (0: skip)")
    parser.add_argument("--device", default="cpu", help="device of the bare paper-network rate")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--keep", default=None,
                        help="work in this folder and keep it (a later run reuses its unique "
                             "cutouts and model)")
    args = parser.parse_args(argv)

    work = Path(args.keep or tempfile.mkdtemp(prefix="gpm_catalogue_bench_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)
        started = time.perf_counter()
        kept = sorted((work / "unique").glob("images_npix152_*.h5"))
        if kept:  # a --keep folder of an earlier run: the same cutouts and model again
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
        for name in ("out_1w", "out_2w", "out_2w_large"):  # every run computes from scratch
            shutil.rmtree(work / name, ignore_errors=True)
        small, large = (make_virtual_archive(unique, work / f"archive_{n}", n)
                        for n in args.rows)

        bare, n_ok = bare_predict_rate(unique, weights, min(args.unique, 1024))
        print(f"bare predict_metallicity (cleaned cutouts in memory, 1 thread): "
              f"{bare:.1f} rows/s ({n_ok} of {min(args.unique, 1024)} rows predicted)",
              flush=True)
        one, rss_one = engine_run(small, work / "out_1w", weights, 1, args.partition_size,
                                  args.chunk_size)
        per_worker = one["rows_per_second_per_worker"]
        print(f"end to end, 1 worker, {args.rows[0]:,} rows: {per_worker:.1f} rows/s "
              f"= {per_worker / bare:.2f} of the bare predict rate", flush=True)
        two, rss_small = engine_run(small, work / "out_2w", weights, 2, args.partition_size,
                                    args.chunk_size)
        print(f"end to end, 2 workers, {args.rows[0]:,} rows: {two['rows_per_second']:.1f} rows/s"
              f" = {two['rows_per_second'] / one['rows_per_second']:.2f}x one worker",
              flush=True)
        big, rss_large = engine_run(large, work / "out_2w_large", weights, 2,
                                    args.partition_size, args.chunk_size)
        print(f"end to end, 2 workers, {args.rows[1]:,} rows: {big['rows_per_second']:.1f} "
              f"rows/s", flush=True)
        print(f"peak RSS per worker: {args.rows[0]:,} rows {[round(r) for r in rss_small]} MiB;"
              f" {args.rows[1]:,} rows {[round(r) for r in rss_large]} MiB "
              f"(ratio {max(rss_large) / max(rss_small):.2f})", flush=True)

        paper_cpu = paper_gpu = None
        if args.paper_rows:
            paper_cpu = paper_network_rate(unique, args.paper_rows, "cpu")
            print(f"paper network (ResNet-50 3-4-6-3, 152 px), bare, 1 CPU thread: "
                  f"{paper_cpu:.2f} images/s", flush=True)
            if args.device != "cpu":
                paper_gpu = paper_network_rate(unique, args.paper_rows, args.device)
                print(f"paper network, bare, {args.device}: {paper_gpu:.0f} images/s")
        # rows/s of everything but inference (reading, cleaning, writing), per core
        preprocess_rate = 1 / max(1e-9, 1 / per_worker - 1 / bare)
        print(f"everything but inference (reading, preprocessing, writing): "
              f"{preprocess_rate:.1f} rows/s a core", flush=True)
        print(f"\nprojection for {PAPER_EXP_GALAXIES:,} EXP galaxies, lite network "
              f"(measured end-to-end rate per core {per_worker:.1f} rows/s):")
        print(projection(per_worker, None, preprocess_rate))
        if paper_cpu:
            per_core = 1 / (1 / paper_cpu + 1 / preprocess_rate)
            print(f"projection, paper network (inference {paper_cpu:.2f} images/s a core, plus "
                  f"reading and preprocessing at {preprocess_rate:.0f} rows/s a core):")
            print(projection(per_core, paper_gpu, preprocess_rate))
        print(f"total benchmark time {time.perf_counter() - started:.0f} s")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
