"""The five studies of the paper's §4.2-4.6, each returning one table with every number.

Every function takes a `ModelRunner` (which trains and caches the models) and the settings
(`gpm_astro.ablation.settings`), and returns an astropy Table whose ``meta`` records what it
was made from. Statistics are on delta = Z_pred - Z_true over the test split, computed once
on the whole set (paper eq. 3): mu = mean, sigma = standard deviation,
NMAD = 1.4826 x median(abs(delta - median(delta))).
"""

import copy

import numpy as np
from astropy.table import Table

from ..exceptions import GPMAstroError, SchemaError
from ..metrics import binned_statistics, summarize
from ..survey_constants import TREMONTI_MASS_RANGE, tremonti_metallicity

__all__ = ["DISPLAY_NAMES", "REFERENCE_LABEL", "architecture_study", "size_study",
           "resolution_study", "band_study", "mzr_study", "reference_params", "STUDIES"]

REFERENCE_LABEL = "gpm_resnet"
#: how the estimators are named in tables and figures
DISPLAY_NAMES = {"resnet34": "ResNet-34", "resnet50": "ResNet-50", "resnet101": "ResNet-101",
                 "mobilenet_v2": "MobileNetV2", "efficientnet_b0": "EfficientNet-B0",
                 "densenet121": "DenseNet-121", "gpm_resnet": "GPM-ResNet"}
_STAT_UNITS = {"mu": "dex", "sigma": "dex", "nmad": "dex", "median": "dex"}


def reference_params(settings, **config_changes):
    """The reference's constructor parameters with some GPM-ResNet configuration fields changed.

    ``input_size`` is always written out (None: the cutout's own size), so that a study asking
    for the reference's own input gets the same parameters, hence the same cached model.
    """
    params = copy.deepcopy(settings["reference"]["params"])
    config = dict(params["config"])
    config.setdefault("input_size", None)
    config.update(config_changes)
    params["config"] = config
    return params


def _reference(runner, settings, study):
    ref = settings["reference"]
    result = runner.result(REFERENCE_LABEL, ref["estimator"], reference_params(settings))
    if result.get("failed"):
        msg = (f"the {study} study scores the reference {REFERENCE_LABEL}, which failed: "
               f"{result['failed']}")
        raise GPMAstroError(msg)
    return result


def _status(result):
    """``ok``, or ``failed: <error>`` for a model that could not be built, trained or run."""
    return f"failed: {result['failed']}" if result.get("failed") else "ok"


def _stats(result, target):
    """n_test, n, n_flagged, mu, sigma, nmad and status of one model's test predictions (a
    failed model keeps its row: n = 0, NaN statistics, status ``failed: ...``)."""
    table = result["predictions"]
    if table is None:
        nan = float("nan")
        return {"n_test": result["n_test"], "n": 0, "n_flagged": 0, "mu": nan, "sigma": nan,
                "nmad": nan, "status": _status(result)}
    stats = summarize(table["Z_pred"], table[target])
    flags = np.asarray(table["Z_pred_flag"]).astype(str)
    return {"n_test": len(table), "n": stats["n"], "n_flagged": int(np.sum(flags != "ok")),
            "mu": stats["mu"], "sigma": stats["sigma"], "nmad": stats["nmad"],
            "status": _status(result)}


def _finish(rows, names, *, study, settings, runner, descriptions=None):
    table = Table(rows=[[row[n] for n in names] for row in rows], names=names)
    for name, unit in _STAT_UNITS.items():
        if name in table.colnames:
            table[name].unit = unit
            table[name].format = ".4f"
    for name, text in (descriptions or {}).items():
        table[name].description = text
    table.meta.update(study=study, target=settings["target"], sample=str(runner.run_dir),
                      n_train=int(len(runner.split("train"))),
                      n_test=int(len(runner.split("test"))),
                      reference=copy.deepcopy(settings["reference"]))
    return table


