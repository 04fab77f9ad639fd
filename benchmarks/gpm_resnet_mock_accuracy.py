"""Accuracy, error ranking and domain flag of GPM-ResNet on the mock sky, beside the colour
polynomial and the mock's noise floor.

Draws a mock sky of clean, labelled galaxies (``MockSky`` with every defect rate 0), splits it
at random (seed 123) 5:3:2 into train / validation / test, or into ``--n-train``,
``--n-validation``, ``--n-calibration`` and ``--n-test`` galaxies, trains GPM-ResNet
(``--config``, default ``lite``) on Z_true, calibrates its errors on the calibration rows (the
validation rows without ``--n-calibration``), fits the 2nd- and 3rd-order colour polynomials on
the same training rows, and prints on the test rows:

- mu, sigma, NMAD and coverage, and sigma / floor for two floors: the noise-free one (the std of
  Z_true - Z_best: nothing in a perfect image does better) and the per-galaxy one (the rms of
  ``Z_floor``, the posterior std of Z given each galaxy's cutout, pixel noise and PSF included);
- the rms error over the rms ``Z_floor`` within each quintile of Z_true (where the excess is);
- the error model: coverage of ``Z_pred_err`` overall and in each quintile of the r magnitude,
  the half-light radius and Z_true, with binomial sigmas; the Spearman correlation of
  ``Z_pred_err`` with ``Z_floor``; a reliability diagram. The calibration rows train no weight
  and are not reported on. The same for the ideal, ``Z_best +- Z_floor`` (the posterior mean
  given a noise-free image, each galaxy's own floor as its error), as a reference;
- the domain flag: the fraction of test galaxies flagged outside the training domain, and of a
  shifted set (``--shifted N`` faint, higher-redshift mock galaxies, unlabelled in the mock).

``--set FIELD=VALUE`` changes a configuration field (e.g. ``--set
'photometry_apertures=[2,4,8,16]'``), ``--train-seed`` the network's seed (default 0).
``--extra-train N`` adds N training galaxies from a second sky of the same population (seed +
1000) after the split, so that more training galaxies leave the other splits unchanged.

Only the central ``crop_size`` pixels of the cutouts are kept (the network reads no others;
``--full-cutouts`` keeps all 152). Training time is the sum of the epochs (the training loop);
mock generation, input preparation, calibration and prediction are timed apart.

Run on demand (minutes on 2 CPU cores)::

    OMP_NUM_THREADS=2 python benchmarks/gpm_resnet_mock_accuracy.py --n-train 12000 \
        --n-validation 2000 --n-calibration 8000 --n-test 8000 --shifted 400
"""

import argparse
import json
import math
import os
import time

import numpy as np

QUINTILE_QUANTITIES = (("mag_r", "r magnitude"), ("hlr_arcsec", "half-light radius"),
                       ("Z_true", "Z_true"))


def _mock_table(n, seed, labelled_fraction, keep_px=None):
    """Clean mock galaxies with their truth columns, drawn 2,000 at a time; with ``keep_px``
    only the central ``keep_px`` pixels of each cutout are kept (what a network with that
    ``crop_size`` reads: the same input, in a quarter of the memory at 48 px)."""
    from astropy.table import vstack

    from gpm_astro_plugins.mock.sky import MockSky

    sky = MockSky(n_galaxies=n, seed=seed, blend_rate=0, large_rate=0, empty_rate=0,
                  bad_pixel_rate=0, labelled_fraction=labelled_fraction)
    parts = []
    for chunk in sky.iter_generate(chunk_size=2000):
        table = chunk.images
        for name in ("Z_true", "Z_best", "Z_floor", "logmstar", "hlr_arcsec"):
            table[name] = chunk.truth[name]
        size = table["cutout"].shape[-1]
        if keep_px is not None and keep_px < size:
            top = (size - keep_px) // 2
            cutouts = np.ascontiguousarray(
                table["cutout"][:, :, top:top + keep_px, top:top + keep_px])
            table.remove_column("cutout")
            table["cutout"] = cutouts
        parts.append(table)
    table = vstack(parts, metadata_conflicts="silent") if len(parts) > 1 else parts[0]
    table.meta["bands"] = parts[0].meta["bands"]
    return table


