"""Colour polynomials and the mass-metallicity relation on a mock sky, against its noise floor.

Run: ``OMP_NUM_THREADS=1 python benchmarks/mock_baselines.py [n_galaxies] [n_skies] [figure_dir]``
(about 1.5 minutes per 4000-galaxy sky on one core, most of it drawing the mock cutouts;
several skies with seeds 0, 1, ... are pooled to keep memory bounded).

The labelled, star-forming, clean galaxies of a `MockSky` (their catalogue fluxes from the
image table, their labels from the MPA-JHU-like table) are split 5:3:2. The estimators are
fitted on the training part and scored on the test part against ``oh_p50`` (the label the
paper trains on) and against the mock's ``Z_true``. The noise floor is the mock's ``Z_best``,
E[Z | everything a noise-free image shows], which is the best any image-based estimator can do.
"""

import argparse
from pathlib import Path

import numpy as np
from astropy.table import join, vstack

from gpm_astro import predict_metallicity
from gpm_astro.catalog import select_starforming
from gpm_astro.evaluation import plot_colour_colour, plot_residual_density
from gpm_astro.metrics import summarize
from gpm_astro.sampling import split_table
from gpm_astro_plugins.mock import MockSky


def labelled_clean(n_galaxies, seed):
    data = MockSky(n_galaxies=n_galaxies, seed=seed, progress=True).generate()
    images = data.images.copy(copy_data=False)
    images.remove_column("cutout")
    truth = data.truth
    for name in ("specobjid", "truth_case", "Z_true", "Z_best", "Z_mzr", "logmstar"):
        images[name] = truth[name]
    images = images[(np.asarray(images["specobjid"]) >= 0)
                    & (np.asarray(images["truth_case"]).astype(str) == "clean")]
    labels = select_starforming(data.labels)
    keep = ["specobjid", "oh_p50", "lgm_tot_p50", "lgm_fib_p50"]
    images.meta = {}
    labels = labels[keep]
    labels.meta = {}
    table = join(images, labels, keys="specobjid")
    table.meta = {}
    return table, truth.meta.get("noise_floor_clean_labelled")


def main(n_galaxies=4000, n_skies=1, figure_dir=None):
    parts = [labelled_clean(n_galaxies, seed) for seed in range(n_skies)]
    table = vstack([p[0] for p in parts], metadata_conflicts="silent")
    floors = [p[1] for p in parts]
    train, _, test = split_table(table, seed=123)
    print(f"{n_skies} x {n_galaxies} mock galaxies -> {len(table)} labelled clean "
          f"star-forming; train {len(train)}, test {len(test)}; mock noise floor (meta) {floors}")
    rows = [("noise floor (Z_best)", test["Z_best"], None)]
    results = {}
    for label, kwargs in (("colour polynomial, order 2", {"order": 2}),
                          ("colour polynomial, order 3", {"order": 3})):
        out = predict_metallicity(test, estimator="colour_polynomial", fit_table=train,
                                  progress=False, **kwargs)
        rows.append((label, out["Z_pred"], out["Z_pred_err"]))
        results[kwargs["order"]] = out
    mzr = predict_metallicity(test, estimator="mass_metallicity", progress=False)
    rows.append(("MZR from lgm_tot_p50", mzr["Z_pred"], mzr["Z_pred_err"]))
    print(f"{'estimator':30s} {'vs':8s} {'n':>5s} {'mu':>8s} {'sigma':>7s} {'NMAD':>7s} "
          f"{'cover':>6s}")
    for label, pred, err in rows:
        for true_name in ("oh_p50", "Z_true"):
            s = summarize(pred, test[true_name], err)
            cover = f"{s['coverage']:.3f}" if err is not None else "  -  "
            print(f"{label:30s} {true_name:8s} {s['n']:5d} {s['mu']:+8.4f} {s['sigma']:7.4f} "
                  f"{s['nmad']:7.4f} {cover:>6s}")
    if figure_dir:
        folder = Path(figure_dir)
        folder.mkdir(parents=True, exist_ok=True)
        plot_residual_density(results[2], title="colour polynomial, order 2 (mock sky test set)",
                              path=folder / "residual_density_poly2_mock.png")
        plot_colour_colour(table, path=folder / "colour_colour_mock.png")
        print(f"figures written to {folder}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_galaxies", nargs="?", type=int, default=4000,
                        help="galaxies per mock sky (default: 4000)")
    parser.add_argument("n_skies", nargs="?", type=int, default=1,
                        help="mock skies, seeds 0, 1, ... (default: 1)")
    parser.add_argument("figure_dir", nargs="?", default=None,
                        help="also draw the figures into this folder")
    args = parser.parse_args()
    main(args.n_galaxies, args.n_skies, args.figure_dir)