def architecture_study(runner, settings):
    """Table 1 (§4.2): each architecture and GPM-ResNet on the same split.

    Returns
    -------
    astropy.table.Table
        One row per model (the reference last): ``model``, ``name``, ``estimator``,
        ``n_parameters``, ``train_seconds``, ``n_train``, ``n_test``, ``n``, ``n_flagged``,
        ``mu``, ``sigma``, ``nmad``, ``status`` (``ok`` or ``failed: <error>``, see `_stats`).
    """
    arch = settings["architectures"]
    runs = [(name, name, arch["params"]) for name in arch["names"]]
    runs.append((REFERENCE_LABEL, settings["reference"]["estimator"],
                 reference_params(settings)))
    rows = []
    for label, estimator, params in runs:
        result = runner.result(label, estimator, params)
        rows.append({"model": label, "name": DISPLAY_NAMES.get(label, label),
                     "estimator": estimator, "n_parameters": result["n_parameters"],
                     "train_seconds": round(float(result["train_seconds"]), 2),
                     "n_train": result["n_train"], **_stats(result, settings["target"])})
    names = ["model", "name", "estimator", "n_parameters", "train_seconds", "n_train",
             "n_test", "n", "n_flagged", "mu", "sigma", "nmad", "status"]
    table = _finish(rows, names, study="architectures", settings=settings, runner=runner,
                    descriptions={"n_parameters": "trainable parameters of the network",
                                  "train_seconds": "wall time of fit (training and "
                                                   "validation), seconds"})
    table["train_seconds"].unit = "s"
    table.meta["architecture_params"] = copy.deepcopy(arch["params"])
    return table


def size_study(runner, settings):
    """Fig. 11a (§4.3): test errors in bins of enclosing-circle radius.

    By default the reference model is scored in each bin. With ``size.retrain`` (the paper's
    wording: "training the GPM-ResNet model on the image data for each interval") one model
    is trained per bin, on the training and validation galaxies of that bin only.

    Returns
    -------
    astropy.table.Table
        One row per bin: ``radius_low``, ``radius_high`` (arcsec), ``n``, ``mu``, ``sigma``,
        ``nmad``, ``median`` (with ``retrain`` also ``model``, ``n_train`` and ``status``; a
        bin with fewer than 2 training or validation galaxies gets no model). Empty bins have n = 0
        and NaN statistics.
    """
    if settings["size"].get("retrain"):
        return _size_study_retrained(runner, settings)
    result = _reference(runner, settings, "size")
    table = result["predictions"]
    column = settings["size"]["column"]
    if column not in table.colnames:
        msg = (f"the size study needs the test set's {column!r} column (the preprocessing's "
               f"enclosing-circle radius); the predictions hold {table.colnames}")
        raise SchemaError(msg)
    edges = np.asarray(settings["size"]["edges"], dtype=float)
    binned = binned_statistics(table["Z_pred"], table[settings["target"]], table[column],
                               edges, by_name=column)
    binned.rename_columns(["bin_low", "bin_high"], ["radius_low", "radius_high"])
    names = ["radius_low", "radius_high", "n", "mu", "sigma", "nmad", "median"]
    out = _finish([dict(zip(names, row)) for row in binned[names]], names, study="size",
                  settings=settings, runner=runner)
    for name in ("radius_low", "radius_high"):
        out[name].unit = "arcsec"
    radius = np.ma.filled(np.ma.asanyarray(table[column]).astype(float), np.nan)
    out.meta.update(radius_column=column, n_outside=int(np.sum(
        np.isfinite(radius) & ((radius < edges[0]) | (radius > edges[-1])))),
        n_no_radius=int(np.sum(~np.isfinite(radius))), retrain=False)
    return out


