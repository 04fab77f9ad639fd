"""Confusion tables of preprocess_flag against the mock sky's truth, for both configurations.

Usage::

    python benchmarks/preprocess_truth.py [--galaxies 600] [--seed 7] [--rst] [--cache FILE]

Generates a mock sky (`gpm_astro_plugins.mock.MockSky`), runs ``preprocess_cutouts`` with the
``default`` and ``paper`` configurations on one core, and prints, per configuration, a table of
truth case (rows) against flag (columns), the share of cutouts given the expected flag, and the
time per cutout. ``--rst`` prints the tables as reStructuredText for docs/preprocessing.rst.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

from gpm_astro.preprocessing import PREPROCESS_FLAGS, preprocess_cutouts  # noqa: E402


def mock_cutouts(n_galaxies, seed, cache=None):
    """(cutouts, truth_case, expected_flag) of a mock sky, cached in an .npz if asked."""
    if cache and Path(cache).exists():
        data = np.load(cache)
        return data["cutouts"], data["case"], data["expected"]
    from gpm_astro_plugins.mock import EXPECTED_FLAG, MockSky

    sky = MockSky(n_galaxies=n_galaxies, seed=seed).generate()
    cutouts = np.asarray(sky.images["cutout"], np.float32)
    case = np.asarray(sky.truth["truth_case"]).astype(str)
    expected = np.array([EXPECTED_FLAG[c] for c in case])
    if cache:
        np.savez(cache, cutouts=cutouts, case=case, expected=expected)
    return cutouts, case, expected


def confusion(case, flags):
    cases = [c for c in ("clean", "blended", "too_large", "empty_centre", "bad_pixels")
             if c in set(case)]
    return cases, {c: {f: int(np.sum((case == c) & (flags == f))) for f in PREPROCESS_FLAGS}
                   for c in cases}


def print_table(title, case, expected, flags, seconds, rst=False):
    cases, table = confusion(case, flags)
    right = float(np.mean(flags == expected))
    header = ["truth case (expected flag)"] + list(PREPROCESS_FLAGS)
    body = [[f"{c} ({expected[case == c][0]})"] + [str(table[c][f]) for f in PREPROCESS_FLAGS]
            for c in cases]
    widths = [max(len(r[k]) for r in [header] + body) for k in range(len(header))]
    print(f"\n{title}: {right:.1%} right ({int(np.sum(flags == expected))} / {len(flags)}), "
          f"{1e3 * seconds / len(flags):.2f} ms per cutout on one core")
    if rst:
        rule = "  ".join("=" * w for w in widths)
        print(rule)
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        print(rule)
        for row in body:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
        print(rule)
    else:
        for row in [header] + body:
            print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    return right


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--configs", default="default,paper")
    parser.add_argument("--cache", default=None, help="npz file to keep the mock cutouts in")
    parser.add_argument("--rst", action="store_true")
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    cutouts, case, expected = mock_cutouts(args.galaxies, args.seed, args.cache)
    print(f"mock sky: {len(case)} cutouts, seed {args.seed}; truth cases: "
          + ", ".join(f"{c} {n}" for c, n in zip(*np.unique(case, return_counts=True))))
    table = Table({"cutout": cutouts}, meta={"bands": "grz", "pixel_scale": 0.262})
    results = {}
    for config in args.configs.split(","):
        preprocess_cutouts(table[:8], config=config, progress=False)  # warm up imports
        start = time.perf_counter()
        out = preprocess_cutouts(table, config=config, progress=False)
        seconds = time.perf_counter() - start
        flags = np.asarray(out["preprocess_flag"]).astype(str)
        results[config] = print_table(f"config {config!r}", case, expected, flags, seconds,
                                      args.rst)
    return results


if __name__ == "__main__":
    main()
