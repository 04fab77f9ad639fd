"""Evaluation of a prediction table: the metrics table and the paper's figures.

`evaluate` computes mu, sigma and NMAD (eq. 3) once on the whole set, the bias and scatter in
bins of the true value and of stellar mass, and the calibration of the per-galaxy errors. The
``plot_*`` functions draw the paper's figures for any estimator:

- `plot_residual_density`: Fig. 9, residual density above, predicted versus true below;
- `plot_z_distributions`: Fig. 8, Z distributions of the training, validation and test sets;
- `plot_colour_colour`: Fig. 10, g - r versus r - z coloured by Z;
- `plot_mzr_recovery`: Fig. 13, the mass-metallicity relation recovered from predictions;
- `plot_catalogue_distributions`: Figs. 15 and 16, distributions of a predicted catalogue.

Each returns a `matplotlib.figure.Figure` (Agg canvas, no pyplot state) and saves it when
given ``path``.
"""

import numpy as np
from astropy.table import Table

from .exceptions import ParameterError
from .metrics import binned_statistics, summarize
from .survey_constants import TREMONTI_MASS_RANGE, flux_to_magnitude, tremonti_metallicity
from .tables import numeric_column, record_step, require_columns, require_table

__all__ = ["evaluate", "plot_residual_density", "plot_z_distributions", "plot_colour_colour",
           "plain_log_ticks",
           "plot_mzr_recovery", "plot_catalogue_distributions"]

DPI = 100


def _values(column):
    """Float data of a (masked) column with NaN where masked, NaN or a -9999/-99 sentinel;
    `SchemaError` for a column of strings or more than one dimension."""
    return numeric_column(column, "evaluate")[0]


def evaluate(table, *, pred="Z_pred", true="oh_p50", err="Z_pred_err", mass=None, z_bins=8,
             mass_bins=None, flag=None):
    """Metrics of a prediction: overall, in bins of the true value and of stellar mass.

    Parameters
    ----------
    table : astropy.table.Table
        Predictions and true values, e.g. the output of `~gpm_astro.predict_metallicity`
        on the test set.
    pred, true : str, optional
        Columns of predicted and true values.
    err : str or None, optional
        Column of per-galaxy errors, for the calibration (``coverage``: fraction with
        ``|pred - true| < err``, 0.683 for calibrated Gaussian errors). None skips it; a name
        that is not in the table is an error.
    mass : str, optional
        Column of log stellar mass (e.g. ``lgm_tot_p50``) for binned statistics by mass.
    z_bins : int or array_like, optional
        Bins of the true value: a count of equal-width bins over its range, or edges.
    mass_bins : int or array_like, optional
        Bins of mass; default 0.5-dex bins from 8.5 to 11.5.
    flag : str, optional
        Flag column to count reasons from; default ``<pred>_flag`` when present.

    Returns
    -------
    astropy.table.Table
        One row per group: ``quantity`` (``all``, the true column's name, or the mass column's
        name), ``bin_low``, ``bin_high``, ``n``, ``mu``, ``sigma``, ``nmad``, ``median`` (dex)
        and, with ``err``, ``coverage``. Rows without a prediction or a true value are
        excluded from the statistics; ``meta`` gives ``n_rows``, ``n_used`` and the flag
        counts.

    Raises
    ------
    SchemaError
        If a named column is missing, not one-dimensional or does not hold numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from gpm_astro.evaluation import evaluate
    >>> rng = np.random.default_rng(0)
    >>> z = rng.uniform(8.5, 9.3, 400)
    >>> t = Table({"oh_p50": z, "Z_pred": z + rng.normal(0, 0.1, 400),
    ...            "Z_pred_err": np.full(400, 0.1)})
    >>> metrics = evaluate(t)
    >>> str(metrics["quantity"][0]), int(metrics["n"][0])
    ('all', 400)
    """
    require_table(table)
    names = [pred, true] + ([err] if err else []) + ([mass] if mass else [])
    require_columns(table, names, "evaluate")
    for name in names:
        numeric_column(table[name], "evaluate")  # strings or 2-D columns: a clear error
    err_values = table[err] if err else None
    overall = summarize(table[pred], table[true], err_values)
    columns = ["quantity", "bin_low", "bin_high", "n", "mu", "sigma", "nmad", "median"]
    if err:
        columns.append("coverage")
    first = {"quantity": "all", "bin_low": np.nan, "bin_high": np.nan, **overall}
    parts = [Table(rows=[[first[c] for c in columns]], names=columns,
                   dtype=[str, float, float, int] + [float] * (len(columns) - 4))]
    if overall["n"]:
        parts.append(binned_statistics(table[pred], table[true], table[true], z_bins,
                                       err=err_values, by_name=true))
        if mass:
            edges = mass_bins if mass_bins is not None else np.arange(8.5, 11.51, 0.5)
            parts.append(binned_statistics(table[pred], table[true], table[mass], edges,
                                           err=err_values, by_name=mass))
    from astropy.table import vstack

    result = vstack(parts, metadata_conflicts="silent")
    result["quantity"] = result["quantity"].astype(str)
    for name in ("bin_low", "bin_high", "mu", "sigma", "nmad", "median"):
        result[name].unit = "dex"
        result[name].format = ".4f"
    if err:
        result["coverage"].format = ".3f"
        result["coverage"].description = "fraction with |pred - true| < err"
    flag = flag or (f"{pred}_flag" if f"{pred}_flag" in table.colnames else None)
    flag_counts = {}
    if flag and flag in table.colnames:
        reasons, counts = np.unique(np.asarray(table[flag]).astype(str), return_counts=True)
        flag_counts = {str(r): int(c) for r, c in zip(reasons, counts)}
    result.meta["n_rows"] = len(table)
    result.meta["n_used"] = overall["n"]
    result.meta["flag_counts"] = flag_counts
    record_step(result, "evaluate", pred=pred, true=true, err=err, mass=mass,
                z_bins=z_bins if np.isscalar(z_bins) else list(z_bins),
                mass_bins=None if mass_bins is None else
                (mass_bins if np.isscalar(mass_bins) else list(mass_bins)))
    return result


