"""Write the tutorial's numbers, tables and figures from ONE recorded run of ``make demo``.

Usage::

    /usr/bin/time -v make demo 2> time.log      # on a fresh clone; keep the log
    python docs/scripts/make_tutorial_numbers.py --run demo_output --time-log time.log \\
        --machine "2-core machine shared with ~8 other jobs (load average ~10)"

Reads only that run: its metrics table, stage timings, stage outputs and figures, and the
``/usr/bin/time -v`` log of the ``make demo`` that made it (wall time, peak memory). Writes

- ``docs/demo_results.inc``: the "Measured: the default demo" section of docs/tutorial.rst
  (included there): time, disk, counts, the stage timings and metrics tables, the figures;
- ``docs/_static/demo/``: small copies of every figure of the run, its metrics table and a
  small copy of its report (stale files of an earlier run are removed);
- the block between ``<!-- demo-measured -->`` markers in README.md, and ``DEMO_MEASURED`` in
  gpm_astro/demo.py (quoted by ``gpm-astro demo --help``).

Nothing is typed by hand, so prose, tables and figures cannot come from different runs.
"""

import argparse
import datetime
import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np

from gpm_astro.io import read_table
from gpm_astro.report import WIDE_ASPECT, _png_aspect, _shrunk_png, write_report

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = ROOT / "docs" / "demo_results.inc"
STATIC = ROOT / "docs" / "_static" / "demo"
README = ROOT / "README.md"
#: The paper's test-set sigma (dex), quoted beside the run's.
PAPER_SIGMA = {"gpm_resnet": 0.1181, "colour_polynomial_2": 0.1562, "mass": 0.3583}
#: Width (px) of the small figure copies kept in the docs (wide, multi-panel figures: more).
SMALL_WIDTH = 560
SMALL_WIDTH_WIDE = 900


def _time_log(path):
    """Wall seconds and peak resident memory (GB) from a ``/usr/bin/time -v`` log."""
    text = Path(path).read_text(errors="replace")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if wall is None:
        raise SystemExit(f"{path}: no 'Elapsed (wall clock) time' line; use /usr/bin/time -v")
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = 60 * seconds + float(part)
    return seconds, (int(rss.group(1)) / 1e6 if rss else None)


def _minutes(seconds):
    return f"{int(seconds // 60)} min {int(round(seconds % 60)):02d} s"


def _disk_mb(folder):
    done = subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.split()[0]) / 1e6


def _list_table(header, rows):
    """An RST list-table; empty or dash cells become "n/a" (a lone "-" renders as a bullet)."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        for i, cell in enumerate(row):
            text = str(cell).strip()
            text = "n/a" if text in ("", "-", "--", "nan") else text
            lines.append(f"   {'*' if i == 0 else ' '} - {text}")
    return "\n".join(lines)


def _counts(run):
    labelled = read_table(run / "preprocess/labelled.fits")
    sample = read_table(run / "sample/sample.fits")
    catalogue = read_table(run / "catalogue/catalogue.ecsv")
    split = np.asarray(sample["split"]).astype(str)
    ok = np.asarray(catalogue["Z_pred_flag"]).astype(str) == "ok"
    return {"labelled": len(labelled),
            "passed": int(np.sum(np.asarray(labelled["preprocess_ok"], bool))),
            "sample": len(sample), "train": int(np.sum(split == "train")),
            "validation": int(np.sum(split == "validation")),
            "test": int(np.sum(split == "test")), "catalogue": len(catalogue),
            "catalogue_ok": int(ok.sum())}


def _figures(run):
    figures = []
    for folder in ("evaluate", "catalogue"):
        listing = run / folder / "figures.json"
        if listing.exists():
            for entry in json.loads(listing.read_text()):
                figures.append(dict(entry, path=run / folder / entry["file"]))
    return figures


def _copy_figures(figures):
    """Small copies in docs/_static/demo/; returns {name: width in px}."""
    from PIL import Image

    STATIC.mkdir(parents=True, exist_ok=True)
    keep = {"metrics.ecsv", "report_small.html"}
    widths = {}
    for figure in figures:
        target = STATIC / f"{figure['name']}.png"
        data = Path(figure["path"]).read_bytes()
        width = SMALL_WIDTH_WIDE if _png_aspect(data) >= WIDE_ASPECT else SMALL_WIDTH
        target.write_bytes(_shrunk_png(data, width))
        widths[figure["name"]] = Image.open(target).width
        keep.add(target.name)
    for stale in STATIC.iterdir():
        if stale.name not in keep:
            stale.unlink()
    return widths


def _comparison(by_name):
    """Sentences comparing the estimators, computed from the run's metrics."""
    sigma = {name: float(row["sigma"]) for name, row in by_name.items()}
    sentences = []
    if "gpm_resnet" in sigma and "colour_polynomial_2" in sigma:
        best_poly = min(sigma.get("colour_polynomial_2", np.inf),
                        sigma.get("colour_polynomial_3", np.inf))
        change = 100 * (sigma["gpm_resnet"] / best_poly - 1)
        word = "below" if change < 0 else "above"
        sentences.append(f"GPM-ResNet's scatter is {abs(change):.0f} % {word} the better "
                         f"colour polynomial's (the paper: {PAPER_SIGMA['gpm_resnet']} against "
                         f"{PAPER_SIGMA['colour_polynomial_2']} dex)")
    if "gpm_resnet" in sigma and "noise_floor" in sigma:
        sentences.append(f"and {sigma['gpm_resnet'] / sigma['noise_floor']:.2f} times the "
                         f"mock's noise floor, the scatter of the best prediction its images "
                         f"allow.")
    mass = next((row for name, row in by_name.items() if name.endswith(":mass")), None)
    if mass is not None:
        sentences.append(f"The image mass model reaches {float(mass['sigma']):.2f} dex in "
                         f"log M* (the paper: {PAPER_SIGMA['mass']}).")
    return " ".join(sentences)


