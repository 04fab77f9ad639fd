"""Overhead of the predict_metallicity driver over a bare estimator.predict call.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_predict_metallicity.py [n_rows]``.
The estimator is the order-2 colour polynomial (cheap), so the driver's own cost (slicing,
bookkeeping, column assembly) is what is measured. Ratios are against the bare call measured
in the same run.
"""

import argparse
import time

from gpm_astro import predict_metallicity
from gpm_astro.testing import make_estimator_table
from gpm_astro_plugins.colour_polynomial import ColourPolynomial


def best_of(func, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main(n_rows=200_000):
    train = make_estimator_table(2000, seed=1, cutout_size=2)
    table = make_estimator_table(n_rows, seed=2, cutout_size=2)
    table.remove_column("cutout")
    estimator = ColourPolynomial(order=2, extrapolate=True).fit(train)
    bare = best_of(lambda: estimator.predict(table))
    print(f"rows: {n_rows:,}")
    print(f"bare estimator.predict: {bare:.3f} s ({n_rows / bare:,.0f} rows/s)  ratio 1.00")
    for batch_size in (256, 4096, 65536):
        t = best_of(lambda: predict_metallicity(table, estimator=estimator,
                                                batch_size=batch_size, progress=False))
        print(f"predict_metallicity batch {batch_size:>6}: {t:.3f} s "
              f"({n_rows / t:,.0f} rows/s)  ratio {t / bare:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_rows", nargs="?", type=int, default=200_000,
                        help="rows of the synthetic table (default: 200000)")
    main(parser.parse_args().n_rows)
