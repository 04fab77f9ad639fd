"""The ablation studies as a section of the HTML report.

`ablation_section(folder)` turns an ablation output folder (its study tables and figures) into
an HTML fragment; `gpm_astro.report.write_report` adds it to a run's report when the run
folder holds an ``ablation/`` folder, and `gpm_astro.ablation.run_ablations` writes it as a
page of its own (``report.html``).
"""

import html
from pathlib import Path

from .settings import STUDY_NAMES

__all__ = ["ablation_section", "STUDY_TITLES"]

STUDY_TITLES = {
    "architectures": "Architectures on the same split (paper Table 1, §4.2)",
    "size": "Galaxy size: test errors by enclosing-circle radius (Fig. 11a, §4.3)",
    "resolution": "Image resolution (Fig. 11b, §4.4)",
    "bands": "Wavelength bands (Fig. 11c, §4.5)",
    "mzr": "Mass-metallicity relation recovered from Z_pred (Fig. 13, §4.6.2)",
}

_FORMATS = {"mu": ".4f", "sigma": ".4f", "nmad": ".4f", "median": ".4f",
            "train_seconds": ".1f", "radius_low": "g", "radius_high": "g"}


def ablation_section(folder, *, max_image_width=None):
    """HTML of the ablation studies found in ``folder`` (empty string when there are none).

    Parameters
    ----------
    folder : path-like
        An ablation output folder (``<study>.ecsv`` tables, ``figures/``).
    max_image_width : int, optional
        Shrink wider figures to this many pixels.

    Returns
    -------
    str
    """
    from ..io import read_table
    from ..report import image_to_data_uri, table_to_html
    from .figures import FIGURES

    folder = Path(folder)
    present = [name for name in STUDY_NAMES if (folder / f"{name}.ecsv").is_file()]
    if not present:
        return ""
    parts = ["<h2>Ablation studies (paper §4.2-4.6)</h2>",
             "<p>Each model is trained on the same training and validation split and scored on "
             "the same test galaxies; &mu;, &sigma; and NMAD of Z<sub>pred</sub> &minus; "
             "Z<sub>true</sub> in dex. Tables: <code>" + html.escape(str(folder)) +
             "/&lt;study&gt;.ecsv</code>.</p>"]
    for name in present:
        table = read_table(folder / f"{name}.ecsv")
        parts.append(f"<h3>{html.escape(STUDY_TITLES[name])}</h3>")
        shown = table.copy()
        if name == "mzr":
            keep = ["logm_low", "logm_high", "n", "Z_pred_median", "Z_pred_p16", "Z_pred_p84",
                    "Z_true_median", "Z_tremonti", "pred_minus_tremonti", "pred_minus_true"]
            shown = shown[keep]
            summary = table.meta.get("summary", {})
            if summary:
                parts.append(
                    f"<p>Inside Tremonti's range ({summary.get('n_in_range')} galaxies, mass "
                    f"column {html.escape(str(summary.get('mass_column')))}): median "
                    f"Z<sub>pred</sub> &minus; eq. 5 = "
                    f"{summary.get('pred_minus_tremonti_median', float('nan')):+.4f} dex "
                    f"(scatter {summary.get('pred_minus_tremonti_std', float('nan')):.4f}); "
                    f"labels: {summary.get('true_minus_tremonti_median', float('nan')):+.4f} "
                    f"(scatter {summary.get('true_minus_tremonti_std', float('nan')):.4f}).</p>")
        if name == "size" and (table.meta.get("n_outside") or table.meta.get("n_no_radius")):
            parts.append(
                f"<p>Not in any bin: {table.meta.get('n_outside', 0)} test galaxies outside "
                f"the edges, {table.meta.get('n_no_radius', 0)} without a radius.</p>")
        parts.append(table_to_html(shown, formats={k: v for k, v in _FORMATS.items()
                                                   if k in shown.colnames}))
    for file, (needs, caption) in FIGURES.items():
        path = folder / "figures" / file
        if path.is_file() and any(n in present for n in needs):
            uri = image_to_data_uri(path, max_width=max_image_width)
            parts.append(f"<figure><img src='{uri}' alt='{html.escape(file)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "\n".join(parts)