def _cached_mock_table(cache, n, seed, labelled_fraction, keep_px):
    """`_mock_table`, read from ``cache`` (a folder) when an earlier run wrote a sky of the same
    seed and at least ``n`` galaxies there (a random ``n`` of its galaxies), else drawn and
    written there (None: no cache)."""
    if cache is None:
        return _mock_table(n, seed, labelled_fraction, keep_px)
    from pathlib import Path

    from astropy.table import Table

    stem = f"mock_seed{seed}_lab{labelled_fraction:g}_px{keep_px}_n"
    for path in sorted(Path(cache).glob(f"{stem}*.fits")):
        if int(path.stem[len(stem):]) >= n:
            table = Table.read(path)
            table = table[np.sort(np.random.default_rng(0).permutation(len(table))[:n])]
            table.meta["bands"] = table.meta.get("BANDS", "grz")
            return table
    path = Path(cache) / f"{stem}{n}.fits"
    table = _mock_table(n, seed, labelled_fraction, keep_px)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = table.copy(copy_data=False)
    written.meta = {"BANDS": table.meta["bands"]}
    for column in written.itercols():
        column.unit = None  # FITS knows neither nanomaggies nor dex; the values are the same
    written.write(path)
    return table


def _error_report(z_pred, err, test):
    """Coverage overall and per quintile, Spearman with the per-galaxy floor, reliability."""
    from scipy.stats import spearmanr

    from gpm_astro.metrics import binned_statistics, reliability_curve

    z_true = np.asarray(test["Z_true"], dtype=float)
    z_floor = np.asarray(test["Z_floor"], dtype=float)
    out = {"coverage": float(np.mean(np.abs(z_pred - z_true) < err)),
           "spearman_err_vs_floor": float(spearmanr(err, z_floor)[0]),
           "spearman_err_vs_abs_residual": float(spearmanr(err, np.abs(z_pred - z_true))[0]),
           "reliability": reliability_curve(z_pred, z_true, err).tolist(), "quintiles": {}}
    for column, _ in QUINTILE_QUANTITIES:
        values = np.ma.filled(np.ma.asanyarray(test[column]).astype(float), np.nan)
        edges = np.nanquantile(values, np.linspace(0, 1, 6))
        stats = binned_statistics(z_pred, z_true, values, edges, err=err, by_name=column)
        # the per-galaxy floor of each bin (the last bin holds its upper edge, as above)
        index = np.minimum(np.searchsorted(edges, values, side="right") - 1, len(edges) - 2)
        floor_rms = [float(np.sqrt(np.mean(z_floor[index == k] ** 2)))
                     for k in range(len(edges) - 1)]
        out["quintiles"][column] = [
            {"low": float(r["bin_low"]), "high": float(r["bin_high"]), "n": int(r["n"]),
             "coverage": float(r["coverage"]), "mu": float(r["mu"]), "sigma": float(r["sigma"]),
             "floor_rms": floor_rms[k]} for k, r in enumerate(stats)]
    return out


def _unshaped(z_pred, err, shape):
    """The prediction and error before the error shape: inverts ``Z_pred = z + d(z)``
    (`gpm_resnet.error_model.error_shape_shift`, small and smooth: a fixed-point iteration)
    and ``err = bare * exp(s(u)) * (bare / ref) ** p``
    (`gpm_resnet.error_model.error_shape_factor`) for ``bare``."""
    from gpm_astro_plugins.gpm_resnet.error_model import error_shape_shift

    z = np.array(z_pred, dtype=float)
    for _ in range(50):
        z = z_pred - error_shape_shift(z, shape)
    if not np.allclose(z + error_shape_shift(z, shape), z_pred, atol=1e-9, equal_nan=True):
        raise RuntimeError("the error shape's bias correction could not be inverted")
    u = (z - shape["centre"]) / shape["scale"]
    log_factor = np.interp(u, shape["knots"], shape["log_scale"])
    power = shape["err_power"]
    log_bare = (np.log(err) - log_factor + power * np.log(shape["err_reference"])) / (1 + power)
    return z, np.exp(log_bare)


def _print_errors(errors, label):
    print(f"{label}: coverage {errors['coverage']:.3f}; Spearman(Z_pred_err, Z_floor) = "
          f"{errors['spearman_err_vs_floor']:.3f}; Spearman(Z_pred_err, |dZ|) = "
          f"{errors['spearman_err_vs_abs_residual']:.3f}")
    for column, name in QUINTILE_QUANTITIES:
        cells = ", ".join(f"{q['coverage']:.3f}" for q in errors["quintiles"][column])
        sigma = max(_binomial_sigma(q["n"]) for q in errors["quintiles"][column])
        print(f"  coverage per quintile of {name:<18}: {cells}  (binomial sigma {sigma:.3f})")


def _binomial_sigma(n):
    """Standard deviation of a 68.27 % coverage measured on ``n`` galaxies."""
    return float(np.sqrt(0.6827 * (1 - 0.6827) / max(n, 1)))


