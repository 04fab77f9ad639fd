"""Accuracy, error ranking and domain flag of GPM-ResNet on the mock sky, beside the colour
polynomial and the mock's noise floor.

Draws a mock sky of clean, labelled galaxies (``MockSky`` with every defect rate 0), splits it
5:3:2 (train / validation / test, seed 123), trains GPM-ResNet (``--config``, default ``lite``)
on Z_true, fits the 2nd- and 3rd-order colour polynomials on the same training rows, and prints
on the test rows:

- mu, sigma, NMAD and coverage, and sigma / floor for two floors: the noise-free one (the std of
  Z_true - Z_best: nothing in a perfect image does better) and the per-galaxy one (the rms of
  ``Z_floor``, the posterior std of Z given each galaxy's cutout, pixel noise and PSF included);
- the error model: coverage of ``Z_pred_err`` overall and in each quintile of the r magnitude,
  the half-light radius and Z_true; the Spearman correlation of ``Z_pred_err`` with
  ``Z_floor``; a reliability diagram. The errors were calibrated on the validation rows, which
  train no weight and are not reported on;
- the domain flag: the fraction of test galaxies flagged outside the training domain, and of a
  shifted set (``--shifted N`` faint, higher-redshift mock galaxies, unlabelled in the mock).

Run on demand (minutes on 2 CPU cores)::

    OMP_NUM_THREADS=2 python benchmarks/gpm_resnet_mock_accuracy.py --n 5000 --shifted 400
"""

import argparse
import json
import time

import numpy as np

QUINTILE_QUANTITIES = (("mag_r", "r magnitude"), ("hlr_arcsec", "half-light radius"),
                       ("Z_true", "Z_true"))


def _mock_table(n, seed, labelled_fraction):
    from gpm_astro_plugins.mock.sky import MockSky

    sky = MockSky(n_galaxies=n, seed=seed, blend_rate=0, large_rate=0, empty_rate=0,
                  bad_pixel_rate=0, labelled_fraction=labelled_fraction).generate()
    table = sky.images
    for name in ("Z_true", "Z_best", "Z_floor", "logmstar", "hlr_arcsec"):
        table[name] = sky.truth[name]
    return table


def _error_report(pred, test):
    """Coverage per quintile, Spearman with the per-galaxy floor, reliability curve."""
    from scipy.stats import spearmanr

    from gpm_astro.metrics import binned_statistics, reliability_curve

    z_pred = np.ma.filled(np.ma.asanyarray(pred["Z_pred"]).astype(float), np.nan)
    err = np.ma.filled(np.ma.asanyarray(pred["Z_pred_err"]).astype(float), np.nan)
    z_true = np.asarray(test["Z_true"], dtype=float)
    out = {"spearman_err_vs_floor": float(spearmanr(err, np.asarray(test["Z_floor"]))[0]),
           "spearman_err_vs_abs_residual": float(spearmanr(err, np.abs(z_pred - z_true))[0]),
           "reliability": reliability_curve(z_pred, z_true, err).tolist(), "quintiles": {}}
    for column, _ in QUINTILE_QUANTITIES:
        values = np.ma.filled(np.ma.asanyarray(test[column]).astype(float), np.nan)
        edges = np.nanquantile(values, np.linspace(0, 1, 6))
        stats = binned_statistics(z_pred, z_true, values, edges, err=err, by_name=column)
        out["quintiles"][column] = [
            {"low": float(r["bin_low"]), "high": float(r["bin_high"]), "n": int(r["n"]),
             "coverage": float(r["coverage"]), "sigma": float(r["sigma"])} for r in stats]
    return out


