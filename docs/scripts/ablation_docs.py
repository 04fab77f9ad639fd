"""Copy one ``gpm-astro ablate`` run into the documentation (docs/ablations.rst).

Usage::

    OMP_NUM_THREADS=1 gpm-astro ablate --quick --out ablation_quick
    python docs/scripts/ablation_docs.py ablation_quick

Writes into ``docs/_static/ablation/``: the study tables (ECSV, every number), small PNG
copies of the figures, and ``tables.rst`` (the tables in reStructuredText, included by
docs/ablations.rst), so that the page's numbers and figures all come from the same run.
"""

import argparse
import shutil
from pathlib import Path

from gpm_astro.ablation.figures import FIGURES
from gpm_astro.ablation.settings import STUDY_NAMES
from gpm_astro.io import read_table

DOCS_STATIC = Path(__file__).resolve().parents[1] / "_static" / "ablation"
MAX_WIDTH = 760

COLUMNS = {
    "architectures": ["name", "n_parameters", "train_seconds", "n", "mu", "sigma", "nmad",
                      "status"],
    "size": ["radius_low", "radius_high", "n", "mu", "sigma", "nmad"],
    "resolution": ["input_size", "n_parameters", "train_seconds", "n", "mu", "sigma", "nmad"],
    "bands": ["bands", "channels", "train_seconds", "n", "mu", "sigma", "nmad"],
    "mzr": ["logm_low", "logm_high", "n", "Z_pred_median", "Z_pred_p16", "Z_pred_p84",
            "Z_true_median", "Z_tremonti", "pred_minus_tremonti"],
}


def _cell(value, name):
    if isinstance(value, float) and value != value:  # NaN: an empty bin, no statistic
        return "—"
    if name in ("mu", "pred_minus_tremonti"):
        return f"{value:+.4f}"
    if isinstance(value, float):
        return f"{value:.1f}" if name == "train_seconds" else (
            f"{value:g}" if name.startswith(("radius", "logm")) else f"{value:.4f}")
    if name == "n_parameters":
        return f"{int(value):,}"
    return str(value)


def rst_table(table, columns):
    """A reStructuredText list-table of some columns (units in the header)."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    header = [f"{c} ({table[c].unit})" if table[c].unit is not None else c for c in columns]
    lines.append("   * - " + "\n     - ".join(header))
    for row in table:
        lines.append("   * - " + "\n     - ".join(_cell(row[c], c) for c in columns))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a gpm-astro ablate output folder")
    args = parser.parse_args()
    run = Path(args.run)
    DOCS_STATIC.mkdir(parents=True, exist_ok=True)
    parts = []
    for name in STUDY_NAMES:
        path = run / f"{name}.ecsv"
        if not path.is_file():
            continue
        shutil.copyfile(path, DOCS_STATIC / path.name)
        table = read_table(path)
        parts.append(f".. _ablation-table-{name}:\n\n**{name}** "
                     f"(``_static/ablation/{path.name}``)\n\n"
                     + rst_table(table, COLUMNS[name]))
    (DOCS_STATIC / "tables.rst").write_text("\n".join(parts))
    from PIL import Image

    for file in FIGURES:
        source = run / "figures" / file
        if source.is_file():
            with Image.open(source) as image:
                if image.width > MAX_WIDTH:
                    height = round(image.height * MAX_WIDTH / image.width)
                    image = image.resize((MAX_WIDTH, height), Image.LANCZOS)
                image.save(DOCS_STATIC / file, optimize=True)
    print(f"wrote {DOCS_STATIC}")


if __name__ == "__main__":
    main()