def _plot_reliability(curves, path, title):
    """Observed against nominal coverage; ``curves`` maps a label to a reliability curve."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.4), dpi=110)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="ideal")
    for label, curve in curves.items():
        curve = np.asarray(curve)
        ax.plot(curve[:, 0], curve[:, 1], marker="o", ms=4, label=label)
    ax.set_xlabel("nominal coverage of pred ± k err")
    ax.set_ylabel("observed fraction of test galaxies")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000,
                        help="galaxies in the mock sky, split 5:3:2 (train/validation/test)")
    parser.add_argument("--n-train", type=int, default=None, help="instead of --n: training")
    parser.add_argument("--n-validation", type=int, default=None,
                        help="validation galaxies (best epoch; error calibration without "
                             "--n-calibration)")
    parser.add_argument("--n-calibration", type=int, default=0,
                        help="galaxies used only to calibrate the errors (0: the validation)")
    parser.add_argument("--n-test", type=int, default=None, help="test galaxies (reported)")
    parser.add_argument("--mock-cache", default=None,
                        help="folder keeping the drawn mock skies for later runs (the draw is "
                             "the slow part: ~9 ms a galaxy)")
    parser.add_argument("--error-shape", action="store_true",
                        help="fit the error shape too (error_shape=True); both are reported")
    parser.add_argument("--no-seeing-correction", action="store_true",
                        help="fit no seeing correction (seeing_correction=False)")
    parser.add_argument("--keep-px", type=int, default=None,
                        help="central pixels of each cutout kept (default: crop_size)")
    parser.add_argument("--full-cutouts", action="store_true",
                        help="keep the whole 152 px cutouts (default: the central crop_size)")
    parser.add_argument("--seed", type=int, default=1, help="mock sky seed")
    parser.add_argument("--train-seed", type=int, default=0,
                        help="seed of the network's initialisation and training")
    parser.add_argument("--extra-train", type=int, default=0,
                        help="more training galaxies, from a second sky (seed + 1000), added "
                             "after the split: the validation, calibration and test rows stay "
                             "those of the runs without it")
    parser.add_argument("--shifted", type=int, default=400,
                        help="faint, higher-redshift galaxies for the domain check (0: none)")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--mc-passes", type=int, default=10)
    parser.add_argument("--n-ensemble", type=int, default=1)
    parser.add_argument("--config", default="lite")
    parser.add_argument("--set", action="append", default=[],
                        help="override a config field, e.g. --set input_scaling=none")
    parser.add_argument("--save", default=None, help="save the trained model here")
    parser.add_argument("--json", default=None, help="write the numbers to this JSON file")
    parser.add_argument("--load", default=None,
                        help="evaluate this saved model instead of training one")
    parser.add_argument("--figures", default=None,
                        help="directory for the residual-density and reliability figures")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="per-epoch checkpoints and loss_history.csv (to follow progress)")
    args = parser.parse_args(argv)

    from gpm_astro.metrics import summarize
    from gpm_astro.sampling import split_table
    from gpm_astro_plugins.colour_polynomial.estimator import ColourPolynomial
    import torch

    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator, get_config

    config = get_config(args.config)
    for item in args.set:
        key, value = item.split("=", 1)
        config = config.replace(**{key: json.loads(value) if value[:1] in "0123456789[-tfn"
                                   and value not in ("none",) else value})
    explicit = (args.n_train, args.n_validation, args.n_test)
    if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
        parser.error("give all of --n-train, --n-validation and --n-test, or none")
    if args.n_train is None:
        sizes = (args.n * 5 // 10, args.n * 3 // 10, args.n_calibration,
                 args.n - args.n * 8 // 10)
    else:
        sizes = (args.n_train, args.n_validation, args.n_calibration, args.n_test)
    keep_px = None if args.full_cutouts or config.input_size else config.crop_size
    if args.keep_px is not None and not args.full_cutouts:
        keep_px = max(args.keep_px, config.crop_size or 0)
    started = time.perf_counter()
    table = _cached_mock_table(args.mock_cache, sum(sizes), args.seed, 1.0, keep_px)
    mock_seconds = time.perf_counter() - started
    print(f"mock sky: {len(table)} galaxies in {mock_seconds:.0f} s")
    train, validation, held_out = split_table(table, sizes[:2] + (sizes[2] + sizes[3],),
                                              seed=123)
    if args.extra_train:
        from astropy.table import vstack

        extra = _cached_mock_table(args.mock_cache, args.extra_train, args.seed + 1000, 1.0,
                                   keep_px)
        train = vstack([train, extra[train.colnames]], metadata_conflicts="silent")
        train.meta["bands"] = table.meta["bands"]
    calibration = None
    test = held_out
    if sizes[2]:
        order = np.random.default_rng(124).permutation(len(held_out))
        calibration = held_out[np.sort(order[:sizes[2]])]
        test = held_out[np.sort(order[sizes[2]:])]
    started = time.perf_counter()
    if args.load:
        estimator = GPMResNetEstimator.load(args.load, progress=False,
                                            mc_passes=args.mc_passes)
    else:
        estimator = GPMResNetEstimator(config=config, epochs=args.epochs, lr=args.lr,
                                       batch_size=args.batch_size, mc_passes=args.mc_passes,
                                       n_ensemble=args.n_ensemble, seed=args.train_seed,
                                       progress=False,
                                       checkpoint_dir=args.checkpoint_dir,
                                       error_shape=args.error_shape,
                                       seeing_correction=not args.no_seeing_correction)
        estimator.fit(train, target="Z_true", validation=validation, calibration=calibration)
    fit_seconds = time.perf_counter() - started
    history = estimator.history_
    train_seconds = float(np.sum(history["seconds"])) if "seconds" in history.colnames \
        else fit_seconds
    started = time.perf_counter()
    pred = estimator.predict(test)
    predict_seconds = time.perf_counter() - started
    calibration_split = "calibration" if calibration is not None else "validation"
    results = {"n_train": len(train), "n_validation": len(validation),
               "n_calibration": 0 if calibration is None else len(calibration),
               "n_test": len(test), "mock_seconds": mock_seconds,
               "train_seconds": train_seconds, "fit_seconds": fit_seconds,
               "predict_seconds": predict_seconds,
               "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
               "best_epochs": estimator.training_summary_["best_epochs"],
               "config": estimator.config_.to_dict(), "err_scale": estimator.err_scale_,
               "err_constant": estimator.err_constant_,
               "err_shape": getattr(estimator, "err_shape_", None),
               "seeing_correction": getattr(estimator, "seeing_correction_", None),
               "calibration_split": calibration_split}
    results["gpm_resnet"] = summarize(pred["Z_pred"], test["Z_true"], pred["Z_pred_err"])
    for order in (2, 3):
        poly = ColourPolynomial(order=order).fit(train, target="Z_true")
        out = poly.predict(test)
        results[f"colour_polynomial_{order}"] = summarize(out["Z_pred"], test["Z_true"],
                                                          out["Z_pred_err"])
    results["noise_floor_Z_best"] = summarize(test["Z_best"], test["Z_true"])
    results["per_galaxy_floor_rms"] = float(np.sqrt(np.mean(np.square(test["Z_floor"]))))
    results["predict_mean"] = summarize(np.full(len(test), np.mean(train["Z_true"])),
                                        test["Z_true"])
    z_pred = np.ma.filled(np.ma.asanyarray(pred["Z_pred"]).astype(float), np.nan)
    err = np.ma.filled(np.ma.asanyarray(pred["Z_pred_err"]).astype(float), np.nan)
    results["errors"] = _error_report(z_pred, err, test)
    shape = getattr(estimator, "err_shape_", None)
    if shape is not None:
        results["errors_without_shape"] = _error_report(*_unshaped(z_pred, err, shape), test)
    # what the best possible estimator with the best possible errors reaches on the same rows
    results["errors_ideal"] = _error_report(np.asarray(test["Z_best"], dtype=float),
                                            np.asarray(test["Z_floor"], dtype=float), test)
    floor_spread = np.percentile(np.asarray(test["Z_floor"]), [5, 95])
    results["Z_floor_p5_p95"] = floor_spread.tolist()
    flagged = np.char.startswith(np.asarray(pred["Z_pred_domain_flag"]).astype(str), "out")
    results["domain_flagged_test"] = float(np.mean(flagged))

    floor = results["noise_floor_Z_best"]["sigma"]
    galaxy_floor = results["per_galaxy_floor_rms"]
    print(f"training {train_seconds:.0f} s (the epochs; fit {fit_seconds:.0f} s with input "
          f"preparation, error calibration and domain model), prediction {predict_seconds:.1f} s"
          f"; {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{len(train)} train / {len(validation)} validation / {results['n_calibration']} "
          f"calibration / {len(test)} test; errors calibrated on the {calibration_split} rows")
    print(f"{'estimator':<22}{'mu':>8}{'sigma':>8}{'nmad':>8}{'coverage':>10}"
          f"{'/floor':>8}{'/Z_floor':>9}")
    for key in ("gpm_resnet", "colour_polynomial_2", "colour_polynomial_3",
                "noise_floor_Z_best", "predict_mean"):
        s = results[key]
        cover = f"{s['coverage']:.3f}" if "coverage" in s else "-"
        print(f"{key:<22}{s['mu']:8.4f}{s['sigma']:8.4f}{s['nmad']:8.4f}{cover:>10}"
              f"{s['sigma'] / floor:8.3f}{s['sigma'] / galaxy_floor:9.3f}")
    seeing = results["seeing_correction"]
    if seeing is not None:
        from gpm_astro_plugins.gpm_resnet.seeing import seeing_offset, table_seeing

        uncorrected = z_pred - seeing_offset(
            table_seeing(test, np.arange(len(test)), test.meta["bands"]), seeing)
        results["gpm_resnet_without_seeing_correction"] = summarize(uncorrected,
                                                                    test["Z_true"])
        s = results["gpm_resnet_without_seeing_correction"]
        print(f"seeing correction: {seeing['intercept']:+.4f} {seeing['slope']:+.4f} dex/arcsec x "
              f"(FWHM_r - {seeing['reference']:.3f}), from {seeing['n_rows']} "
              f"{calibration_split} rows; without it mu {s['mu']:.4f}, sigma {s['sigma']:.4f} "
              f"({s['sigma'] / galaxy_floor:.3f} x rms Z_floor)")
    print(f"noise-free floor {floor:.4f}; rms of the per-galaxy floor Z_floor {galaxy_floor:.4f} "
          f"(5-95 %: {floor_spread[0]:.3f}-{floor_spread[1]:.3f})")
    errors = results["errors"]
    cells = ", ".join(f"{math.hypot(q['mu'], q['sigma']) / q['floor_rms']:.3f}"
                      for q in errors["quintiles"]["Z_true"])
    print(f"rms error / rms Z_floor per quintile of Z_true: {cells}")
    cells = ", ".join(f"{math.hypot(q['mu'], q['sigma']) / q['floor_rms']:.3f}"
                      for q in results["errors_ideal"]["quintiles"]["Z_true"])
    print(f"  the same for Z_best, the noise-free posterior mean: {cells}")
    print(f"overall coverage: binomial sigma {_binomial_sigma(len(test)):.3f}")
    if shape is not None:
        _print_errors(results["errors_without_shape"], "errors without the shape")
        _print_errors(errors, f"errors with the shape ({len(shape['knots'])} knots)")
    else:
        _print_errors(errors, "errors")
    _print_errors(results["errors_ideal"], "the ideal: Z_best +- Z_floor")
    print(f"domain: {100 * results['domain_flagged_test']:.1f} % of the test galaxies flagged")
    if args.shifted:
        shifted = _cached_mock_table(args.mock_cache, args.shifted, args.seed + 100, 0.0,
                                     keep_px)
        out = estimator.predict(shifted)
        flags = np.asarray(out["Z_pred_domain_flag"]).astype(str)
        results["domain_flagged_shifted"] = float(np.mean(np.char.startswith(flags, "out")))
        reasons = {}
        for flag in flags[np.char.startswith(flags, "out")]:
            for reason in flag[4:].split(","):
                reasons[reason] = reasons.get(reason, 0) + 1
        results["domain_reasons_shifted"] = reasons
        print(f"domain: {100 * results['domain_flagged_shifted']:.1f} % of {args.shifted} faint, "
              f"higher-redshift galaxies flagged (by check: {reasons})")
    if args.figures:
        from pathlib import Path

        from gpm_astro.evaluation import plot_residual_density

        Path(args.figures).mkdir(parents=True, exist_ok=True)
        curves = {"GPM-ResNet lite": errors["reliability"]}
        if shape is not None:
            curves = {"GPM-ResNet lite": results["errors_without_shape"]["reliability"],
                      "with the error shape": errors["reliability"]}
        _plot_reliability(curves, f"{args.figures}/lite_mock_reliability.png",
                          f"reliability of Z_pred_err, {len(test)} test galaxies")
        shown = test.copy(copy_data=False)
        shown["Z_pred"] = pred["Z_pred"]
        plot_residual_density(shown, true="Z_true", value_range=(8.2, 9.4),
                              title="GPM-ResNet lite, mock sky test set",
                              path=f"{args.figures}/lite_mock_residuals.png")
    if args.save:
        estimator.save(args.save)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, default=float)
    return results


if __name__ == "__main__":
    main()
