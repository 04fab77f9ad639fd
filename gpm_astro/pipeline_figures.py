"""Figures of a pipeline run, in the style of the paper's Figs. 8, 9, 10, 13, 15 and 16.

Each function draws from the run's own tables and writes PNG files; it returns a list of
``{"name", "file", "caption"}`` entries (``file`` relative to the output folder's parent
stage folder) that the HTML report embeds.
"""

import numpy as np

from .metrics import TREMONTI_MASS_RANGE, summarize, tremonti_mzr
from .tables import missing_mask

__all__ = ["evaluation_figures", "catalogue_figures", "residual_density_panel",
           "density_colours"]

DPI = 90


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _values(column):
    """Float data of a (masked) column, NaN where masked or a missing sentinel."""
    data = np.asarray(np.ma.getdata(np.ma.asanyarray(column)), dtype=float).copy()
    data[missing_mask(column)] = np.nan
    return data


def density_colours(x, y, bins=40):
    """Point density of a scatter (from a 2-D histogram), to colour points as the paper does.

    Parameters
    ----------
    x, y : array_like
        Point coordinates (finite).
    bins : int, optional
        Histogram bins per axis.

    Returns
    -------
    numpy.ndarray
        For each point, the count of its histogram cell divided by the largest count.

    Examples
    --------
    >>> from gpm_astro.pipeline_figures import density_colours
    >>> density_colours([0, 0, 0, 1], [0, 0, 0, 1], bins=2).tolist()
    [1.0, 1.0, 1.0, 0.3333333333333333]
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.size == 0:
        return np.zeros(0)
    counts, xedges, yedges = np.histogram2d(x, y, bins=bins)
    ix = np.clip(np.searchsorted(xedges, x, side="right") - 1, 0, counts.shape[0] - 1)
    iy = np.clip(np.searchsorted(yedges, y, side="right") - 1, 0, counts.shape[1] - 1)
    density = counts[ix, iy]
    return density / density.max()


def _binned_median(x, y, edges, min_count=5):
    centres, median, spread = [], [], []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (x >= low) & (x < high)
        if inside.sum() >= min_count:
            centres.append(0.5 * (low + high))
            median.append(np.median(y[inside]))
            spread.append(np.std(y[inside]))
    return np.array(centres), np.array(median), np.array(spread)


def residual_density_panel(ax_top, ax_bottom, pred, true, *, title="", lim=None):
    """Draw one column of the paper's Fig. 9 on two axes.

    Top: residual ``pred - true`` against ``true``, points coloured by density, with y = 0
    (solid red) and y = +-0.1 dex (dashed purple). Bottom: ``pred`` against ``true`` with the
    1:1 line (black), the running median of ``pred`` (red) and +-1 sigma about it (dashed
    purple).

    Parameters
    ----------
    ax_top, ax_bottom : matplotlib.axes.Axes
        Where to draw.
    pred, true : array_like
        Predicted and true Z (dex); non-finite pairs are skipped.
    title : str, optional
        Panel title (the metrics are appended).
    lim : (float, float), optional
        Axis range of Z; default the 0.5-99.5 percentile range of ``true``.

    Returns
    -------
    dict
        The statistics shown (see `gpm_astro.metrics.summarize`).
    """
    pred = np.asarray(pred, float)
    true = np.asarray(true, float)
    good = np.isfinite(pred) & np.isfinite(true)
    pred, true = pred[good], true[good]
    stats = summarize(pred, true)
    if lim is None:
        lim = (np.percentile(true, 0.5) - 0.05, np.percentile(true, 99.5) + 0.05) \
            if true.size else (8.0, 9.5)
    delta = pred - true
    if true.size:
        ax_top.scatter(true, delta, c=density_colours(true, delta), s=5, cmap="viridis",
                       rasterized=True)
        ax_bottom.scatter(true, pred, c=density_colours(true, pred), s=5, cmap="viridis",
                          rasterized=True)
    ax_top.axhline(0, color="red", lw=1.2)
    for level in (-0.1, 0.1):
        ax_top.axhline(level, color="purple", ls="--", lw=1)
    ax_top.set_xlim(lim)
    ax_top.set_ylim(-0.6, 0.6)
    ax_top.set_ylabel(r"$Z_{\rm pred}-Z_{\rm true}$ (dex)")
    ax_top.set_title(f"{title}\n$\\mu$={stats['mu']:+.3f}  $\\sigma$={stats['sigma']:.3f}  "
                     f"NMAD={stats['nmad']:.3f}  (n={stats['n']})", fontsize=9)
    ax_bottom.plot(lim, lim, color="black", lw=1.2)
    edges = np.linspace(lim[0], lim[1], 13)
    centres, median, spread = _binned_median(true, pred, edges)
    if centres.size:
        ax_bottom.plot(centres, median, color="red", lw=1.5)
        ax_bottom.plot(centres, median + spread, color="purple", ls="--", lw=1)
        ax_bottom.plot(centres, median - spread, color="purple", ls="--", lw=1)
    ax_bottom.set_xlim(lim)
    ax_bottom.set_ylim(lim)
    ax_bottom.set_xlabel(r"$Z_{\rm true}$ = 12 + log(O/H) (dex)")
    ax_bottom.set_ylabel(r"$Z_{\rm pred}$ (dex)")
    return stats


def _save(fig, folder, name):
    path = folder / f"{name}.png"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.png.part"
    fig.savefig(tmp, dpi=DPI, format="png")
    tmp.replace(path)
    _pyplot().close(fig)
    return path


def evaluation_figures(predictions, sample, folder, *, target="oh_p50", main=None,
                       describe=str, noise_floor=None):
    """Draw the test-set figures (paper Figs. 8, 9, 10, 13) into ``folder``.

    Parameters
    ----------
    predictions : dict of str -> astropy.table.Table
        Test-set predictions per estimator label (columns ``Z_pred`` and the target).
    sample : astropy.table.Table
        The drawn sample (all splits), for the colour-colour figure.
    folder : pathlib.Path
        Where the PNG files go.
    target : str, optional
        Column of true Z.
    main : str, optional
        Label of the main estimator (Figs. 8 and 13); default the first.
    describe : callable, optional
        Label -> readable name for titles.
    noise_floor : array_like, optional
        The mock's best possible prediction for the main test rows (drawn in Fig. 9 too).

    Returns
    -------
    list of dict
        ``name``, ``file`` (name of the PNG inside ``folder``) and ``caption`` per figure.
    """
    plt = _pyplot()
    main = main or next(iter(predictions))
    figures = []
    main_table = predictions[main]
    tgt = main_table.meta.get("target", target)
    z_pred, z_true = _values(main_table["Z_pred"]), _values(main_table[tgt])

    # Fig. 8: Z distributions of the test set
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    good = np.isfinite(z_true)
    ax.hist(z_true[good], bins=30, histtype="step", color="red", lw=1.6,
            label=r"$Z_{\rm true}$ (" + tgt + ")")
    goodp = np.isfinite(z_pred)
    ax.hist(z_pred[goodp], bins=20, histtype="step", color="blue", lw=1.6,
            label=r"$Z_{\rm pred}$ (" + describe(main) + ")")
    ax.set_xlabel("12 + log(O/H) (dex)")
    ax.set_ylabel("test galaxies")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, folder, "fig08_z_distribution")
    figures.append({"name": "fig08_z_distribution", "file": "fig08_z_distribution.png",
                    "caption": f"Fig. 8 style: distribution of Z_pred ({describe(main)}, blue) "
                               f"and Z_true ({tgt}, red) on the {int(good.sum())} test galaxies."})

    # Fig. 9: residual density for each estimator (+ the noise floor)
    panels = [(label, _values(t["Z_pred"]), _values(t[t.meta.get("target", target)]))
              for label, t in predictions.items()]
    if noise_floor is not None:
        panels.append(("noise_floor", _values(noise_floor), z_true))
    lim = (np.nanpercentile(z_true, 0.5) - 0.05, np.nanpercentile(z_true, 99.5) + 0.05) \
        if np.isfinite(z_true).any() else (8.0, 9.5)
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels), 6.4), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 2]})
    for column, (label, pred, true) in enumerate(panels):
        title = "mock noise floor" if label == "noise_floor" else describe(label)
        residual_density_panel(axes[0, column], axes[1, column], pred, true,
                               title=f"({chr(97 + column)}) {title}", lim=lim)
    fig.tight_layout()
    _save(fig, folder, "fig09_residuals")
    figures.append({"name": "fig09_residuals", "file": "fig09_residuals.png",
                    "caption": "Fig. 9 style: residual density (top; red y = 0, purple "
                               "+-0.1 dex) and Z_pred against Z_true (bottom; black 1:1, red "
                               "running median, purple +-1 sigma) for every estimator on the "
                               "test set, colour = point density."})

    # Fig. 10: colour-colour coloured by Z
    if all(c in sample.colnames for c in ("flux_g", "flux_r", "flux_z", target)):
        g, r, z = (_values(sample[c]) for c in ("flux_g", "flux_r", "flux_z"))
        with np.errstate(invalid="ignore", divide="ignore"):
            x = -2.5 * np.log10(g / r)
            y = -2.5 * np.log10(r / z)
        zval = _values(sample[target])
        ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(zval)
        fig, ax = plt.subplots(figsize=(5.5, 4.4))
        points = ax.scatter(x[ok], y[ok], c=zval[ok], s=6, cmap="jet", rasterized=True)
        fig.colorbar(points, ax=ax, label=f"{target} (dex)")
        ax.set_xlabel("g - r (mag)")
        ax.set_ylabel("r - z (mag)")
        if ok.any():
            ax.set_xlim(np.percentile(x[ok], [0.5, 99.5]))
            ax.set_ylim(np.percentile(y[ok], [0.5, 99.5]))
        fig.tight_layout()
        _save(fig, folder, "fig10_colour_colour")
        figures.append({"name": "fig10_colour_colour", "file": "fig10_colour_colour.png",
                        "caption": f"Fig. 10 style: g - r against r - z for the "
                                   f"{int(ok.sum())} sampled galaxies, coloured by {target}."})

    # Fig. 13: the mass-metallicity relation recovered through Z_pred
    mass_column = next((c for c in ("lgm_tot_p50", "lgm_fib_p50") if c in main_table.colnames),
                       None)
    if mass_column is not None:
        mass = _values(main_table[mass_column])
        ok = np.isfinite(mass) & np.isfinite(z_pred)
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        ax.scatter(mass[ok], z_pred[ok], s=4, color="0.7", rasterized=True,
                   label=r"$Z_{\rm pred}$, test galaxies")
        low, high = TREMONTI_MASS_RANGE
        if ok.any():
            low = max(low, np.percentile(mass[ok], 1))
            high = min(high, np.percentile(mass[ok], 99))
        grid = np.linspace(*TREMONTI_MASS_RANGE, 100)
        ax.plot(grid, tremonti_mzr(grid), color="black", lw=1.5, label="Tremonti et al. (2004)")
        ax.plot(grid, tremonti_mzr(grid) + 0.1, color="black", ls="--", lw=1)
        ax.plot(grid, tremonti_mzr(grid) - 0.1, color="black", ls="--", lw=1)
        edges = np.linspace(low, high, 11)
        centres, median, spread = _binned_median(mass[ok], z_pred[ok], edges)
        if centres.size:
            ax.plot(centres, median, color="red", lw=1.8, label=r"median $Z_{\rm pred}$")
            ax.plot(centres, median + spread, color="red", ls="--", lw=1)
            ax.plot(centres, median - spread, color="red", ls="--", lw=1)
        ok_true = np.isfinite(mass) & np.isfinite(z_true)
        centres_t, median_t, _ = _binned_median(mass[ok_true], z_true[ok_true], edges)
        if centres_t.size:
            ax.plot(centres_t, median_t, color="tab:blue", lw=1.2, ls=":",
                    label=f"median {tgt} (labels)")
        ax.set_xlabel(f"log M* / Msun ({mass_column})")
        ax.set_ylabel("12 + log(O/H) (dex)")
        ax.set_xlim(*TREMONTI_MASS_RANGE)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        _save(fig, folder, "fig13_mass_metallicity")
        figures.append({"name": "fig13_mass_metallicity", "file": "fig13_mass_metallicity.png",
                        "caption": f"Fig. 13 style: the mass-metallicity relation recovered "
                                   f"through Z_pred ({describe(main)}; red: median and +-1 "
                                   f"sigma in bins of {mass_column}) against Tremonti et al. "
                                   f"(2004) (black, +-0.1 dex dashed)."})
    return figures


def catalogue_figures(catalogue, labelled, folder, *, target="oh_p50", n_training=None):
    """Draw the catalogue figures (paper Figs. 15 and 16) into ``folder``.

    Parameters
    ----------
    catalogue : astropy.table.Table
        The application catalogue (``z_phot_median``, ``mag_r``, ``Z_pred``).
    labelled : astropy.table.Table
        The labelled galaxies (``target`` and ``preprocess_ok``), for Fig. 16.
    folder : pathlib.Path
        Where the PNG files go.
    target : str, optional
        Column of the labels' Z.
    n_training : int, optional
        Only quoted in the caption.

    Returns
    -------
    list of dict
        ``name``, ``file`` and ``caption`` per figure.
    """
    plt = _pyplot()
    figures = []
    z_pred = _values(catalogue["Z_pred"])
    has = np.isfinite(z_pred)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, name, label in zip(axes, ("z_phot_median", "mag_r", "Z_pred"),
                               ("z_phot_median", "mag_r (mag)", "Z_pred (dex)")):
        values = _values(catalogue[name])[has]
        values = values[np.isfinite(values)]
        ax.hist(values, bins=30, color="tab:blue", alpha=0.8)
        if values.size:
            ax.axvline(np.median(values), color="red", lw=1.2)
            ax.set_title(f"median {np.median(values):.2f}", fontsize=9)
        ax.set_xlabel(label)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    axes[0].set_ylabel("galaxies")
    fig.tight_layout()
    _save(fig, folder, "fig15_catalogue")
    figures.append({"name": "fig15_catalogue", "file": "fig15_catalogue.png",
                    "caption": f"Fig. 15 style: photometric redshift, r magnitude and Z_pred of "
                               f"the {int(has.sum())} catalogue galaxies with a prediction "
                               f"(red: median)."})

    ok = np.asarray(np.ma.filled(np.ma.asanyarray(labelled["preprocess_ok"]), False), bool) \
        if "preprocess_ok" in labelled.colnames else np.ones(len(labelled), bool)
    z_label = _values(labelled[target])[ok]
    z_label = z_label[np.isfinite(z_label)]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    bins = np.linspace(min(np.nanmin(z_pred[has]) if has.any() else 8.0,
                           z_label.min() if z_label.size else 8.0) - 0.02,
                       max(np.nanmax(z_pred[has]) if has.any() else 9.5,
                           z_label.max() if z_label.size else 9.5) + 0.02, 35)
    ax.hist(z_pred[has], bins=bins, histtype="step", color="tab:blue", lw=1.6,
            label=f"catalogue galaxies, Z_pred (median {np.median(z_pred[has]):.2f})"
            if has.any() else "catalogue galaxies, Z_pred")
    ax.set_xlabel("12 + log(O/H) (dex)")
    ax.set_ylabel("catalogue galaxies", color="tab:blue")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    twin = ax.twinx()
    twin.hist(z_label, bins=bins, histtype="step", color="orange", lw=1.6,
              label=f"star-forming labels, {target} (median {np.median(z_label):.2f})"
              if z_label.size else "star-forming labels")
    twin.set_ylabel("star-forming galaxies", color="orange")
    twin.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    ax.legend(handles, labels, fontsize=7, loc="upper left")
    fig.tight_layout()
    _save(fig, folder, "fig16_catalogue_vs_labels")
    extra = f" ({n_training} of them trained the model)" if n_training else ""
    figures.append({"name": "fig16_catalogue_vs_labels", "file": "fig16_catalogue_vs_labels.png",
                    "caption": f"Fig. 16 style: Z_pred of the catalogue galaxies (blue, left "
                               f"axis) against {target} of the {z_label.size} labelled "
                               f"star-forming galaxies that passed preprocessing{extra} "
                               f"(orange, right axis)."})
    return figures
