"""Make the mock-sky figures and numbers of docs/mock_sky.rst.

    OMP_NUM_THREADS=1 python docs/_static/mock/make_mock_figures.py

Writes cutout_grid.png (one row per truth case, drawn as the Legacy Survey viewer draws colour
images) and mzr.png (Z against stellar mass), and prints the scatter of Z about the colour
polynomials, the Tremonti MZR and the noise-floor prediction.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gpm_astro.visualization import plot_cutout_grid  # noqa: E402
from gpm_astro_plugins.mock import TRUTH_CASES, MockSky, mzr_tremonti  # noqa: E402
from gpm_astro_plugins.mock.sky import polynomial_design  # noqa: E402

HERE = Path(__file__).parent


def poly_sigma(features, target, order):
    design = polynomial_design((features - features.mean(0)) / features.std(0), order)
    half = len(target) // 2
    coef, *_ = np.linalg.lstsq(design[:half], target[:half], rcond=None)
    return float(np.std(target[half:] - design[half:] @ coef))


def numbers(n=20000):
    labels, images, truth = MockSky(n_galaxies=n, seed=3).catalog()
    use = (truth["truth_case"] == "clean") & truth["labelled"]
    mags = np.column_stack([images[f"mag_{b}"][use].filled(np.nan) for b in "grz"])
    colours = np.column_stack([mags[:, 0] - mags[:, 1], mags[:, 1] - mags[:, 2]])
    z_true = np.asarray(truth["Z_true"][use])
    x = np.asarray(truth["logmstar"][use])
    print(f"clean labelled galaxies: {use.sum()} of {n}")
    print(f"std of Z_true: {np.std(z_true):.3f} dex")
    print(f"colour polynomial, order 2: sigma {poly_sigma(colours, z_true, 2):.3f} dex")
    print(f"colour polynomial, order 3: sigma {poly_sigma(colours, z_true, 3):.3f} dex")
    residual = z_true - mzr_tremonti(x)
    print(f"Tremonti MZR from the true mass: mu {residual.mean():+.3f}, "
          f"sigma {residual.std():.3f} dex")
    floor = z_true - np.asarray(truth["Z_best"][use])
    print(f"noise floor (Z_true - Z_best): mu {floor.mean():+.3f}, sigma {floor.std():.3f} dex")
    galaxy_floor = np.asarray(truth["Z_floor"][use])
    print(f"per-galaxy floor Z_floor: rms {np.sqrt(np.mean(galaxy_floor ** 2)):.3f}, 5-95 % "
          f"{np.percentile(galaxy_floor, 5):.3f}-{np.percentile(galaxy_floor, 95):.3f} dex")
    unpredictable = truth["Z_true"] - truth["Z_mzr"] - (-0.3) * truth["ssfr_offset"]
    print(f"intrinsic scatter (unpredictable part): {np.std(unpredictable):.3f} dex")
    for lo in np.arange(8.5, 11.5, 0.5):
        in_bin = (x >= lo) & (x < lo + 0.5)
        if in_bin.sum() > 20:
            print(f"  log M* {lo:.1f}-{lo + 0.5:.1f}: n {in_bin.sum():5d}, "
                  f"<Z - MZR> {residual[in_bin].mean():+.3f}, std {residual[in_bin].std():.3f}")
    print(f"median r mag labelled {np.median(truth['mag_true'][truth['labelled'], 1]):.2f}, "
          f"unlabelled {np.median(truth['mag_true'][~truth['labelled'], 1]):.2f}; "
          f"median z labelled {np.median(truth['redshift'][truth['labelled']]):.3f}, "
          f"unlabelled {np.median(truth['redshift'][~truth['labelled']]):.3f}")
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    ax.scatter(x, z_true, s=1, alpha=0.3, color="0.3", rasterized=True)
    grid = np.linspace(8.5, 11.5, 50)
    ax.plot(grid, mzr_tremonti(grid), color="C3", label="Tremonti et al. (2004)")
    ax.set_xlabel(r"$\log_{10} M_*/M_\odot$")
    ax.set_ylabel(r"$Z = 12 + \log(\mathrm{O/H})$")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "mzr.png", dpi=90)


def cutout_grid(n_columns=5):
    data = MockSky(n_galaxies=160, seed=5, labelled_fraction=0.8).generate()
    rows = []
    for case in TRUTH_CASES:
        picks = np.flatnonzero(data.truth["truth_case"] == case)[:n_columns]
        rows.append([data.images["cutout"][k] for k in picks])
    fig = plot_cutout_grid(rows, row_labels=[c.replace("_", " ") for c in TRUTH_CASES],
                           panel_size=1.2)
    path = HERE / "cutout_grid.png"
    fig.savefig(path, dpi=64)
    # noise compresses badly: a 256-colour palette keeps the file small
    from PIL import Image

    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)


if __name__ == "__main__":
    numbers()
    cutout_grid()
