"""Benchmark: reading cutouts from an ssl-legacysurvey HDF5 archive file.

    python benchmarks/archive_read.py [--n-rows 100000] [--path FILE] [--keep]
        [--text-out docs/_static/data_sources/archive_benchmark.txt]
        [--figure docs/_static/data_sources/archive_benchmark.png]

Writes (once, unless --path names an existing file) a synthetic archive file of ``n_rows``
random 3 x 152 x 152 float32 cutouts (27.7 GB for 100,000) with the archive's per-galaxy
columns, via `gpm_astro_plugins.legacysurvey.archive.ArchiveWriter`, then measures, each in a
fresh process so its peak memory is its own:

- baseline: plain h5py slices of ``images`` (1,000 rows a read), no Table;
- iter_archive: `iter_archive(path, chunk_size=1000)` over every row (all columns);
- archive source, type selection: ``LegacySurveyArchive(...).iter_query(source_type="EXP")``
  (one galaxy in three), scan plus reading the selected rows;
- archive source, cone: a 0.5 deg cone (a few per cent of the rows).

It prints cutouts per second, the ratio to the baseline, and peak resident memory. The page
cache is not dropped (that needs root): with a file larger than RAM, reads come from disk.
"""

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def make_file(directory, n_rows, seed=0):
    from astropy.table import Table

    from gpm_astro_plugins.legacysurvey.archive import ARCHIVE_LAYOUT, ArchiveWriter

    rng = np.random.default_rng(seed)
    block = 1000
    noise = rng.normal(0, 0.01, (block, 3, 152, 152)).astype(np.float32)  # reused, shifted
    types = np.array([b"EXP", b"PSF", b"REX"])
    with ArchiveWriter(directory, rows_per_file=n_rows) as writer:
        for start in range(0, n_rows, block):
            n = min(block, n_rows - start)
            table = Table()
            for name, (dtype, shape) in ARCHIVE_LAYOUT.items():
                if name == "images":
                    table[name] = np.roll(noise[:n], start // block, axis=0)
                elif name == "source_type":
                    table[name] = types[(start + np.arange(n)) % 3]
                elif dtype.kind == "f":
                    table[name] = rng.uniform(0.1, 10, (n,) + shape).astype(dtype)
                elif dtype.kind == "b":
                    table[name] = np.zeros(n, bool)
                else:
                    table[name] = np.ones((n,) + shape, dtype)
            table["ra"] = rng.uniform(150, 160, n)
            table["dec"] = rng.uniform(0, 5, n)
            writer.append(table)
    return writer.paths[0]


def _peak_rss_mb():
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited across
    fork + exec from the parent that wrote the file)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(kind, path, queue):
    start = time.perf_counter()
    n = 0
    if kind == "baseline h5py slices":
        import h5py

        with h5py.File(path, "r") as handle:
            images = handle["images"]
            for first in range(0, images.shape[0], 1000):
                n += len(images[first:first + 1000])
    elif kind == "iter_archive (all columns)":
        from gpm_astro_plugins.legacysurvey.archive import iter_archive

        for chunk in iter_archive(path, chunk_size=1000):
            n += len(chunk)
    elif kind == "archive source, type EXP":
        from gpm_astro_plugins.legacysurvey.archive_source import LegacySurveyArchive

        for chunk in LegacySurveyArchive(path=path).iter_query(source_type="EXP"):
            n += len(chunk)
    elif kind == "archive source, 0.5 deg cone":
        from gpm_astro_plugins.legacysurvey.archive_source import LegacySurveyArchive

        for chunk in LegacySurveyArchive(path=path).iter_query(ra=155.0, dec=2.5, radius=0.5):
            n += len(chunk)
    queue.put((kind, n, time.perf_counter() - start, _peak_rss_mb()))


def report(results, *, text_path=None, figure_path=None):
    """Print the results table; optionally save it as text and as a bar chart (PNG)."""
    base_rate = results[0][1] / results[0][2]
    lines = [f"{'reader':32s} {'cutouts':>9s} {'seconds':>8s} {'cutouts/s':>10s} "
             f"{'vs baseline':>11s} {'peak RSS MB':>11s}"]
    for kind, n, seconds, rss in results:
        rate = n / seconds
        lines.append(f"{kind:32s} {n:9d} {seconds:8.1f} {rate:10.0f} {rate / base_rate:11.2f} "
                     f"{rss:11.0f}")
    print("\n".join(lines))
    if text_path:
        Path(text_path).write_text("\n".join(lines) + "\n")
    if figure_path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8), sharey=True)
        names = [r[0] for r in results][::-1]
        left.barh(names, [r[1] / r[2] for r in results][::-1], color="tab:blue")
        left.set_xscale("log")
        left.set_xlabel("cutouts read per second")
        right.barh(names, [r[3] for r in results][::-1], color="tab:orange")
        right.set_xlabel("peak resident memory (MB)")
        n_rows = max(r[1] for r in results)
        fig.suptitle(f"reading a {n_rows:,}-cutout archive file", fontsize=10)
        fig.tight_layout()
        fig.savefig(figure_path, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=100_000)
    parser.add_argument("--path", default=None, help="existing archive file to read")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--text-out", default=None, help="also write the table to this file")
    parser.add_argument("--figure", default=None, help="also draw a bar chart to this PNG")
    args = parser.parse_args()

    tmp = None
    if args.path and Path(args.path).exists():
        path = Path(args.path)
    else:
        tmp = tempfile.mkdtemp(prefix="gpm_archive_bench_")
        t0 = time.perf_counter()
        path = make_file(tmp, args.n_rows)
        print(f"wrote {path} ({path.stat().st_size / 1e9:.1f} GB) in "
              f"{time.perf_counter() - t0:.0f} s")
    context = mp.get_context("spawn")
    results = []
    for kind in ("baseline h5py slices", "iter_archive (all columns)",
                 "archive source, type EXP", "archive source, 0.5 deg cone"):
        queue = context.Queue()
        process = context.Process(target=_run, args=(kind, path, queue))
        process.start()
        results.append(queue.get())
        process.join()
    report(results, text_path=args.text_out, figure_path=args.figure)
    if tmp and not args.keep:
        path.unlink()
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