# -- figures ----------------------------------------------------------------------------------

def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=DPI)
    return fig


#: Axis name of each quantity the figures show (matplotlib mathtext).
Z_AXIS = "12 + log(O/H)"
MASS_AXIS = r"$\log\,(M_*/M_\odot)$"


def _with_column(text, column):
    """``text (column)``, or ``text`` alone when the column's name adds nothing."""
    return text if column is None or column in text else f"{text} ({column})"


def plain_log_ticks(axis):
    """Label a log-scaled axis (or colour bar axis) 1, 2, 5, 10, 20, ... (no ``2x10^0``).

    Parameters
    ----------
    axis : matplotlib.axis.Axis
        E.g. ``ax.yaxis`` or ``colorbar.ax.yaxis``.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator

    def plain(value, _):
        return f"{value:g}"

    def minor(value, _):  # labelled only when the axis spans less than a decade
        low, high = sorted(axis.get_view_interval())
        return f"{value:.2g}" if low > 0 and high < 10 * low else ""

    axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0), numticks=20))
    axis.set_major_formatter(FuncFormatter(plain))
    axis.set_minor_formatter(FuncFormatter(minor))


def _legend_above(ax, **kwargs):
    """A legend above the axes, where it covers no data."""
    kwargs.setdefault("fontsize", 8)
    return ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), borderaxespad=0.0,
                     frameon=False, **kwargs)


def _binned_percentiles(x, y, edges, min_count=5):
    """Centres, median and 16th/84th percentiles of y in bins of x (NaN where sparse)."""
    centres = 0.5 * (edges[1:] + edges[:-1])
    stats = np.full((3, len(centres)), np.nan)
    index = np.digitize(x, edges) - 1
    for b in range(len(centres)):
        in_bin = y[index == b]
        if in_bin.size >= min_count:
            stats[:, b] = np.percentile(in_bin, [50, 16, 84])
    return centres, stats


def plot_residual_density(table, *, pred="Z_pred", true="oh_p50", bins=40, value_range=None,
                          residual_range=None, title=None, label="Z", axis_name=None,
                          note=None, path=None):
    """Fig. 9 of the paper for one estimator.

    Top: density of the residual ``pred - true`` against the true value, with the zero line.
    Bottom: density of predicted against true values, with the one-to-one line and the running
    median and 16th-84th percentile (+-1 sigma) lines of the prediction in bins of the truth.
    The text gives mu, sigma and NMAD (eq. 3) of the whole set.

    Parameters
    ----------
    table : astropy.table.Table
        Holds the ``pred`` and ``true`` columns.
    pred, true : str, optional
        Column names.
    bins : int, optional
        Bins per axis of the 2-D histograms.
    value_range : (float, float), optional
        Axis range of true and predicted values; default: the full range of both. Give the
        same range to figures that are to be compared.
    residual_range : float, optional
        Half-width (dex) of the residual axis; default 4 sigma (at least 0.1). Give the same
        value to figures that are to be compared.
    title : str, optional
        Figure title, e.g. the estimator's name.
    label : str, optional
        Short name of the quantity (``Z`` or ``log M*``): axes read ``Z_pred``, ``Z_true``.
    axis_name : str, optional
        What the quantity is, for the value axes; default ``12 + log(O/H)`` for ``Z``.
    note : str, optional
        A line of text under the title (e.g. which mass the model was trained on).
    path : str or path-like, optional
        Save the figure there (PNG by its extension).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    SchemaError
        If a column is missing.
    ParameterError
        If no row has both a prediction and a true value.
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap, LogNorm

    require_columns(table, [pred, true], "plot_residual_density")
    p, t = _values(table[pred]), _values(table[true])
    good = np.isfinite(p) & np.isfinite(t)
    if not good.any():
        msg = f"no row has both {pred!r} and {true!r}; nothing to plot"
        raise ParameterError(msg)
    p, t = p[good], t[good]
    stats = summarize(p, t)
    delta = p - t
    if value_range is None:
        both = np.concatenate([p, t])
        pad = 0.02 * (both.max() - both.min()) or 0.05
        value_range = (both.min() - pad, both.max() + pad)
    lo, hi = value_range
    if residual_range is not None:
        d_lim = float(residual_range)
    else:
        d_lim = max(4 * stats["sigma"], 0.1) if np.isfinite(stats["sigma"]) else 0.5
    if axis_name is None:
        axis_name = Z_AXIS if label == "Z" else label

    # Blues without its near-white end, so single galaxies stay visible
    cmap = ListedColormap(colormaps["Blues"](np.linspace(0.3, 1.0, 256)))
    fig = _figure(5.2, 7.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2])
    top.hist2d(t, delta, bins=bins, range=[[lo, hi], [-d_lim, d_lim]], cmap=cmap,
               norm=LogNorm(), cmin=1)
    top.axhline(0, color="k", lw=0.8)
    top.set_ylabel(f"{label}_pred - {label}_true (dex)")
    top.set_ylim(-d_lim, d_lim)
    top.text(0.02, 0.96, f"mu = {stats['mu']:+.4f}\nsigma = {stats['sigma']:.4f}\n"
             f"NMAD = {stats['nmad']:.4f}\nN = {stats['n']}", transform=top.transAxes,
             va="top", fontsize=8, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    image = bottom.hist2d(t, p, bins=bins, range=[[lo, hi], [lo, hi]], cmap=cmap,
                          norm=LogNorm(), cmin=1)[3]
    bottom.plot([lo, hi], [lo, hi], color="k", lw=0.8, label="one to one")
    centres, lines = _binned_percentiles(t, p, np.linspace(lo, hi, 16))
    bottom.plot(centres, lines[0], color="C3", lw=2.0, label="median")
    bottom.plot(centres, lines[1], color="C3", lw=1.5, ls="--", label="16th / 84th percentile")
    bottom.plot(centres, lines[2], color="C3", lw=1.5, ls="--")
    bottom.set_xlim(lo, hi)
    bottom.set_ylim(lo, hi)
    bottom.set_xlabel(_with_column(f"{label}_true: {axis_name}", true))
    bottom.set_ylabel(_with_column(f"{label}_pred: {axis_name}", pred))
    bottom.legend(loc="lower right", fontsize=8)
    colorbar = fig.colorbar(image, ax=bottom, label="galaxies per bin")
    plain_log_ticks(colorbar.ax.yaxis)
    if title:
        import textwrap

        text = "\n".join(textwrap.wrap(title, 48) + ([note] if note else []))
        fig.suptitle(text, fontsize="large" if "\n" not in text else "medium")
    return _finish(fig, path)


def plot_z_distributions(parts, *, column="oh_p50", bins=30, xlabel=None, path=None):
    """Fig. 8: the distribution of Z in each part of the sample (e.g. train, validation, test).

    Parameters
    ----------
    parts : dict or sequence of (str, Table)
        Label -> table, e.g. ``{"train": train, "validation": val, "test": test}``.
    column : str, optional
        The column to histogram.
    bins : int, optional
        Number of bins, shared by all parts.
    xlabel : str, optional
        Label of the Z axis; default ``12 + log(O/H) (column)``.
    path : str or path-like, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    items = list(parts.items()) if isinstance(parts, dict) else list(parts)
    if not items:
        msg = f"parts must hold at least one (label, table) pair, got {parts!r}"
        raise ParameterError(msg)
    values = []
    for label, table in items:
        require_columns(table, [column], f"plot_z_distributions ({label})")
        v = _values(table[column])
        values.append(v[np.isfinite(v)])
    joined = np.concatenate(values)
    edges = np.histogram_bin_edges(joined, bins=bins) if joined.size else bins
    fig = _figure(5.5, 3.8)
    ax = fig.subplots()
    for (label, _), v in zip(items, values):
        ax.hist(v, bins=edges, histtype="step", lw=1.5, label=f"{label} (N = {v.size})")
    ax.set_xlabel(xlabel or _with_column(Z_AXIS, column))
    ax.set_ylabel("galaxies")
    longest = max(len(label) for label, _ in items)
    _legend_above(ax, ncols=1 if longest > 24 else min(len(items), 3))
    return _finish(fig, path)


def _colours(table, flux_columns):
    require_columns(table, list(flux_columns), "colour-colour figure")
    mags = []
    for column in flux_columns:
        mags.append(flux_to_magnitude(_values(table[column])))
    return mags[0] - mags[1], mags[1] - mags[2]


def plot_colour_colour(table, *, z_column="oh_p50", flux_columns=("flux_g", "flux_r", "flux_z"),
                       path=None, max_points=20000, seed=0):
    """Fig. 10: g - r against r - z, each galaxy coloured by its Z.

    Parameters
    ----------
    table : astropy.table.Table
        Fluxes in nanomaggies and a Z column.
    z_column : str, optional
        The Z to colour by (true or predicted).
    flux_columns : sequence of 3 str, optional
        The g, r and z flux columns.
    path : str or path-like, optional
        Save the figure there.
    max_points : int, optional
        Plot at most this many galaxies (a random subset) to keep the file small.
    seed : int, optional
        Seed of that subset.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(table, [z_column], "plot_colour_colour")
    x, y = _colours(table, flux_columns)
    z = _values(table[z_column])
    good = np.flatnonzero(np.isfinite(x) & np.isfinite(y) & np.isfinite(z))
    if good.size > max_points:
        good = np.random.default_rng(seed).choice(good, max_points, replace=False)
    fig = _figure(5.2, 4.2)
    ax = fig.subplots()
    if good.size:
        lo, hi = np.percentile(z[good], [2, 98])
        points = ax.scatter(x[good], y[good], c=z[good], s=4, cmap="coolwarm", vmin=lo, vmax=hi,
                            rasterized=True)
        fig.colorbar(points, ax=ax, label=_with_column(Z_AXIS, z_column))
        xl, xh = np.percentile(x[good], [0.5, 99.5])
        yl, yh = np.percentile(y[good], [0.5, 99.5])
        ax.set_xlim(xl - 0.05, xh + 0.05)
        ax.set_ylim(yl - 0.05, yh + 0.05)
    ax.set_xlabel("g - r (mag)")
    ax.set_ylabel("r - z (mag)")
    return _finish(fig, path)


def plot_mzr_recovery(table, *, pred="Z_pred", mass="lgm_tot_p50", true=None, bins=None,
                      path=None, min_count=5):
    """Fig. 13: median and +-1 sigma of the predicted Z in bins of true stellar mass.

    Parameters
    ----------
    table : astropy.table.Table
        Predictions and masses.
    pred : str, optional
        Column of predicted Z.
    mass : str, optional
        Column of the true log stellar mass.
    true : str, optional
        Column of true Z; when given its median and +-1 sigma are drawn too.
    bins : array_like, optional
        Mass bin edges; default 0.25-dex bins from 8.5 to 11.5.
    path : str or path-like, optional
        Save the figure there.
    min_count : int, optional
        Bins with fewer galaxies are left out.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(table, [pred, mass] + ([true] if true else []), "plot_mzr_recovery")
    m, p = _values(table[mass]), _values(table[pred])
    edges = np.arange(8.5, 11.501, 0.25) if bins is None else np.asarray(bins, dtype=float)
    fig = _figure(5.5, 4.6)
    ax = fig.subplots()
    good = np.isfinite(m) & np.isfinite(p)
    ax.scatter(m[good], p[good], s=2, color="0.75", rasterized=True, label="predictions")
    series = [(pred, p, "C0")] + ([(true, _values(table[true]), "C2")] if true else [])
    for name, values, colour in series:
        ok = np.isfinite(m) & np.isfinite(values)
        centres, lines = _binned_percentiles(m[ok], values[ok], edges, min_count=min_count)
        ax.plot(centres, lines[0], "o-", color=colour, label=f"median {name}")
        ax.fill_between(centres, lines[1], lines[2], color=colour, alpha=0.25,
                        label=f"16th-84th percentile {name}")
    grid = np.linspace(*TREMONTI_MASS_RANGE, 100)
    ax.plot(grid, tremonti_metallicity(grid), "k--", label="Tremonti et al. (2004)")
    ax.set_xlabel(_with_column(MASS_AXIS, mass))
    ax.set_ylabel(Z_AXIS)
    ax.set_xlim(edges[0], edges[-1])
    _legend_above(ax, ncols=2, fontsize=7)
    return _finish(fig, path)


#: Axis labels of the catalogue columns (the column name when not listed).
CATALOGUE_AXES = {"z_phot_median": "photometric redshift, z_phot_median",
                  "mag_r": "r magnitude, mag_r (mag)", "Z_pred": f"Z_pred: {Z_AXIS}"}


def plot_catalogue_distributions(table, *, columns=("z_phot_median", "mag_r", "Z_pred"),
                                 reference=None, reference_label="training set", bins=40,
                                 path=None):
    """Figs. 15 and 16: histograms of a predicted catalogue, with each median marked.

    Parameters
    ----------
    table : astropy.table.Table
        The catalogue (e.g. EXP galaxies with ``Z_pred``). A missing ``mag_r`` is computed from
        ``flux_r`` (``22.5 - 2.5 log10 flux``) when that column exists.
    columns : sequence of str, optional
        One panel per column.
    reference : array_like or Table column, optional
        Values overlaid on the last panel (e.g. the training set's true Z, as in Fig. 16).
    reference_label : str, optional
        Legend label of ``reference``.
    bins : int, optional
        Bins per histogram.
    path : str or path-like, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = {}
    for column in columns:
        if column == "mag_r" and column not in table.colnames and "flux_r" in table.colnames:
            values = flux_to_magnitude(_values(table["flux_r"]))
        else:
            require_columns(table, [column], "plot_catalogue_distributions")
            values = _values(table[column])
        data[column] = values[np.isfinite(values)]
    fig = _figure(max(3.6 * len(columns), 5.4), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(columns)))
    for i, (ax, (column, values)) in enumerate(zip(axes, data.items())):
        edges = np.histogram_bin_edges(values, bins=bins) if values.size else bins
        ax.hist(values, bins=edges, histtype="stepfilled", alpha=0.6, density=True,
                label=f"catalogue (N = {values.size})")
        if values.size:
            median = float(np.median(values))
            ax.axvline(median, color="C0", ls="--", label=f"median {median:.2f}")
        if reference is not None and i == len(columns) - 1:
            ref = _values(reference)
            ref = ref[np.isfinite(ref)]
            ax.hist(ref, bins=edges, histtype="step", color="C1", lw=1.5, density=True,
                    label=f"{reference_label} (N = {ref.size})")
            if ref.size:
                ax.axvline(np.median(ref), color="C1", ls=":",
                           label=f"median {np.median(ref):.2f}")
        ax.set_xlabel(CATALOGUE_AXES.get(column, column))
        ax.set_ylabel("density")
        _legend_above(ax, fontsize=7, ncols=2)
    return _finish(fig, path)
