"""The demo at full size: wall time per stage, and GPM-ResNet's scatter against the baselines.

Run on demand (minutes): ``python benchmarks/demo.py [--out DIR] [--n-galaxies N]``. Prints
the time of every stage and, for each estimator, sigma and its ratio to the 2nd-order colour
polynomial's sigma and to the mock's noise floor, all measured in this one run. Exits 1 when
GPM-ResNet does not beat the colour polynomial (the paper's main claim, on the mock sky).
"""

import argparse
import sys
import tempfile
import time


def main(argv=None):
    from gpm_astro.demo import DEMO_N_GALAXIES, run_demo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="output folder (default: a temporary one)")
    parser.add_argument("--n-galaxies", type=int, default=DEMO_N_GALAXIES)
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="gpm_astro_demo_")
    tic = time.perf_counter()
    result = run_demo(out, n_galaxies=args.n_galaxies, force=True)
    wall = time.perf_counter() - tic

    print(f"\ndemo on {args.n_galaxies} mock galaxies: {wall:.0f} s wall time  ({out})")
    for stage, seconds in result["timings"].items():
        print(f"  {stage:32s} {seconds:7.1f} s")
    sigma = {row["estimator"]: float(row["sigma"]) for row in result["metrics"]}
    baseline = sigma["colour_polynomial_2"]
    floor = sigma.get("noise_floor")
    print(f"\n  {'estimator':28s} {'sigma':>7s} {'/ poly2':>8s} {'/ floor':>8s}")
    for row in result["metrics"]:
        name, value = row["estimator"], float(row["sigma"])
        if name.endswith(":mass"):  # log M*, not Z: no ratio to a metallicity scatter
            print(f"  {name:28s} {value:7.4f}        -        -   (log M*, dex)")
            continue
        ratio_floor = f"{value / floor:8.2f}" if floor else "       -"
        print(f"  {name:28s} {value:7.4f} {value / baseline:8.2f} {ratio_floor}")
    return 0 if sigma["gpm_resnet"] < baseline else 1


if __name__ == "__main__":
    sys.exit(main())