def _size_study_retrained(runner, settings):
    """The size study with one model per radius bin (see `size_study`)."""
    column = settings["size"]["column"]
    edges = [float(e) for e in settings["size"]["edges"]]
    if column not in runner.split("test").colnames:
        msg = f"the size study needs the sample's {column!r} column (enclosing-circle radius)"
        raise SchemaError(msg)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        within = (column, low, high, high == edges[-1])
        counts = {name: len(runner.split(name, within=within))
                  for name in ("train", "validation", "test")}
        row = {"radius_low": low, "radius_high": high, "model": "", "n_train": counts["train"],
               "n": 0, "mu": np.nan, "sigma": np.nan, "nmad": np.nan, "median": np.nan,
               "status": "no model: too few galaxies"}
        if min(counts["train"], counts["validation"]) >= 2 and counts["test"]:
            label = f"{REFERENCE_LABEL}_radius{low:g}-{high:g}"
            result = runner.result(label, settings["reference"]["estimator"],
                                   reference_params(settings), within=within)
            row.update(model=label, status=_status(result))
            if not result.get("failed"):
                predictions = result["predictions"]
                stats = summarize(predictions["Z_pred"], predictions[settings["target"]])
                row.update(n=stats["n"], mu=stats["mu"], sigma=stats["sigma"],
                           nmad=stats["nmad"], median=stats["median"])
        rows.append(row)
    names = ["radius_low", "radius_high", "model", "n_train", "n", "mu", "sigma", "nmad",
             "median", "status"]
    out = _finish(rows, names, study="size", settings=settings, runner=runner)
    for name in ("radius_low", "radius_high"):
        out[name].unit = "arcsec"
    out.meta.update(radius_column=column, retrain=True)
    return out


def resolution_study(runner, settings):
    """Fig. 11b (§4.4): GPM-ResNet retrained on images resized (bilinear) to each side.

    Returns
    -------
    astropy.table.Table
        One row per side: ``input_size`` (pixels), ``model``, ``n_parameters``,
        ``train_seconds``, ``n``, ``mu``, ``sigma``, ``nmad``, ``status``.
    """
    full = runner.cutout_size
    rows = []
    for size in settings["resolution"]["sizes"]:
        params = reference_params(settings, input_size=None if size == full else int(size))
        label = REFERENCE_LABEL if params == reference_params(settings) else \
            f"{REFERENCE_LABEL}_size{size}"
        result = runner.result(label, settings["reference"]["estimator"], params)
        rows.append({"input_size": int(size), "model": label,
                     "n_parameters": result["n_parameters"],
                     "train_seconds": round(float(result["train_seconds"]), 2),
                     **_stats(result, settings["target"])})
    names = ["input_size", "model", "n_parameters", "train_seconds", "n_test", "n",
             "n_flagged", "mu", "sigma", "nmad", "status"]
    table = _finish(rows, names, study="resolution", settings=settings, runner=runner,
                    descriptions={"input_size": "side of the network input, pixels "
                                                f"(resized from {full})"})
    table["train_seconds"].unit = "s"
    table.meta["cutout_size"] = full
    return table


def band_study(runner, settings):
    """Fig. 11c (§4.5): GPM-ResNet retrained on one, two or three bands.

    Returns
    -------
    astropy.table.Table
        One row per band set: ``bands``, ``channels`` (what the blue, green and red channels
        hold), ``model``, ``train_seconds``, ``n``, ``mu``, ``sigma``, ``nmad``, ``status``.
    """
    from .data import COMPOSITE_CHANNELS, band_composite

    table_bands = str(runner.split("test").meta.get("bands", "grz"))
    rows = []
    for bands in settings["bands"]["sets"]:
        if bands == table_bands:  # the reference itself
            label, params, composite = REFERENCE_LABEL, reference_params(settings), None
            channels = list(bands)
        else:
            label = f"{REFERENCE_LABEL}_bands_{bands}"
            params = reference_params(settings, bands=COMPOSITE_CHANNELS)
            composite = bands
            channels = band_composite(runner.split("test")[:0], bands).meta["band_composite"]
        result = runner.result(label, settings["reference"]["estimator"], params,
                               bands=composite)
        rows.append({"bands": bands, "channels": " | ".join(channels), "model": label,
                     "train_seconds": round(float(result["train_seconds"]), 2),
                     **_stats(result, settings["target"])})
    names = ["bands", "channels", "model", "train_seconds", "n_test", "n", "n_flagged", "mu",
             "sigma", "nmad", "status"]
    table = _finish(rows, names, study="bands", settings=settings, runner=runner,
                    descriptions={"channels": "blue | green | red channel of the input "
                                              "(fluxes)"})
    table["train_seconds"].unit = "s"
    return table


