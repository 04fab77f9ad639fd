"""Accuracy of the lite GPM-ResNet on the mock sky, against the colour polynomial.

Draws a mock sky of clean, labelled galaxies (``MockSky`` with every defect rate 0), splits it
5:3:2 (train / validation / test, seed 123), trains the lite GPM-ResNet on Z_true, fits the
2nd- and 3rd-order colour polynomials on the same training rows, and prints mu, sigma, NMAD and
the error coverage on the test rows beside the mock's noise floor (Z_best, the best any
estimator can do from the images).

Run on demand (a few minutes on 2 CPU cores)::

    OMP_NUM_THREADS=2 python benchmarks/gpm_resnet_mock_accuracy.py --n 3000
"""

import argparse
import json
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="galaxies in the mock sky")
    parser.add_argument("--seed", type=int, default=1, help="mock sky seed")
    parser.add_argument("--epochs", type=int, default=None, help="override lite epochs")
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
                        help="directory for Fig. 9-style residual-density figures")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="per-epoch checkpoints and loss_history.csv (to follow progress)")
    args = parser.parse_args(argv)

    from gpm_astro.metrics import summarize
    from gpm_astro.sampling import split_table
    from gpm_astro_plugins.colour_polynomial.estimator import ColourPolynomial
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator, get_config
    from gpm_astro_plugins.mock.sky import MockSky

    started = time.perf_counter()
    sky = MockSky(n_galaxies=args.n, seed=args.seed, blend_rate=0, large_rate=0,
                  empty_rate=0, bad_pixel_rate=0, labelled_fraction=1.0).generate()
    table = sky.images
    for name in ("Z_true", "Z_best", "logmstar"):
        table[name] = sky.truth[name]
    print(f"mock sky: {len(table)} galaxies in {time.perf_counter() - started:.0f} s")
    train, validation, test = split_table(table, (5, 3, 2), seed=123)

    config = get_config(args.config)
    for item in args.set:
        key, value = item.split("=", 1)
        config = config.replace(**{key: json.loads(value) if value[:1] in "0123456789[-tfn"
                                   and value not in ("none",) else value})
    estimator = GPMResNetEstimator(config=config, epochs=args.epochs, lr=args.lr,
                                   batch_size=args.batch_size, mc_passes=args.mc_passes,
                                   n_ensemble=args.n_ensemble, seed=0, progress=False,
                                   checkpoint_dir=args.checkpoint_dir)
    started = time.perf_counter()
    if args.load:
        estimator = GPMResNetEstimator.load(args.load, progress=False,
                                            mc_passes=args.mc_passes)
    else:
        estimator.fit(train, target="Z_true", validation=validation)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    pred = estimator.predict(test)
    predict_seconds = time.perf_counter() - started
    results = {"n_train": len(train), "n_validation": len(validation), "n_test": len(test),
               "train_seconds": train_seconds, "predict_seconds": predict_seconds,
               "best_epochs": estimator.training_summary_["best_epochs"],
               "config": estimator.config_.to_dict(), "err_scale": estimator.err_scale_}
    results["gpm_resnet_lite"] = summarize(pred["Z_pred"], test["Z_true"], pred["Z_pred_err"])
    for order in (2, 3):
        poly = ColourPolynomial(order=order).fit(train, target="Z_true")
        out = poly.predict(test)
        results[f"colour_polynomial_{order}"] = summarize(out["Z_pred"], test["Z_true"],
                                                          out["Z_pred_err"])
    results["noise_floor_Z_best"] = summarize(test["Z_best"], test["Z_true"])
    results["predict_mean"] = summarize(np.full(len(test), np.mean(train["Z_true"])),
                                        test["Z_true"])
    # does the error rank galaxies? coverage in halves of the quoted error
    err = np.asarray(pred["Z_pred_err"])
    delta = np.abs(np.asarray(pred["Z_pred"]) - np.asarray(test["Z_true"]))
    small = err <= np.median(err)
    results["rms_small_err_half"] = float(np.sqrt(np.mean(delta[small] ** 2)))
    results["rms_large_err_half"] = float(np.sqrt(np.mean(delta[~small] ** 2)))
    print(f"training {train_seconds:.0f} s, prediction {predict_seconds:.1f} s "
          f"({len(test)} galaxies, {args.mc_passes} MC passes)")
    print(f"{'estimator':<22}{'mu':>8}{'sigma':>8}{'nmad':>8}{'coverage':>10}")
    for key in ("gpm_resnet_lite", "colour_polynomial_2", "colour_polynomial_3",
                "noise_floor_Z_best", "predict_mean"):
        s = results[key]
        cover = f"{s['coverage']:.3f}" if "coverage" in s else "-"
        print(f"{key:<22}{s['mu']:8.4f}{s['sigma']:8.4f}{s['nmad']:8.4f}{cover:>10}")
    print(f"RMS of |dZ| for the half with the smaller / larger Z_pred_err: "
          f"{results['rms_small_err_half']:.4f} / {results['rms_large_err_half']:.4f}")
    if args.figures:
        from pathlib import Path

        from gpm_astro.evaluation import plot_residual_density

        Path(args.figures).mkdir(parents=True, exist_ok=True)
        test = test.copy(copy_data=False)
        test["Z_pred"] = pred["Z_pred"]
        plot_residual_density(test, true="Z_true", value_range=(8.2, 9.4),
                              title="GPM-ResNet lite, mock sky test set",
                              path=f"{args.figures}/lite_mock_residuals.png")
        test["Z_pred"] = ColourPolynomial(order=2).fit(train, target="Z_true").predict(
            test)["Z_pred"]
        plot_residual_density(test, true="Z_true", value_range=(8.2, 9.4),
                              title="colour polynomial (2nd order), mock sky test set",
                              path=f"{args.figures}/colour2_mock_residuals.png")
    if args.save:
        estimator.save(args.save)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, default=float)
    return results


if __name__ == "__main__":
    main()