def fragment(run, *, wall, peak_gb, disk_mb, peak_disk_mb, machine, widths, figures):
    """The RST text of the measured section."""
    config = json.loads((run / "config.json").read_text())
    state = json.loads((run / "pipeline_state.json").read_text())
    timings = state.get("_timings", {})
    metrics = read_table(run / "evaluate/metrics.ecsv")
    by_name = {str(row["estimator"]): row for row in metrics}
    counts = _counts(run)
    params = config["source"]["params"]
    epochs = config["estimators"]["gpm_resnet"]["params"].get("epochs")
    date = datetime.date.fromtimestamp((run / "report.html").stat().st_mtime).isoformat()
    lines = [".. This file is written by docs/scripts/make_tutorial_numbers.py from one run; "
             "do not edit.", "", ".. _demo-measured:", "",
             "Measured: the default demo", "--------------------------", ""]
    memory = f"; peak memory {peak_gb:.1f} GB" if peak_gb else ""
    peak = f" (at most {peak_disk_mb / 1000:.1f} GB while it ran)" if peak_disk_mb else ""
    lines.append(
        f"One run of ``make demo`` on a fresh clone ({date}; {params['n_galaxies']:,} mock "
        f"galaxies, seed {params['seed']}; {machine}; no GPU), including the creation of "
        f"``.venv``: **{_minutes(wall)}** wall time ({sum(timings.values()):.0f} s of it "
        f"inside the pipeline{memory}). It left "
        f"**{disk_mb:.0f} MB** in ``demo_output/``{peak}; ``--keep-cutouts`` keeps the cutout "
        f"stores as well. Everything on this page (numbers, tables, figures) comes from that "
        f"run. {counts['labelled']:,} labelled galaxies reached preprocessing and "
        f"{counts['passed']:,} passed; the uniform-in-Z draw took {counts['sample']:,}: "
        f"{counts['train']:,} train, {counts['validation']:,} validation, {counts['test']:,} "
        f"test. The catalogue holds {counts['catalogue']:,} unlabelled EXP galaxies, "
        f"{counts['catalogue_ok']:,} with a Z_pred. The lite network trained for {epochs} "
        f"epochs.")
    lines += ["", "Time per stage (seconds):", ""]
    lines.append(_list_table(["stage", "seconds"],
                             [[f"``{k}``", f"{v:.0f}"] for k, v in timings.items()]))
    lines += ["", "Metrics on the test set (``evaluate/metrics.ecsv``; sigma, mu and NMAD in "
              "dex; coverage is the fraction of galaxies with \\|Z_pred - Z_true\\| < "
              "Z_pred_err):", ""]
    rows = []
    for row in metrics:
        coverage = float(row["coverage"])
        rows.append([row["method"], row["n"], f"{float(row['mu']):+.4f}",
                     f"{float(row['sigma']):.4f}", f"{float(row['nmad']):.4f}",
                     f"{coverage:.3f}" if np.isfinite(coverage) else "n/a"])
    lines.append(_list_table(["estimator", "n", "mu", "sigma", "NMAD", "coverage"], rows))
    lines += ["", _comparison(by_name), "",
              "The figures of that run (small copies; every one is also in the run's "
              "``report.html``, of which :download:`a small copy <_static/demo/"
              "report_small.html>` is kept here):", ""]
    for figure in figures:
        lines += [f".. figure:: _static/demo/{figure['name']}.png",
                  f"   :width: {widths[figure['name']]}", "",
                  f"   {figure['caption']}", ""]
    return "\n".join(lines).rstrip() + "\n"


