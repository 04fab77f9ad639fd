"""Preprocessing on clumpy discs: flags against knot strength, for clean galaxies and pairs.

Usage::

    python benchmarks/clumpy_discs.py [--galaxies 1000] [--seed 2026] [--strengths 0 0.1 0.25 0.4]
                                      [--arms 0.1] [--config default] [--rst] [--cache DIR]

One mock sky (`gpm_astro_plugins.mock.MockSky`) is drawn; its ``clean`` and ``blended``
galaxies are rendered again with every disc clumpy, at each knot strength (the share of the
disc's r-band light in HII-region knots; the spiral arms hold ``--arms`` of it whenever the
strength is above 0), noise and neighbours unchanged. Each set goes through
``preprocess_cutouts``; the script prints the flags per truth case and strength, the share of
the smooth discs' ``ok`` galaxies still ``ok`` at each strength, and the share of true pairs
rejected (any flag but ``ok``). ``--rst`` prints the table for docs/preprocessing.rst.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

from gpm_astro.preprocessing import PREPROCESS_FLAGS, preprocess_cutouts  # noqa: E402

CASES = ("clean", "blended")


def clumpy_cutouts(n_galaxies, seed, strength, arms, cache=None):
    """(cutouts, truth case) of the sky's clean and blended galaxies at one knot strength."""
    path = None if cache is None else Path(cache) / f"clumpy_{n_galaxies}_{seed}_{strength}_" \
                                                   f"{arms}.npz"
    if path is not None and path.exists():
        data = np.load(path)
        return data["cutouts"], data["case"]
    from gpm_astro_plugins.mock import MockSky

    sky = MockSky(n_galaxies=n_galaxies, seed=seed, clumpy_rate=1.0 if strength > 0 else 0.0,
                  knot_fraction=strength, arm_fraction=arms if strength > 0 else 0.0)
    _, images, truth = sky.catalog()
    rows = np.flatnonzero(np.isin(np.asarray(truth["truth_case"]), CASES))
    cutouts = sky.render(images[rows], truth[rows])
    case = np.asarray(truth["truth_case"][rows]).astype(str)
    if path is not None:  # written whole, then renamed: an interrupted run leaves no half file
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, cutouts=cutouts, case=case)
        os.replace(partial, path)
    return cutouts, case


def run(args):
    results = {}
    for strength in args.strengths:
        cutouts, case = clumpy_cutouts(args.galaxies, args.seed, strength, args.arms,
                                       args.cache)
        out = preprocess_cutouts(Table({"cutout": cutouts}), config=args.config,
                                 progress=False)
        results[strength] = (case, np.asarray(out["preprocess_flag"]).astype(str))
    return results


def summary(results):
    """Per strength: (kept share of the smooth ok discs, pairs rejected, counts per case)."""
    base_case, base_flags = results[min(results)]
    smooth_ok = (base_case == "clean") & (base_flags == "ok")
    rows = {}
    for strength, (case, flags) in results.items():
        kept = float(np.mean(flags[smooth_ok] == "ok")) if smooth_ok.any() else float("nan")
        pairs = case == "blended"
        rejected = float(np.mean(flags[pairs] != "ok")) if pairs.any() else float("nan")
        counts = {c: {f: int(np.sum((case == c) & (flags == f))) for f in PREPROCESS_FLAGS}
                  for c in CASES}
        rows[strength] = (kept, rejected, counts)
    return rows


def print_tables(args, results, rst=False):
    rows = summary(results)
    flags = list(PREPROCESS_FLAGS)
    header = ["knot strength", "truth case"] + flags + ["kept / smooth", "pairs rejected"]
    body = []
    for strength, (kept, rejected, counts) in rows.items():
        for c in CASES:
            line = [f"{strength:.2f}", c] + [str(counts[c][f]) for f in flags]
            line += [f"{kept:.1%}" if c == "clean" else "",
                     f"{rejected:.1%}" if c == "blended" else ""]
            body.append(line)
    widths = [max(len(r[k]) for r in [header] + body) for k in range(len(header))]
    n_clean = int(np.sum(results[min(results)][0] == "clean"))
    n_pairs = int(np.sum(results[min(results)][0] == "blended"))
    print(f"\nconfig {args.config!r}; mock sky of {args.galaxies} galaxies, seed {args.seed}: "
          f"{n_clean} clean discs and {n_pairs} true pairs, every disc clumpy (arms "
          f"{args.arms:.0%} of the disc light when knots are on)")
    rule = "  ".join("=" * w for w in widths)
    if rst:
        print(rule)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    if rst:
        print(rule)
    for line in body:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)))
    if rst:
        print(rule)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.4])
    parser.add_argument("--arms", type=float, default=0.1)
    parser.add_argument("--config", default="default")
    parser.add_argument("--rst", action="store_true")
    parser.add_argument("--cache", default=None, help="folder to keep the rendered cutouts in")
    args = parser.parse_args()
    print_tables(args, run(args), rst=args.rst)


if __name__ == "__main__":
    main()
