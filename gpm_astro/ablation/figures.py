"""Figures of the ablation studies in the style of the paper's Figs. 11 and 13.

Each reads the study's table (so a figure shows exactly the numbers of the table) and writes a
PNG: `plot_architectures` (Table 1 as a figure), `plot_fig11` (size, resolution and bands:
mu as a red circle, +-1 sigma as the error bar), `plot_fig13` (Z_pred against true stellar
mass: median and +-1 sigma lines against Tremonti et al.'s relation and its 0.1 dex scatter).
An empty bin gets no point and ``n=0`` under its tick; a model that failed (its table row's
``status``) gets no point and ``FAILED`` under its tick.
"""

import numpy as np

__all__ = ["plot_architectures", "plot_fig11", "plot_fig13", "write_figures", "FIGURES"]

#: figure file -> (studies it needs, caption)
FIGURES = {
    "architectures.png": (("architectures",),
                          "Architectures on the same split (Table 1): mean error mu (red "
                          "circle) with +-1 sigma bars and NMAD (black cross); the parameter "
                          "count and training time under each name."),
    "fig11_size_resolution_bands.png": (("size", "resolution", "bands"),
                                        "As the paper's Fig. 11: mu (red circle) and +-1 "
                                        "sigma (bars) of Z_pred - Z_true (a) in bins of the "
                                        "galaxy's enclosing-circle radius, (b) for images "
                                        "resized to each side, (c) for each band set."),
    "fig13_mzr.png": (("mzr",),
                      "As the paper's Fig. 13: the mass-metallicity relation recovered from "
                      "Z_pred (red: median and 16th/84th percentiles in bins of the true "
                      "stellar mass, bins of at least 3 galaxies), from the labels (blue), "
                      "and Tremonti et al. (2004) eq. 5 (black) with its 0.1 dex scatter "
                      "(dashed)."),
}

_RESIDUAL_LABEL = r"$Z_{\rm pred} - Z_{\rm true}$ (dex)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _mu_sigma(ax, x, table, *, nmad=False):
    mu, sigma = np.asarray(table["mu"], float), np.asarray(table["sigma"], float)
    shown = np.isfinite(mu)
    ax.errorbar(np.asarray(x)[shown], mu[shown], yerr=sigma[shown], fmt="o", color="red",
                ecolor="0.3", capsize=4, ms=7, label=r"$\mu \pm \sigma$")
    if nmad:
        ax.plot(np.asarray(x)[shown], np.asarray(table["nmad"], float)[shown], "kx", ms=7,
                label="NMAD")
    ax.axhline(0.0, color="0.6", lw=0.8, ls=":")
    ax.set_ylabel(_RESIDUAL_LABEL)


def _failed(table):
    """Which rows are models that failed (no point drawn; their tick says so)."""
    if "status" not in table.colnames:
        return np.zeros(len(table), bool)
    return np.array([str(s).startswith("failed") for s in table["status"]])