def _percentiles(values):
    if values.size == 0:
        return (np.nan,) * 4
    p16, p50, p84 = np.percentile(values, [16, 50, 84])
    return float(p50), float(p16), float(p84), float(np.std(values))


def mzr_study(runner, settings):
    """Fig. 13 (§4.6.2): the mass-metallicity relation recovered from Z_pred.

    In bins of the true log stellar mass: the median, 16th and 84th percentiles (the +-1 sigma
    range) and standard deviation of Z_pred and of the true Z, Tremonti et al.'s eq. 5 at the
    bin's median mass, and the offsets of the two medians from it and from each other.

    Returns
    -------
    astropy.table.Table
        One row per mass bin (dex). ``meta['summary']``: over the galaxies inside Tremonti's
        fitted range, the median and scatter of Z_pred - eq. 5 and of Z_true - eq. 5.
    """
    result = _reference(runner, settings, "mzr")
    table = result["predictions"]
    mass_column = settings["mzr"]["mass_column"]
    target = settings["target"]
    if mass_column not in table.colnames:
        msg = (f"the mass-metallicity study needs the test set's {mass_column!r} column; the "
               f"predictions hold {table.colnames}")
        raise SchemaError(msg)

    def values(name):
        return np.ma.filled(np.ma.asanyarray(table[name]).astype(float), np.nan)

    mass, pred, true = values(mass_column), values("Z_pred"), values(target)
    good = np.isfinite(mass) & np.isfinite(pred) & np.isfinite(true) & (mass > -99) & \
        (true > -99)
    mass, pred, true = mass[good], pred[good], true[good]
    edges = np.asarray(settings["mzr"]["edges"], dtype=float)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (mass >= low) & ((mass < high) | ((high == edges[-1]) & (mass == high)))
        median_mass = float(np.median(mass[inside])) if inside.any() else 0.5 * (low + high)
        p_med, p16, p84, p_std = _percentiles(pred[inside])
        t_med, t16, t84, t_std = _percentiles(true[inside])
        relation = float(tremonti_metallicity(median_mass))
        rows.append({"logm_low": low, "logm_high": high, "logm_median": median_mass,
                     "n": int(inside.sum()), "Z_pred_median": p_med, "Z_pred_p16": p16,
                     "Z_pred_p84": p84, "Z_pred_std": p_std, "Z_true_median": t_med,
                     "Z_true_p16": t16, "Z_true_p84": t84, "Z_true_std": t_std,
                     "Z_tremonti": relation, "pred_minus_tremonti": p_med - relation,
                     "true_minus_tremonti": t_med - relation, "pred_minus_true": p_med - t_med})
    names = list(rows[0])
    out = _finish(rows, names, study="mzr", settings=settings, runner=runner)
    for name in names[4:]:
        out[name].unit = "dex"
        out[name].format = ".4f"
    for name in names[:3]:
        out[name].unit = "dex(solMass)"
        out[name].format = ".3f"
    out["logm_median"].description = "median true log10(M*/Msun) of the bin"
    out["Z_tremonti"].description = "Tremonti et al. (2004) eq. 5 at logm_median"
    in_range = (mass > TREMONTI_MASS_RANGE[0]) & (mass < TREMONTI_MASS_RANGE[1])
    summary = {"mass_column": mass_column, "n_in_range": int(in_range.sum())}
    for name, z in (("pred", pred), ("true", true)):
        offset = z[in_range] - tremonti_metallicity(mass[in_range])
        summary[f"{name}_minus_tremonti_median"] = float(np.median(offset)) if offset.size \
            else float("nan")
        summary[f"{name}_minus_tremonti_std"] = float(np.std(offset)) if offset.size \
            else float("nan")
    out.meta["summary"] = summary
    return out


#: study name -> function
STUDIES = {"architectures": architecture_study, "size": size_study,
           "resolution": resolution_study, "bands": band_study, "mzr": mzr_study}
