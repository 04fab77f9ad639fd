"""A one-page, self-contained HTML report of a pipeline run.

Everything on the page is read from the run's output folder: the metrics table, the figures
(embedded as base64 PNG, so the file can be mailed or archived alone), the counts of every
stage, the first rows of the catalogue, the stage timings and the configuration.
"""

import base64
import datetime
import html
import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from .tables import package_version

__all__ = ["write_report", "render_report", "table_to_html", "image_to_data_uri"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1500px;
margin:1.5em auto;padding:0 1.2em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #345;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:1.6em;color:#234}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#eef2f6}td.text,th.text{text-align:left}
.scroll{overflow-x:auto;max-width:100%}
.columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,440px),1fr));
gap:0 2em;align-items:start}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,400px),1fr));
gap:1.2em;align-items:start}
.figures figure.wide{grid-column:1/-1}
figure{margin:0}figure img{width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.82em;color:#444;margin-top:.3em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.8em;white-space:pre-wrap;
word-break:break-word}
details summary{cursor:pointer;font-weight:bold;color:#234;margin:1em 0 .4em}
.summary{background:#f3f8f1;border-left:4px solid #5a8;padding:.6em 1em}
.meta{color:#666;font-size:.85em}
"""

#: Catalogue columns shown as plain integers (identifiers: no thousands separators).
ID_COLUMNS = ("release", "brickid", "objid", "specobjid")
#: Figures at least this much wider than tall take a whole row of the figure grid.
WIDE_ASPECT = 1.8


def image_to_data_uri(path, *, max_width=None):
    """Return a ``data:image/png;base64,...`` URI holding the PNG file at ``path``.

    ``max_width`` (pixels) shrinks wider images first, for a small copy of a report.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
    >>> _ = p.write_bytes(b"\\x89PNG\\r\\n")
    >>> image_to_data_uri(p)
    'data:image/png;base64,iVBORw0K'
    """
    data = Path(path).read_bytes()
    if max_width is not None:
        data = _shrunk_png(data, max_width)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _shrunk_png(data, max_width):
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data))
    if image.width <= max_width:
        return data
    height = round(image.height * max_width / image.width)
    small = image.convert("RGB").resize((max_width, height), Image.LANCZOS)
    small = small.quantize(colors=64)  # palette PNG: a fraction of the size
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _format(value, fmt=None):
    if isinstance(value, np.ma.core.MaskedConstant) or value is np.ma.masked:
        return "&mdash;"
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode(errors="replace")
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "&mdash;"
        if fmt:
            return format(float(value), fmt.lstrip("{").rstrip("}").lstrip(":"))
        return f"{float(value):.4g}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if fmt:
            return format(int(value), fmt.lstrip("{").rstrip("}").lstrip(":"))
        return f"{int(value):,}" if abs(int(value)) >= 10000 else str(int(value))
    return html.escape(str(value))


def table_to_html(table, *, max_rows=None, formats=None):
    """Render an astropy Table as an HTML ``<table>`` (units in the header, masked as a dash).

    Parameters
    ----------
    table : astropy.table.Table
        The table.
    max_rows : int, optional
        Show only the first rows.
    formats : dict, optional
        Column name -> format spec (e.g. ``".4f"``); default the column's own ``format``.

    Returns
    -------
    str
        The HTML fragment.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from gpm_astro.report import table_to_html
    >>> html = table_to_html(Table({"n": [1], "name": ["a<b"]}))
    >>> html.startswith("<table><tr><th>n</th>"), "a&lt;b" in html
    (True, True)
    """
    formats = formats or {}
    rows = table if max_rows is None else table[:max_rows]
    text_columns = {name for name in table.colnames if table[name].dtype.kind in "USOb"}
    head = []
    for name in table.colnames:
        unit = table[name].unit
        label = html.escape(name) + (f" [{html.escape(str(unit))}]" if unit else "")
        cls = ' class="text"' if name in text_columns else ""
        head.append(f"<th{cls}>{label}</th>")
    body = []
    for row in rows:
        cells = []
        for name in table.colnames:
            fmt = formats.get(name) or table[name].format
            cls = ' class="text"' if name in text_columns else ""
            cells.append(f"<td{cls}>{_format(row[name], fmt)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return "<table><tr>" + "".join(head) + "</tr>" + "".join(body) + "</table>"


def _dict_table(pairs, headers):
    head = "".join(f'<th class="text">{html.escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(
        (f'<td class="text">{_format(v)}</td>' if i == 0 else f"<td>{_format(v)}</td>")
        for i, v in enumerate(row)) + "</tr>" for row in pairs)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(*, title, metrics=None, figures=(), counts=(), catalogue=None,
                  n_catalogue=None, timings=None, config=None, summary=None, notes=(),
                  max_image_width=None, sections=()):
    """Assemble the report page from its parts (everything already computed).

    Parameters
    ----------
    title : str
        Page title.
    metrics : astropy.table.Table, optional
        One row per estimator (and the noise floor).
    figures : sequence of dict
        Each ``{"caption": str, "path": PNG path}``; embedded as base64.
    counts : sequence of (str, int)
        The galaxy counts through the stages.
    catalogue : astropy.table.Table, optional
        First rows of the catalogue.
    n_catalogue : int, optional
        Total number of catalogue rows.
    timings : dict, optional
        Stage name -> seconds.
    config : dict, optional
        The run's configuration, shown as JSON.
    summary : str, optional
        A sentence or two of HTML put at the top.
    notes : sequence of str
        Extra paragraphs (plain text).
    max_image_width : int, optional
        Shrink wider figures to this many pixels (a small copy of the report).
    sections : sequence of str
        HTML fragments placed after the catalogue (e.g. the ablation studies,
        `gpm_astro.ablation.report_section.ablation_section`).

    Returns
    -------
    str
        The complete HTML document.
    """
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>gpm_astro {html.escape(package_version())} &middot; written "
             f"{now}" + (f" &middot; total stage time {sum(timings.values()):.0f} s"
                         if timings else "") + "</p>"]
    if summary:
        parts.append(f"<div class='summary'>{summary}</div>")
    if metrics is not None:
        parts.append("<section>")
        parts.append("<h2>Accuracy on the test set</h2>")
        parts.append("<p>On &delta; = Z<sub>pred</sub> &minus; Z<sub>true</sub>: &mu; = mean, "
                     "&sigma; = standard deviation, NMAD = 1.4826 &times; median(|&delta; "
                     "&minus; median(&delta;)|), all computed once on the whole test set "
                     "(paper eq. 3). Coverage: fraction of galaxies with |&delta;| &lt; "
                     "Z<sub>pred_err</sub> (0.683 for calibrated 1&sigma; errors).</p>")
        parts.append(f"<div class='scroll'>{table_to_html(metrics)}</div></section>")
    if figures:
        parts.append("<h2>Figures</h2><div class='figures'>")
        for figure in figures:
            data = Path(figure["path"]).read_bytes()
            css = " class='wide'" if _png_aspect(data) >= WIDE_ASPECT else ""
            uri = image_to_data_uri(figure["path"], max_width=max_image_width)
            caption = html.escape(figure.get("caption", ""))
            parts.append(f"<figure{css}><img src='{uri}' "
                         f"alt='{html.escape(figure.get('name', ''))}'>"
                         f"<figcaption>{caption}</figcaption></figure>")
        parts.append("</div>")
    if catalogue is not None:
        total = n_catalogue if n_catalogue is not None else len(catalogue)
        parts.append(f"<h2>Catalogue ({total:,} galaxies; {len(catalogue)} shown)</h2>")
        parts.append("<p>Columns of the paper's Table 2 plus the 1&sigma; error and the flags; "
                     "galaxies with a Z<sub>pred</sub> first, then a few of those without one "
                     "(Z_pred_flag says why). The full table, in catalogue order, is in "
                     "<code>catalogue/catalogue.fits</code> and "
                     "<code>catalogue/catalogue.ecsv</code>.</p>")
        formats = {"ra": ".5f", "dec": ".5f", "z_phot_median": ".3f", "mag_r": ".2f",
                   "Z_pred": ".3f", "Z_pred_err": ".3f"}
        formats.update({name: "d" for name in ID_COLUMNS})
        parts.append(f"<div class='scroll'>{table_to_html(catalogue, formats=formats)}</div>")
    parts.extend(section for section in sections if section)
    for note in notes:
        parts.append(f"<p>{html.escape(note)}</p>")
    if counts or timings or config is not None:
        parts.append("<div class='columns'>")
    if counts:
        parts.append("<section><h2>Galaxies through the stages</h2>")
        parts.append(f"<div class='scroll'>{_dict_table(counts, ('stage', 'galaxies'))}</div>"
                     "</section>")
    if timings:
        parts.append("<section><h2>Stage timings</h2>")
        parts.append(_dict_table([(k, f"{v:.1f} s") for k, v in timings.items()],
                                 ("stage", "time")) + "</section>")
    if config is not None:
        parts.append("<section><details><summary>Configuration of this run</summary><pre>"
                     + html.escape(json.dumps(config, indent=2, default=str))
                     + "</pre></details></section>")
    if counts or timings or config is not None:
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _png_aspect(data):
    """Width / height of a PNG from its header (1.0 when it is not a PNG)."""
    import struct

    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return 1.0
    width, height = struct.unpack(">II", data[16:24])
    return width / height if height else 1.0


def _catalogue_preview(catalogue, rows, without=3):
    """The first ``rows`` galaxies with a Z_pred, then up to ``without`` of those without."""
    if catalogue is None:
        return None
    if "Z_pred_flag" not in catalogue.colnames:
        return catalogue[:rows]
    ok = np.asarray(catalogue["Z_pred_flag"]).astype(str) == "ok"
    n_without = min(int((~ok).sum()), without, rows)
    chosen = np.concatenate([np.flatnonzero(ok)[:rows - n_without],
                             np.flatnonzero(~ok)[:n_without]])
    return catalogue[chosen]


def _read(path):
    from .io import read_table

    return read_table(path) if Path(path).exists() else None


def _counts(out):
    """Galaxy counts through the stages, read back from the stage outputs."""
    counts = []
    labels = _read(out / "sky/labels.fits")
    images = _read(out / "sky/images.fits")
    if labels is not None:
        counts.append(("label catalogue rows", len(labels)))
    if images is not None:
        counts.append(("image catalogue rows (with cutouts)", len(images)))
    selected = _read(out / "select/labels_starforming.fits")
    if selected is not None:
        cuts = selected.meta.get("gpm_astro", {}).get("select_starforming", [])
        for cut in cuts if isinstance(cuts, list) else []:
            if isinstance(cut, dict) and "cut" in cut:
                rule = f" ({cut['column']} {cut['rule']})" if "rule" in cut and \
                    "column" in cut else ""
                counts.append((f"  cut {cut['cut']}{rule}: removed {cut.get('removed'):,}",
                               cut.get("remaining")))
        counts.append(("star-forming labels after every cut", len(selected)))
    matched = _read(out / "crossmatch/matched.fits")
    if matched is not None:
        counts.append(("labels crossmatched to an image",
                       int(np.sum(np.ma.filled(np.ma.asanyarray(matched["matched"]), False)))))
    for name, text in (("labelled", "labelled"), ("application", "application")):
        table = _read(out / f"preprocess/{name}.fits")
        if table is None or not len(table):
            continue
        flags, numbers = np.unique(np.asarray(table["preprocess_flag"]).astype(str),
                                   return_counts=True)
        for flag, number in zip(flags, numbers):
            counts.append((f"{text} cutouts, preprocess_flag = {flag}", int(number)))
    sample = _read(out / "sample/sample.fits")
    if sample is not None:
        split = np.asarray(sample["split"]).astype(str)
        for part in ("train", "validation", "test"):
            counts.append((f"uniform-in-Z sample: {part}", int(np.sum(split == part))))
    return counts


def _summary(metrics):
    if metrics is None or not len(metrics):
        return None
    rows = {str(r["estimator"]): r for r in metrics}
    sentences = []
    z_rows = [r for r in metrics if r["estimator"] != "noise_floor"
              and not str(r["estimator"]).endswith(":mass")]
    if not z_rows:
        return None
    best = min(z_rows, key=lambda r: r["sigma"] if np.isfinite(r["sigma"]) else np.inf)
    sentences.append(f"Lowest scatter on the {best['n']} test galaxies: <b>"
                     f"{html.escape(str(best['method']))}</b>, &sigma; = {best['sigma']:.4f} dex "
                     f"(&mu; = {best['mu']:+.4f}, NMAD = {best['nmad']:.4f}).")
    others = [r for r in z_rows if r["estimator"] != best["estimator"]]
    if others:
        sentences.append("Others: " + "; ".join(
            f"{html.escape(str(r['method']))} &sigma; = {r['sigma']:.4f}" for r in others) + ".")
    for r in metrics:
        if str(r["estimator"]).endswith(":mass"):
            sentences.append(f"{html.escape(str(r['method']))}: &sigma; = {r['sigma']:.4f} dex "
                             f"in log M* against {html.escape(str(r['target']))}.")
    if "noise_floor" in rows:
        sentences.append(f"The mock sky's noise floor (the best prediction its images allow) "
                         f"is &sigma; = {rows['noise_floor']['sigma']:.4f} dex.")
    return " ".join(sentences)


def write_report(output_dir, path=None, *, config=None, timings=None, title=None,
                 catalogue_rows=15, max_image_width=None):
    """Write the HTML report of the pipeline run in ``output_dir``.

    Parameters
    ----------
    output_dir : str or path-like
        A pipeline output folder (see `gpm_astro.pipeline.Pipeline`).
    path : str or path-like, optional
        Where to write; default ``output_dir/report.html``.
    config : dict, optional
        The configuration; default read from ``output_dir/config.json``.
    timings : dict, optional
        Stage name -> seconds.
    title : str, optional
        Page title.
    catalogue_rows : int, optional
        How many catalogue rows to show.
    max_image_width : int, optional
        Shrink wider figures to this many pixels (e.g. 400 for a copy kept in the docs).

    Returns
    -------
    pathlib.Path
        The report file.

    Raises
    ------
    FileNotFoundError
        If ``output_dir`` holds no metrics table (run the evaluate stage first).

    Examples
    --------
    >>> from gpm_astro.report import write_report
    >>> write_report("demo_output")  # doctest: +SKIP
    PosixPath('demo_output/report.html')
    """
    from .io import atomic_write_bytes

    out = Path(output_dir)
    path = Path(path) if path is not None else out / "report.html"
    metrics_path = out / "evaluate/metrics.ecsv"
    if not metrics_path.exists():
        msg = f"no metrics table at {str(metrics_path)!r}; run the pipeline's evaluate stage"
        raise FileNotFoundError(msg)
    metrics = Table.read(metrics_path)
    if config is None and (out / "config.json").exists():
        config = json.loads((out / "config.json").read_text())
    figures = []
    for folder in ("evaluate", "catalogue"):
        listing = out / folder / "figures.json"
        if listing.exists():
            for entry in json.loads(listing.read_text()):
                figures.append(dict(entry, path=out / folder / entry["file"]))
    catalogue_full = _read(out / "catalogue/catalogue.ecsv")
    sections = []
    if (out / "ablation").is_dir():  # `gpm-astro ablate --out RUN/ablation` was run
        from .ablation.report_section import ablation_section

        sections.append(ablation_section(out / "ablation", max_image_width=max_image_width))
    catalogue = _catalogue_preview(catalogue_full, catalogue_rows)
    page = render_report(
        title=title or "gpm_astro run report", metrics=metrics, figures=figures,
        counts=_counts(out), catalogue=catalogue,
        n_catalogue=len(catalogue_full) if catalogue_full is not None else None,
        timings=timings, config=config, summary=_summary(metrics),
        max_image_width=max_image_width, sections=sections)
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