def plot_architectures(table, path):
    """mu +- sigma and NMAD of each architecture (the architectures study's table)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.0), dpi=110)
    x = np.arange(len(table))
    _mu_sigma(ax, x, table, nmad=True)
    labels = [f"{row['name']}\nFAILED" if failed else
              f"{row['name']}\n{row['n_parameters'] / 1e6:.2f} M\n{row['train_seconds']:.0f} s"
              for row, failed in zip(table, _failed(table))]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_title(f"Architectures on the same split ({table.meta.get('n_test', '?')} test "
                 f"galaxies)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_fig11(tables, path):
    """Fig. 11: panels (a) size, (b) resolution, (c) bands, from whichever tables exist."""
    plt = _pyplot()
    panels = [name for name in ("size", "resolution", "bands") if tables.get(name) is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), dpi=110,
                             squeeze=False, sharey=True)
    for ax, name, letter in zip(axes[0], panels, "abc"):
        table = tables[name]
        x = np.arange(len(table))
        _mu_sigma(ax, x, table)
        if name == "size":
            ticks = [f"[{lo:g}, {hi:g}]" for lo, hi in zip(table["radius_low"],
                                                          table["radius_high"])]
            ax.set_xlabel("enclosing-circle radius (arcsec)")
        elif name == "resolution":
            ticks = [str(int(s)) for s in table["input_size"]]
            ax.set_xlabel("image side (pixels)")
        else:
            ticks = [str(b) for b in table["bands"]]
            ax.set_xlabel("bands")
        ticks = [f"{tick}\nFAILED" if failed else f"{tick}\nn={int(n)}"
                 for tick, n, failed in zip(ticks, table["n"], _failed(table))]
        ax.set_xticks(x, ticks, fontsize=8)
        ax.set_xlim(-0.6, len(table) - 0.4)
        ax.set_title(f"({letter}) {name}", fontsize=10, loc="left")
        if ax is not axes[0][0]:
            ax.set_ylabel("")
            ax.tick_params(labelleft=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_fig13(table, path, *, predictions=None, min_count=3):
    """Fig. 13: Z_pred against true log stellar mass, with Tremonti et al.'s relation.

    Parameters
    ----------
    table : astropy.table.Table
        The mzr study's table.
    path : path-like
        PNG to write.
    predictions : astropy.table.Table, optional
        The reference's test predictions, drawn as grey points.
    min_count : int, optional
        Bins with fewer galaxies are not drawn (the lines break there).
    """
    from ..survey_constants import TREMONTI_MASS_RANGE, tremonti_metallicity

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.4), dpi=110)
    mass_column = table.meta.get("summary", {}).get("mass_column", "log M*")
    if predictions is not None and mass_column in predictions.colnames:
        m = np.ma.filled(np.ma.asanyarray(predictions[mass_column]).astype(float), np.nan)
        z = np.ma.filled(np.ma.asanyarray(predictions["Z_pred"]).astype(float), np.nan)
        ax.scatter(m, z, s=4, color="0.75", rasterized=True, label=r"$Z_{\rm pred}$")
    # a bin under min_count is NaN, so the lines break there instead of bridging it
    shown = np.asarray(table["n"]) >= min_count
    x = np.asarray(table["logm_median"], float)

    def line(column):
        return np.where(shown, np.asarray(table[column], float), np.nan)

    for prefix, colour, name in (("Z_pred", "red", r"$Z_{\rm pred}$"),
                                 ("Z_true", "tab:blue", r"$Z_{\rm true}$ (labels)")):
        ax.plot(x, line(f"{prefix}_median"), "-", color=colour, lw=2, label=f"median {name}")
        for suffix in ("p16", "p84"):
            ax.plot(x, line(f"{prefix}_{suffix}"), "--", color=colour, lw=1.2,
                    label=r"$\pm1\sigma$ " + name if suffix == "p16" else None)
    grid = np.linspace(*TREMONTI_MASS_RANGE, 100)
    ax.plot(grid, tremonti_metallicity(grid), "k-", lw=1.5, label="Tremonti et al. (2004)")
    for sign in (-1, 1):
        ax.plot(grid, tremonti_metallicity(grid) + sign * 0.1, "k--", lw=1,
                label=r"$\pm0.1$ dex" if sign > 0 else None)
    ax.set_xlabel(rf"true stellar mass $\log_{{10}}(M_*/M_\odot)$ (dex; {mass_column})")
    ax.set_ylabel(r"$12 + \log({\rm O/H})$ (dex)")
    ax.set_xlim(float(table["logm_low"][0]), float(table["logm_high"][-1]))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_figures(tables, folder, *, predictions=None):
    """Draw every figure whose tables exist into ``folder``; return {file: caption}."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    if tables.get("architectures") is not None:
        plot_architectures(tables["architectures"], folder / "architectures.png")
        written["architectures.png"] = FIGURES["architectures.png"][1]
    if any(tables.get(name) is not None for name in ("size", "resolution", "bands")):
        plot_fig11(tables, folder / "fig11_size_resolution_bands.png")
        written["fig11_size_resolution_bands.png"] = \
            FIGURES["fig11_size_resolution_bands.png"][1]
    if tables.get("mzr") is not None:
        plot_fig13(tables["mzr"], folder / "fig13_mzr.png", predictions=predictions)
        written["fig13_mzr.png"] = FIGURES["fig13_mzr.png"][1]
    return written
