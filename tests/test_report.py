"""The HTML report: self-contained, every figure and table embedded, numbers from the run."""

import base64
import json
import re

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from gpm_astro.report import image_to_data_uri, render_report, table_to_html, write_report


def _png(path, colour):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1), dpi=20)
    fig.patch.set_facecolor(colour)
    fig.savefig(path)
    return path


def _metrics():
    return Table({"estimator": ["gpm_resnet", "colour_polynomial_2", "noise_floor"],
                  "method": ["GPM-ResNet (lite configuration)", "colour polynomial, order 2",
                             "mock noise floor"],
                  "n": [100, 98, 100], "mu": [0.0123, -0.002, 0.001],
                  "sigma": [0.0871, 0.1234, 0.0612], "nmad": [0.0801, 0.111, 0.06],
                  "coverage": [0.68, 0.7, np.nan]})


@pytest.fixture
def run_folder(tmp_path):
    """A pipeline output folder with just what the report reads."""
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "catalogue").mkdir()
    _metrics().write(tmp_path / "evaluate/metrics.ecsv")
    for name, colour in (("fig08", "red"), ("fig09", "green")):
        _png(tmp_path / "evaluate" / f"{name}.png", colour)
    (tmp_path / "evaluate/figures.json").write_text(json.dumps(
        [{"name": "fig08", "file": "fig08.png", "caption": "Z distributions <test>"},
         {"name": "fig09", "file": "fig09.png", "caption": "residuals"}]))
    _png(tmp_path / "catalogue/fig15.png", "blue")
    (tmp_path / "catalogue/figures.json").write_text(json.dumps(
        [{"name": "fig15", "file": "fig15.png", "caption": "catalogue"}]))
    catalogue = Table({"ra": np.arange(20.0), "dec": np.zeros(20), "objid": np.arange(20),
                       "Z_pred": MaskedColumn(np.full(20, 8.8123), mask=[True] + [False] * 19),
                       "Z_pred_flag": ["preprocess:blended"] + ["ok"] * 19})
    catalogue.write(tmp_path / "catalogue/catalogue.ecsv")
    (tmp_path / "config.json").write_text(json.dumps({"sample": {"n_galaxies": 321}}))
    return tmp_path


def test_write_report_embeds_every_figure_and_the_tables(run_folder):
    path = write_report(run_folder, timings={"sky": 1.5, "evaluate": 2.25}, title="My run",
                        catalogue_rows=5)
    assert path == run_folder / "report.html"
    page = path.read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3
    originals = [(run_folder / f).read_bytes() for f in
                 ("evaluate/fig08.png", "evaluate/fig09.png", "catalogue/fig15.png")]
    assert [base64.b64decode(i) for i in images] == originals
    # nothing is linked from outside the file
    assert "src='http" not in page and "href=" not in page
    # the metrics as written by the run, the summary, config, timings, catalogue rows
    for text in ("0.0871", "0.1234", "0.0612", "GPM-ResNet (lite configuration)",
                 "&quot;n_galaxies&quot;: 321", "1.5 s", "My run",
                 "Catalogue (20 galaxies; 5 shown)", "preprocess:blended",
                 "Z distributions &lt;test&gt;"):
        assert text in page, text
    assert "Lowest scatter" in page and "noise floor" in page
    assert page.count("<tr>") >= 3 + 1 + 5 + 1


def test_write_report_without_metrics_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="evaluate"):
        write_report(tmp_path)


def test_table_to_html_escapes_formats_and_masks():
    table = Table({"name": ["<b>", "x"], "value": MaskedColumn([1.23456, 2.0],
                                                              mask=[False, True]),
                   "n": [12345, 3]})
    table["value"].unit = "dex"
    html = table_to_html(table, formats={"value": ".2f"})
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "value [dex]" in html
    assert "1.23" in html and "1.2346" not in html
    assert "&mdash;" in html  # the masked value
    assert "12,345" in html
    assert table_to_html(table, max_rows=1).count("<tr>") == 2


def test_render_report_is_one_html_document(tmp_path):
    page = render_report(title="t", metrics=_metrics(),
                         figures=[{"name": "a", "caption": "cap",
                                   "path": _png(tmp_path / "a.png", "black")}],
                         counts=[("labels", 10), ("after cuts", 7)])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<figure>") == 1
    assert "<td>7</td>" in page
    assert image_to_data_uri(tmp_path / "a.png") in page


def test_a_small_copy_shrinks_the_figures(run_folder, tmp_path):
    _png(run_folder / "evaluate/fig08.png", "red")  # 20 px wide: kept as it is
    from PIL import Image
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), dpi=100)
    fig.subplots().plot([0, 1], [0, 1])
    fig.savefig(run_folder / "evaluate/fig09.png")
    small = write_report(run_folder, tmp_path / "small.html", max_image_width=200)
    images = re.findall(r"base64,([A-Za-z0-9+/=]+)'", small.read_text())
    import io

    widths = [Image.open(io.BytesIO(base64.b64decode(i))).width for i in images]
    assert widths == [20, 200, 20]


def test_catalogue_preview_shows_predicted_galaxies_first_and_plain_ids(tmp_path):
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "catalogue").mkdir()
    _metrics().write(tmp_path / "evaluate/metrics.ecsv")
    flags = ["preprocess:too_large"] * 11 + ["ok"] * 4
    catalogue = Table({"brickid": np.arange(15) + 500_000, "objid": np.arange(15) + 12_000,
                       "Z_pred": MaskedColumn(np.full(15, 9.0), mask=[f != "ok" for f in flags]),
                       "Z_pred_flag": flags})
    catalogue.write(tmp_path / "catalogue/catalogue.ecsv")
    page = write_report(tmp_path, catalogue_rows=6).read_text()
    shown = re.findall(r"<td>(5000\d\d)</td><td>(120\d\d)</td>", page)
    # predicted galaxies first, then three without a prediction; no "500,011"
    assert shown == [("500011", "12011"), ("500012", "12012"), ("500013", "12013"),
                     ("500000", "12000"), ("500001", "12001"), ("500002", "12002")]
    assert "500,0" not in page
