"""Figures of a pipeline run, in the style of the paper's Figs. 8, 9, 10, 13, 15 and 16.

The drawing is done by `gpm_astro.evaluation`'s plotting helpers; this module picks the run's
tables for each figure, writes the PNG files atomically, and returns the list the HTML report
embeds: ``{"name", "file", "caption"}`` with ``file`` relative to the stage folder.
"""

import numpy as np
from astropy.table import Table

from .tables import missing_mask

__all__ = ["evaluation_figures", "catalogue_figures", "save_figure"]

DPI = 80


def _values(column):
    """Float data of a (masked) column, NaN where masked or a missing sentinel."""
    data = np.asarray(np.ma.getdata(np.ma.asanyarray(column)), dtype=float).copy()
    data[missing_mask(column)] = np.nan
    return data


def save_figure(fig, folder, name):
    """Write a matplotlib Figure to ``folder/name.png`` atomically and return the file name."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.png.part"
    fig.savefig(tmp, dpi=DPI, format="png")
    tmp.replace(folder / f"{name}.png")
    return f"{name}.png"


def evaluation_figures(predictions, sample, folder, *, target="oh_p50", main=None,
                       describe=str, noise_floor=None):
    """Draw the test-set figures (paper Figs. 8, 9, 10, 13) into ``folder``.

    Parameters
    ----------
    predictions : dict of str -> astropy.table.Table
        Test-set predictions per estimator label (``Z_pred`` and the target column; the
        table's ``meta["target"]`` overrides ``target``).
    sample : astropy.table.Table
        The drawn sample (all splits, column ``split``), for Figs. 8 and 10.
    folder : pathlib.Path
        Where the PNG files go.
    target : str, optional
        Column of true Z.
    main : str, optional
        Label of the main estimator (Figs. 8 and 13); default the first.
    describe : callable, optional
        Label -> readable estimator name for titles and captions.
    noise_floor : array_like, optional
        The mock's best possible prediction for the main estimator's test rows; drawn as one
        more Fig. 9 panel.

    Returns
    -------
    list of dict
        ``name``, ``file`` and ``caption`` of each figure, in order.
    """
    from . import evaluation

    main = main or next(iter(predictions))
    main_table = predictions[main]
    tgt = main_table.meta.get("target", target)
    figures = []

    def add(fig, name, caption):
        figures.append({"name": name, "file": save_figure(fig, folder, name),
                        "caption": caption})

    # Fig. 8: Z_pred against Z_true on the test set, and the Z of the three splits
    z_true = _values(main_table[tgt])
    z_pred = _values(main_table["Z_pred"])
    parts = {f"Z_true ({tgt}), test": Table({"Z": z_true}),
             f"Z_pred, {describe(main)}": Table({"Z": z_pred})}
    add(evaluation.plot_z_distributions(parts, column="Z", bins=25, xlabel=evaluation.Z_AXIS),
        "fig08_z_distribution",
        f"Fig. 8 style: distribution of Z_pred ({describe(main)}) and Z_true ({tgt}) on the "
        f"{int(np.isfinite(z_true).sum())} test galaxies.")
    split = np.asarray(sample["split"]).astype(str)
    parts = {name: sample[split == name] for name in ("train", "validation", "test")}
    add(evaluation.plot_z_distributions(parts, column=target, bins=25), "fig08_splits",
        f"The uniform-in-Z sample: {target} of the training, validation and test sets (equal "
        f"counts per bin where the pool holds enough galaxies, all of them where it does not).")

    # Fig. 9: residual density for every estimator (and the mock's noise floor), all on the
    # same axes so that they can be compared panel by panel
    value_range, residual_range = _common_ranges(predictions, target, noise_floor, z_true)
    common = {"value_range": value_range, "residual_range": residual_range}
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    for label, table in predictions.items():
        true = table.meta.get("target", target)
        if np.isfinite(_values(table["Z_pred"])).any():
            fig = evaluation.plot_residual_density(table, pred="Z_pred", true=true,
                                                   title=f"({next(letters)}) {describe(label)}",
                                                   **common)
            add(fig, f"fig09_{label}",
                f"Fig. 9 style, {describe(label)}: residual density (top) and Z_pred against "
                f"{true} (bottom; one-to-one line, running median and 16th-84th percentiles) "
                f"on the test set. Every Fig. 9 panel has the same axes.")
        mass_column = table.meta.get("mass_column")
        mass_target = table.meta.get("mass_target")
        if mass_column and mass_target and mass_column in table.colnames:
            kind = MASS_KINDS.get(mass_target, mass_target)
            fig = evaluation.plot_residual_density(
                table, pred=mass_column, true=mass_target, label="log M*",
                axis_name=evaluation.MASS_AXIS,
                title=f"stellar mass from the images ({label})",
                note=f"trained on the {kind}, as in the paper (Sect. 4.6)")
            add(fig, f"fig09_{label}_mass",
                f"Fig. 9 style for the image mass model behind {describe(label)}: "
                f"{mass_column} against {mass_target} on the test set. "
                + MASS_NOTES.get(mass_target, ""))
    if noise_floor is not None:
        table = Table({"Z_best": noise_floor, tgt: main_table[tgt]})
        fig = evaluation.plot_residual_density(table, pred="Z_best", true=tgt,
                                               title=f"({next(letters)}) mock noise floor",
                                               **common)
        add(fig, "fig09_noise_floor",
            "Fig. 9 style for the mock's noise floor: the best prediction the mock's images "
            "allow (Z_best, from the generative model) against the labels.")

    # Fig. 10: colour-colour coloured by Z
    if all(c in sample.colnames for c in ("flux_g", "flux_r", "flux_z")):
        add(evaluation.plot_colour_colour(sample, z_column=target), "fig10_colour_colour",
            f"Fig. 10 style: g - r against r - z of the {len(sample)} sampled galaxies, "
            f"coloured by {target}.")

    # Fig. 13: the mass-metallicity relation recovered through Z_pred
    mass = next((c for c in ("lgm_tot_p50", "lgm_fib_p50") if c in main_table.colnames), None)
    if mass is not None:
        add(evaluation.plot_mzr_recovery(main_table, pred="Z_pred", mass=mass, true=tgt),
            "fig13_mass_metallicity",
            f"Fig. 13 style: the mass-metallicity relation recovered through Z_pred "
            f"({describe(main)}) and through the labels ({tgt}), median and 16th-84th "
            f"percentiles in bins of the {MASS_KINDS.get(mass, mass)} ({mass}), against "
            f"Tremonti et al. (2004), whose relation is in total stellar mass.")
    return figures


#: What the MPA-JHU mass columns measure.
MASS_KINDS = {"lgm_tot_p50": "total stellar mass", "lgm_fib_p50": "fibre stellar mass"}
#: Why a mass figure shows the mass it shows.
MASS_NOTES = {
    "lgm_fib_p50": "The paper (Sect. 4.6) trains its image mass model on the MPA-JHU fibre "
                   "mass lgm_fib_p50 (the stellar mass inside the 3-arcsec SDSS fibre) and "
                   "feeds it to Tremonti et al.'s relation, which was fitted on total masses; "
                   "the pipeline follows the paper. Fibre masses lie below total masses, so "
                   "this route is biased low in Z; mzr_catalogue_mass uses the total mass "
                   "lgm_tot_p50 instead.",
}


def _common_ranges(predictions, target, noise_floor, z_true):
    """One value range (Z_true's full range, widened to most predictions) and one residual
    half-width (4 sigma of the widest estimator) for every Fig. 9 panel."""
    values = [z_true[np.isfinite(z_true)]]
    widths = []
    for table in list(predictions.values()) + ([None] if noise_floor is not None else []):
        if table is None:
            pred, true = _values(noise_floor), z_true
        else:
            pred, true = _values(table["Z_pred"]), _values(table[table.meta.get("target",
                                                                                target)])
        good = np.isfinite(pred) & np.isfinite(true)
        if good.sum() > 1:
            values.append(np.percentile(pred[good], [0.5, 99.5]))
            widths.append(4 * float(np.std(pred[good] - true[good])))
    values = np.concatenate(values)
    if not values.size:
        return None, None
    pad = 0.02 * (values.max() - values.min()) or 0.05
    residual = max(widths + [0.1]) if widths else None
    return (float(values.min() - pad), float(values.max() + pad)), residual


def catalogue_figures(catalogue, labelled, folder, *, target="oh_p50", n_training=None):
    """Draw the catalogue figures (paper Figs. 15 and 16) into ``folder``.

    Parameters
    ----------
    catalogue : astropy.table.Table
        The application catalogue (``z_phot_median``, ``mag_r``, ``Z_pred``).
    labelled : astropy.table.Table
        The crossmatched labels (``target``, ``preprocess_ok``), for Fig. 16.
    folder : pathlib.Path
        Where the PNG files go.
    target : str, optional
        Column of the labels' Z.
    n_training : int, optional
        Quoted in the caption.

    Returns
    -------
    list of dict
        ``name``, ``file`` and ``caption`` of each figure.
    """
    from . import evaluation

    has = np.isfinite(_values(catalogue["Z_pred"]))
    figures = []
    if not has.any():
        return figures
    predicted = catalogue[has]
    fig = evaluation.plot_catalogue_distributions(predicted, bins=30)
    figures.append({"name": "fig15_catalogue", "file": save_figure(fig, folder,
                                                                  "fig15_catalogue"),
                    "caption": f"Fig. 15 style: photometric redshift, r magnitude and Z_pred of "
                               f"the {int(has.sum())} catalogue galaxies with a prediction "
                               f"(dashed: median)."})
    ok = np.asarray(np.ma.filled(np.ma.asanyarray(labelled["preprocess_ok"]), False), bool) \
        if "preprocess_ok" in labelled.colnames else np.ones(len(labelled), bool)
    reference = labelled[target][ok]
    both = np.concatenate([_values(predicted["Z_pred"]), _values(reference)])
    both = both[np.isfinite(both)]
    edges = np.linspace(both.min(), both.max(), 31)  # one binning for both distributions
    fig = evaluation.plot_catalogue_distributions(
        predicted, columns=("Z_pred",), reference=reference,
        reference_label=f"labels ({target})", bins=edges)
    extra = f"; {n_training} of them trained the model" if n_training else ""
    figures.append({"name": "fig16_catalogue_vs_labels",
                    "file": save_figure(fig, folder, "fig16_catalogue_vs_labels"),
                    "caption": f"Fig. 16 style: Z_pred of the catalogue galaxies against "
                               f"{target} of the {int(ok.sum())} labelled star-forming galaxies "
                               f"that passed preprocessing{extra} (normalised histograms)."})
    return figures