def _plot_reliability(curve, path, title):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    curve = np.asarray(curve)
    fig, ax = plt.subplots(figsize=(3.6, 3.4), dpi=110)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="ideal")
    ax.plot(curve[:, 0], curve[:, 1], marker="o", label="GPM-ResNet lite")
    ax.set_xlabel("nominal coverage of pred ± k err")
    ax.set_ylabel("observed fraction of test galaxies")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="galaxies in the mock sky")
    parser.add_argument("--seed", type=int, default=1, help="mock sky seed")
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
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator, get_config

    started = time.perf_counter()
    table = _mock_table(args.n, args.seed, 1.0)
    print(f"mock sky: {len(table)} galaxies in {time.perf_counter() - started:.0f} s")
    train, validation, test = split_table(table, (5, 3, 2), seed=123)

    config = get_config(args.config)
    for item in args.set:
        key, value = item.split("=", 1)
        config = config.replace(**{key: json.loads(value) if value[:1] in "0123456789[-tfn"
                                   and value not in ("none",) else value})
    started = time.perf_counter()
    if args.load:
        estimator = GPMResNetEstimator.load(args.load, progress=False,
                                            mc_passes=args.mc_passes)
    else:
        estimator = GPMResNetEstimator(config=config, epochs=args.epochs, lr=args.lr,
                                       batch_size=args.batch_size, mc_passes=args.mc_passes,
                                       n_ensemble=args.n_ensemble, seed=0, progress=False,
                                       checkpoint_dir=args.checkpoint_dir)
        estimator.fit(train, target="Z_true", validation=validation)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    pred = estimator.predict(test)
    predict_seconds = time.perf_counter() - started
    results = {"n_train": len(train), "n_validation": len(validation), "n_test": len(test),
               "train_seconds": train_seconds, "predict_seconds": predict_seconds,
               "best_epochs": estimator.training_summary_["best_epochs"],
               "config": estimator.config_.to_dict(), "err_scale": estimator.err_scale_,
               "err_constant": estimator.err_constant_, "calibration_split": "validation"}
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
    results["errors"] = _error_report(pred, test)
    floor_spread = np.percentile(np.asarray(test["Z_floor"]), [5, 95])
    results["Z_floor_p5_p95"] = floor_spread.tolist()
    flagged = np.char.startswith(np.asarray(pred["Z_pred_domain_flag"]).astype(str), "out")
    results["domain_flagged_test"] = float(np.mean(flagged))

    floor = results["noise_floor_Z_best"]["sigma"]
    galaxy_floor = results["per_galaxy_floor_rms"]
    print(f"training {train_seconds:.0f} s, prediction {predict_seconds:.1f} s "
          f"({len(train)} train / {len(validation)} validation / {len(test)} test)")
    print(f"{'estimator':<22}{'mu':>8}{'sigma':>8}{'nmad':>8}{'coverage':>10}"
          f"{'/floor':>8}{'/Z_floor':>9}")
    for key in ("gpm_resnet", "colour_polynomial_2", "colour_polynomial_3",
                "noise_floor_Z_best", "predict_mean"):
        s = results[key]
        cover = f"{s['coverage']:.3f}" if "coverage" in s else "-"
        print(f"{key:<22}{s['mu']:8.4f}{s['sigma']:8.4f}{s['nmad']:8.4f}{cover:>10}"
              f"{s['sigma'] / floor:8.3f}{s['sigma'] / galaxy_floor:9.3f}")
    print(f"noise-free floor {floor:.4f}; rms of the per-galaxy floor Z_floor {galaxy_floor:.4f} "
          f"(5-95 %: {floor_spread[0]:.3f}-{floor_spread[1]:.3f})")
    errors = results["errors"]
    print(f"Spearman(Z_pred_err, Z_floor) = {errors['spearman_err_vs_floor']:.3f}; "
          f"Spearman(Z_pred_err, |dZ|) = {errors['spearman_err_vs_abs_residual']:.3f}")
    for column, label in QUINTILE_QUANTITIES:
        cells = ", ".join(f"{q['coverage']:.3f}" for q in errors["quintiles"][column])
        print(f"coverage per quintile of {label:<18}: {cells}")
    print(f"domain: {100 * results['domain_flagged_test']:.1f} % of the test galaxies flagged")
    if args.shifted:
        shifted = _mock_table(args.shifted, args.seed + 100, 0.0)
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
        _plot_reliability(errors["reliability"], f"{args.figures}/lite_mock_reliability.png",
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
