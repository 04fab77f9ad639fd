"""GPM-ResNet's errors calibrated on more galaxies and measured on a fresh, larger mock sky.

The accuracy benchmark (``gpm_resnet_mock_accuracy.py``) reports coverage on 8,000 test
galaxies: 1,600 a quintile, a binomial sigma of 0.012, as large as the differences one wants to
see. This benchmark takes a model saved by it (``--load``), re-fits its calibration with
`GPMResNetEstimator.calibrate` (error model, seeing correction and, unless ``--no-shape``, the
error shape) on the accuracy benchmark's held-out galaxies (the same split: ``--n``,
``--n-train``, ``--n-validation``, seed 123; all of them, or the first ``--n-calibration``), and
measures on ``--n-test`` galaxies of a sky drawn with another seed (``--test-seed``), seen by
nothing before. It prints sigma over the rms per-galaxy floor and the coverage overall and per
quintile of r magnitude, half-light radius and Z_true, with and without the error shape (the
errors before the shape are recovered from the shaped ones), beside the ideal ``Z_best +-
Z_floor``; the largest distance of a cell from 0.683 and the Spearman correlation of the errors
with ``Z_floor``.

Run on demand (minutes on 2 CPU cores)::

    OMP_NUM_THREADS=2 python benchmarks/gpm_resnet_calibration.py --load MODEL \
        --mock-cache CACHE --n 38000 --n-train 20000 --n-validation 2000 --n-test 24000
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpm_resnet_mock_accuracy import (QUINTILE_QUANTITIES, _cached_mock_table,  # noqa: E402
                                      _error_report, _unshaped)


def _row(label, z_pred, err, test, floor_rms):
    from scipy.stats import spearmanr

    report = _error_report(z_pred, err, test)
    sigma = float(np.sqrt(np.mean((z_pred - np.asarray(test["Z_true"], float)) ** 2)))
    cells = [report["coverage"]] + [q["coverage"] for column, _ in QUINTILE_QUANTITIES
                                    for q in report["quintiles"][column]]
    worst = max(abs(c - 0.683) for c in cells)
    print(f"{label:<30}{sigma / floor_rms:>8.4f}{report['coverage']:>8.3f}", end="")
    for column, _ in QUINTILE_QUANTITIES:
        print("  " + " ".join(f"{q['coverage']:.3f}" for q in report["quintiles"][column]),
              end="")
    print(f"{worst:>8.3f}{spearmanr(err, test['Z_floor'])[0]:>7.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", required=True, help="a model saved by the accuracy benchmark")
    parser.add_argument("--mock-cache", default=None, help="folder of cached mock skies")
    parser.add_argument("--seed", type=int, default=1, help="the accuracy benchmark's sky seed")
    parser.add_argument("--n", type=int, required=True, help="its sky's size")
    parser.add_argument("--n-train", type=int, required=True)
    parser.add_argument("--n-validation", type=int, required=True)
    parser.add_argument("--n-calibration", type=int, default=None,
                        help="calibration galaxies (default: all held-out ones)")
    parser.add_argument("--test-seed", type=int, default=3001)
    parser.add_argument("--n-test", type=int, default=24000)
    parser.add_argument("--keep-px", type=int, default=48)
    parser.add_argument("--mc-passes", type=int, default=10)
    parser.add_argument("--no-shape", action="store_true", help="calibrate without the shape")
    args = parser.parse_args(argv)

    from gpm_astro.sampling import split_table
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    sky = _cached_mock_table(args.mock_cache, args.n, args.seed, 1.0, args.keep_px)
    held_out = split_table(sky, (args.n_train, args.n_validation,
                                 args.n - args.n_train - args.n_validation), seed=123)[2]
    calibration = held_out if args.n_calibration is None else held_out[:args.n_calibration]
    test = _cached_mock_table(args.mock_cache, args.n_test, args.test_seed, 1.0, args.keep_px)
    estimator = GPMResNetEstimator.load(args.load, progress=False, mc_passes=args.mc_passes,
                                        error_shape=not args.no_shape)
    started = time.perf_counter()
    estimator.calibrate(calibration, target="Z_true")
    calibrate_seconds = time.perf_counter() - started
    started = time.perf_counter()
    pred = estimator.predict(test)
    predict_seconds = time.perf_counter() - started
    z_pred = np.ma.filled(np.ma.asanyarray(pred["Z_pred"]).astype(float), np.nan)
    err = np.ma.filled(np.ma.asanyarray(pred["Z_pred_err"]).astype(float), np.nan)
    if np.isnan(z_pred).any():
        raise SystemExit(f"{np.isnan(z_pred).sum()} test galaxies were not predicted")
    floor_rms = float(np.sqrt(np.mean(np.square(test["Z_floor"]))))
    print(f"calibrated on {len(calibration)} held-out galaxies of sky {args.seed} in "
          f"{calibrate_seconds:.0f} s; {len(test)} test galaxies of sky {args.test_seed} "
          f"predicted in {predict_seconds:.0f} s; binomial sigma of a quintile's coverage "
          f"{np.sqrt(0.683 * 0.317 / (len(test) / 5)):.4f}")
    print(f"{'errors':<30}{'sig/Zfl':>8}{'all':>8}  "
          + "  ".join(f"{name + ' quintiles':<29}" for _, name in QUINTILE_QUANTITIES)
          + f"{'worst':>8}{'rho':>7}")
    shape = estimator.err_shape_
    if shape is not None:
        _row("default (no shape)", *_unshaped(z_pred, err, shape), test, floor_rms)
        _row("error shape", z_pred, err, test, floor_rms)
    else:
        _row("default (no shape)", z_pred, err, test, floor_rms)
    _row("ideal: Z_best +- Z_floor", np.asarray(test["Z_best"], float),
         np.asarray(test["Z_floor"], float), test, floor_rms)


if __name__ == "__main__":
    main()