def readme_block(*, wall, disk_mb, peak_disk_mb, machine, test_seconds, venv):
    test = (f"; `make test` then took {_minutes(test_seconds)} (its `.venv` already made)"
            if test_seconds else "")
    return (f"Measured on a fresh clone ({machine}; no GPU): `make demo` took "
            f"{_minutes(wall)} including the set-up of `.venv`{test}. The demo leaves "
            f"{disk_mb:.0f} MB in `demo_output/` (at most {peak_disk_mb / 1000:.1f} GB "
            f"while it runs, as the raw cutouts are removed once cleaned; "
            f"`make demo DEMO_ARGS=--keep-cutouts` keeps them); `.venv` takes another "
            f"~{_disk_mb(venv) / 1000:.1f} GB. Details: docs/tutorial.rst.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="output folder of the recorded demo")
    parser.add_argument("--time-log", required=True,
                        help="the /usr/bin/time -v output of that `make demo`")
    parser.add_argument("--machine", required=True,
                        help="what the run ran on, e.g. '2-core machine shared with 8 jobs'")
    parser.add_argument("--peak-disk-mb", type=float, default=None,
                        help="largest size of the output folder while it ran (MB)")
    parser.add_argument("--test-seconds", type=float, default=None,
                        help="wall time of `make test` run after that `make demo` in the same "
                             "clone, for the README")
    args = parser.parse_args(argv)
    run = Path(args.run)
    wall, peak_gb = _time_log(args.time_log)
    disk_mb = _disk_mb(run)
    figures = _figures(run)
    widths = _copy_figures(figures)
    shutil.copyfile(run / "evaluate/metrics.ecsv", STATIC / "metrics.ecsv")
    write_report(run, STATIC / "report_small.html", max_image_width=400)
    FRAGMENT.write_text(fragment(run, wall=wall, peak_gb=peak_gb, disk_mb=disk_mb,
                                 peak_disk_mb=args.peak_disk_mb, machine=args.machine,
                                 widths=widths, figures=figures))
    text = README.read_text()
    block = readme_block(wall=wall, disk_mb=disk_mb, peak_disk_mb=args.peak_disk_mb or disk_mb,
                         machine=args.machine, test_seconds=args.test_seconds,
                         venv=next(p for p in (run.resolve().parent / ".venv", ROOT / ".venv")
                                   if p.is_dir()))
    text, n = re.subn(r"(<!-- demo-measured -->\n).*?(\n<!-- /demo-measured -->)",
                      lambda m: m.group(1) + block + m.group(2), text, flags=re.S)
    if n != 1:
        raise SystemExit("README.md needs one <!-- demo-measured --> ... "
                         "<!-- /demo-measured --> block")
    README.write_text(text)
    demo_py = ROOT / "gpm_astro" / "demo.py"
    measured = (f"{_minutes(wall)} for `make demo` on a fresh clone, set-up included, "
                f"{disk_mb:.0f} MB of output ({args.machine})")
    literal = "\n".join(f"    {json.dumps(piece)}" for piece in
                        textwrap.wrap(measured, 90, drop_whitespace=False))
    source, n = re.subn(r'^DEMO_MEASURED = (?:".*?"|\(\n.*?\n\))$',
                        lambda _: f"DEMO_MEASURED = (\n{literal}\n)", demo_py.read_text(),
                        flags=re.M | re.S)
    if n != 1:
        raise SystemExit("gpm_astro/demo.py needs one DEMO_MEASURED = ... line")
    demo_py.write_text(source)
    print(f"wrote {FRAGMENT}, {len(figures)} figures in {STATIC}, README block:\n{block}")


if __name__ == "__main__":
    main()
