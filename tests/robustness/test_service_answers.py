"""The Table API on answers shaped as the real services and files give them.

Shapes follow the published definitions: SkyServer's schema for the MPA-JHU tables
(``galSpecTables.sql``: ``ra``/``dec`` real with unit ``degrees``, ``specObjID`` bigint or
numeric(20,0), -9999 for a missing measurement), VOTables from TAP services, and the Legacy
Survey DR9 Tractor / sweep and photo-z files.
"""

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from gpm_astro import crossmatch, predict_metallicity, preprocess_cutouts, select_starforming
from gpm_astro.exceptions import EmptyResultWarning, GPMAstroWarning, SchemaError, TableIOError
from gpm_astro.io import read_table, write_table
from gpm_astro.testing import make_estimator_table

from .conftest import SIZE

#: stored service answers (tests/data/README.md)
DATA = Path(__file__).resolve().parents[1] / "data"

#: A SkyServer VOTable answer for galSpecInfo: ra/dec in the schema's unit "degrees"
GALSPECINFO_VOTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<RESOURCE type="results"><TABLE>
<FIELD name="specObjID" datatype="long"/>
<FIELD name="ra" datatype="float" unit="degrees"/>
<FIELD name="dec" datatype="float" unit="degrees"/>
<DATA><TABLEDATA>
<TR><TD>299489677444933632</TD><TD>145.0</TD><TD>-0.5</TD></TR>
<TR><TD>299489677444933633</TD><TD>145.01</TD><TD>-0.5</TD></TR>
</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>
"""


@pytest.mark.parametrize("ending", ["vot", "fits"])
def test_coordinates_in_degrees_spelt_out_are_angles(tmp_path, ending):
    path = tmp_path / f"galspecinfo.{ending}"
    if ending == "vot":
        path.write_text(GALSPECINFO_VOTABLE)
    else:  # the same unit as a FITS TUNIT, outside the FITS standard
        fits.BinTableHDU.from_columns([
            fits.Column("RA", "E", unit="degrees", array=[145.0, 145.01]),
            fits.Column("DEC", "E", unit="degrees", array=[-0.5, -0.5])]).writeto(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read as an angle, no "unknown unit" warning
        labels = read_table(path)
    # the schema stores ra as real (float32): the image lies 0.3 arcsec from that value
    images = Table({"objid": [7], "ra": [float(np.float32(145.01)) + 0.3 / 3600], "dec": [-0.5]})
    matched = crossmatch(labels, images, radius=1.0)
    assert matched["match_flag"].tolist() == ["no_match", "ok"]
    assert matched["objid"][1] == 7
    assert abs(matched["separation"][1] - 0.3) < 0.01


def test_sentinel_or_impossible_coordinates_are_invalid_not_matched():
    # MPA-JHU rows the pipeline never ran carry -9999; SkyCoord would wrap RA -9999 to 81 deg
    labels = Table({"specobjid": [1, 2, 3, 4, 5],
                    "ra": [-9999.0, -99.0, 370.0, 81.0, 81.0],
                    "dec": [0.0, 0.0, 0.0, -9999.0, 0.0]})
    images = Table({"objid": [7, 8, 9], "ra": [81.0, 261.0, 10.0], "dec": [0.0, 0.0, 0.0]})
    matched = crossmatch(labels, images, radius=1.0)
    assert matched["match_flag"].tolist() == ["invalid_coordinates"] * 4 + ["ok"]
    assert np.ma.getmaskarray(matched["objid"]).tolist() == [True] * 4 + [False]
    counts = matched.meta["gpm_astro"]["steps"][-1]["params"]["counts"]
    assert counts["invalid_coordinates"] == 4
    # an image row at a sentinel position is never matched either
    images["ra"][0] = -9999.0
    assert crossmatch(labels[4:], images, radius=1.0)["match_flag"].tolist() == ["no_match"]


def test_masked_ids_are_named_not_called_duplicates_of_their_hidden_value():
    # a TAP answer's nulls: masked ids whose hidden values repeat, or equal a real id
    labels = Table({"ra": [10.0, 10.001, 10.002], "dec": [0.0, 0.0, 0.0],
                    "specobjid": MaskedColumn([5, 5, 6], mask=[True, True, False])})
    images = Table({"ra": [10.0], "dec": [0.0], "release": MaskedColumn([9010], mask=[True]),
                    "brickid": [1], "objid": [1]})
    with pytest.raises(SchemaError, match=r"'specobjid' is masked or NaN in 2 row\(s\).*\[0, 1\]"):
        crossmatch(labels, images, label_id="specobjid")
    with pytest.raises(SchemaError, match=r"'release' is masked or NaN in 1 row\(s\)"):
        crossmatch(labels[2:], images, image_id=("release", "brickid", "objid"))
    # NaN never equals NaN: two NaN ids (a float column from pandas) would pass as unique
    nan_ids = Table({"ra": [10.0, 10.001], "dec": [0.0, 0.0], "specobjid": [np.nan, np.nan]})
    with pytest.raises(SchemaError, match=r"'specobjid' is masked or NaN in 2 row\(s\)"):
        crossmatch(nan_ids, images, label_id="specobjid")
    images["release"].mask = False
    assert crossmatch(labels[2:], images, label_id="specobjid",
                      image_id=("release", "brickid", "objid"))["match_flag"].tolist() == \
        ["no_match"]


def test_gpm_resnet_domain_reads_the_upper_case_photo_z_of_a_dr9_file(saved_model):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    assert "redshift" in estimator.domain_.ranges  # trained on z_phot_median
    table = make_estimator_table(3, seed=4, cutout_size=SIZE)
    table.remove_column("z")
    table.rename_column("z_phot_median", "Z_PHOT_MEDIAN")  # the DR9 photo-z file's name
    table["Z_PHOT_MEDIAN"] = [0.1, 5.0, -99.0]  # -99: no photo-z
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "the table has no redshift column"
        out = estimator.predict(table)
    flags = out["Z_pred_domain_flag"].tolist()
    assert "redshift" in flags[1] and "redshift" not in flags[0] + flags[2]


def test_bands_of_a_fits_header_read_back_upper_case_are_used(tmp_path, saved_model):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    table = make_estimator_table(3, seed=4, cutout_size=SIZE)["cutout", "z_phot_median"]
    flipped = Table({"cutout": np.asarray(table["cutout"])[:, ::-1],
                     "z_phot_median": np.asarray(table["z_phot_median"])},
                    meta={"bands": "zrg"})
    path = tmp_path / "zrg.fits"
    flipped.write(path)  # astropy's own writer: the header keyword reads back as BANDS
    back = read_table(path)
    assert "BANDS" in back.meta and "bands" not in back.meta
    with pytest.raises(SchemaError, match="bands 'grz' in that order.*'zrg'"):
        preprocess_cutouts(back, progress=False)
    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    # the z, r, g planes are read as z, r, g, not as g, r, z
    np.testing.assert_allclose(estimator.predict(back)["Z_pred"],
                               estimator.predict(table)["Z_pred"], rtol=1e-5)
    back.meta["bands"] = "grz"
    with pytest.raises(SchemaError, match="differ only in case"):
        preprocess_cutouts(back, progress=False)


def test_integer_preprocess_ok_from_a_database_gets_a_conversion_that_works():
    # SQL databases (and pandas reading them) store booleans as 0 / 1
    table = Table({"lgm_tot_p50": [10.0, 10.0], "preprocess_ok": np.array([1, 0], np.int16)})
    with pytest.raises(SchemaError, match=r"table\['preprocess_ok'\] == 1$"):
        predict_metallicity(table, estimator="mass_metallicity", progress=False)
    table["preprocess_ok"] = table["preprocess_ok"] == 1  # as the message says
    out = predict_metallicity(table, estimator="mass_metallicity", progress=False)
    assert out["Z_pred_flag"].tolist() == ["ok", "preprocess:failed"]


def test_specobj_spelling_of_a_cut_column_is_suggested_and_accepted():
    # SpecObj (and astroquery's answer) spells galSpecInfo's z_warning as zWarning
    labels = Table({"spectrotype": ["GALAXY ", "GALAXY "], "reliable": [1, 1],
                    "zWarning": [0, 4], "bptclass": [1, 1], "z": [0.05, 0.06],
                    "snMedian_r": [10.0, 10.0], "oh_p50": [8.9, 8.8]})
    with pytest.raises(SchemaError, match=r"\['zWarning'\] differ from 'z_warning' only in case "
                                          r"and underscores"):
        select_starforming(labels)
    kept = select_starforming(labels, z_warning_column="zWarning")
    assert kept["z"].tolist() == [0.05]


def test_skyserver_answer_with_no_rows_reads_and_selects_as_empty(tmp_path):
    # a query that matched nothing: SkyServer's '#Table1' line and the header, no data line
    path = tmp_path / "nothing.csv"
    path.write_text("#Table1\nspecobjid,ra,dec,spectrotype,z,z_warning,reliable,snmedian_r,"
                    "bptclass,oh_p50\n")
    labels = read_table(path)
    assert len(labels) == 0 and labels.colnames[:3] == ["specobjid", "ra", "dec"]
    with pytest.warns(EmptyResultWarning, match="kept none of the 0 input rows"):
        kept = select_starforming(labels)
    assert len(kept) == 0 and kept.colnames == labels.colnames
    assert [c["removed"] for c in kept.meta["gpm_astro"]["select_starforming"]] == [0] * 7
    with pytest.warns(EmptyResultWarning):
        matched = crossmatch(kept, Table({"ra": [1.0], "dec": [0.0]}))
    assert len(matched) == 0 and "match_flag" in matched.colnames


@pytest.mark.parametrize("text, match", [
    ("<!DOCTYPE html>\n<html><head><title>Server Error (500)</title></head></html>\n",
     r"is an HTML page .*'Server Error \(500\)'"),
    ("ERROR: Incorrect syntax near the keyword 'FORM'.\n",
     r"holds a service's error message.*Incorrect syntax"),
    ("#Table1\nspecobjid,z\n1,0.1\n#Table2\nmin,max\n3,4\n",
     r"holds 2 tables \(Table1, Table2\)"),
    ('<?xml version="1.0"?>\n<VOTABLE version="1.4"><RESOURCE/></VOTABLE>\n',
     r"is a VOTable, not a text table.*format='votable'"),
])
def test_skyserver_answer_that_is_no_single_table_is_refused(tmp_path, text, match):
    # read as a table these gave a column named '<!DOCTYPE html>', or text columns throughout
    path = tmp_path / "answer.csv"
    path.write_text(text)
    with pytest.raises(TableIOError, match=match):
        read_table(path)
    # a table that merely mentions HTML in its data is a table
    path.write_text('name,note\nNGC 1,"<html> in a note"\n')
    assert read_table(path)["note"][0] == "<html> in a note"


TAP_ANSWER = """<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<RESOURCE type="results">
<INFO name="QUERY_STATUS" value="{status}">{text}</INFO>
{table}
{after}
</RESOURCE></VOTABLE>
"""
TAP_TABLE = """<TABLE><FIELD name="ls_id" datatype="long"/><FIELD name="ra" datatype="double"
unit="deg"/><DATA><TABLEDATA><TR><TD>1</TD><TD>10.0</TD></TR><TR><TD>2</TD><TD>11.0</TD></TR>
</TABLEDATA></DATA></TABLE>"""


def test_tap_error_answer_and_truncated_answer(tmp_path):
    error = tmp_path / "error.vot"
    error.write_text(TAP_ANSWER.format(status="ERROR", text="syntax error at or near 'FORM'",
                                       table="", after=""))
    with pytest.raises(TableIOError, match=r"TAP service's error answer.*near 'FORM'"):
        read_table(error)
    # DALI: a result cut at MAXREC says so in an INFO after the table
    cut = tmp_path / "cut.vot"
    cut.write_text(TAP_ANSWER.format(status="OK", text="", table=TAP_TABLE,
                                     after='<INFO name="QUERY_STATUS" value="OVERFLOW"/>'))
    with pytest.warns(GPMAstroWarning, match="cut at the service's row limit.*its 2 rows"):
        table = read_table(cut)
    assert table["ls_id"].tolist() == [1, 2] and table.meta["query_status"] == "OVERFLOW"
    whole = tmp_path / "whole.vot"
    whole.write_text(TAP_ANSWER.format(status="OK", text="", table=TAP_TABLE, after=""))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_table(whole)) == 2


@pytest.mark.parametrize("ending", ["fits", "h5", "parquet"])
def test_votable_char_star_column_reads_as_str_and_writes_anywhere(tmp_path, ending):
    if ending == "parquet":
        pytest.importorskip("pyarrow")
    # Data Lab's ls_dr9.tractor answer: type is char, arraysize "*" (an object column)
    answer = read_table(DATA / "datalab_tap_sync_result.xml")
    assert answer["type"].dtype.kind == "U" and set(answer["type"]) <= {"EXP", "REX", "PSF",
                                                                         "DEV", "SER", "DUP"}
    path = tmp_path / f"tractor.{ending}"
    write_table(answer, path)
    back = read_table(path)
    assert np.char.strip(np.asarray(back["type"]).astype(str)).tolist() == \
        answer["type"].tolist()
    # the same column as pyvo's to_table() hands it over (objects, a null) is written too
    rows = Table({"type": MaskedColumn(np.array(["EXP", None], dtype=object), mask=[0, 1]),
                  "objid": [1, 2]})
    write_table(rows, tmp_path / f"pyvo.{ending}")
    assert rows["type"].dtype == object  # the caller's table is left as it was
    assert read_table(tmp_path / f"pyvo.{ending}")["objid"].tolist() == [1, 2]


#: a TAP answer (VOTable 1.4: units read by the VOUnit parser) with SkyServer's units
GALSPEC_VOUNITS = """<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<RESOURCE type="results"><INFO name="QUERY_STATUS" value="OK"/><TABLE>
<FIELD name="spectrotype" datatype="char" arraysize="*"/>
<FIELD name="reliable" datatype="short"/><FIELD name="z_warning" datatype="short"/>
<FIELD name="bptclass" datatype="short"/><FIELD name="z" datatype="float"/>
<FIELD name="snmedian_r" datatype="float"/><FIELD name="oh_p50" datatype="float" unit="dex"/>
<FIELD name="lgm_tot_p50" datatype="float" unit="Log solar masses"/>
<FIELD name="mstar" datatype="double" unit="Msun"/>
<DATA><TABLEDATA>
<TR><TD>GALAXY</TD><TD>1</TD><TD>0</TD><TD>1</TD><TD>0.05</TD><TD>10</TD><TD>8.9</TD>
<TD>10.0</TD><TD>1e10</TD></TR>
<TR><TD>GALAXY</TD><TD>1</TD><TD>0</TD><TD>1</TD><TD>0.06</TD><TD>10</TD><TD>-9999</TD>
<TD>-9999</TD><TD>0</TD></TR>
</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>
"""


def test_votable_units_read_by_vounit_are_the_catalogues_units(tmp_path):
    # VOUnit defines dex, Msun and 'Log solar masses' anew: not astropy's dex and solMass
    path = tmp_path / "galspec.vot"
    path.write_text(GALSPEC_VOUNITS)
    labels = read_table(path)
    kept = select_starforming(labels)  # oh_p50 in dex is a metallicity, not refused
    assert len(kept) == 1
    for column in ("lgm_tot_p50", "mstar"):
        out = predict_metallicity(labels, estimator="mass_metallicity", mass_column=column,
                                  progress=False)
        assert out["Z_pred_flag"].tolist() == ["ok", "missing_mass"]
        assert out["Z_pred"][0] == pytest.approx(8.952, abs=1e-3)
    # the same tables as pyvo hands them over, without read_table
    from astropy.io.votable import parse_single_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's own notes on units VOUnit lacks
        raw = parse_single_table(str(path)).to_table()
    assert raw["oh_p50"].unit != u.dex  # VOUnit's own dex
    assert len(select_starforming(raw)) == 1
    assert predict_metallicity(raw, estimator="mass_metallicity", mass_column="mstar",
                               progress=False)["Z_pred_flag"][0] == "ok"


def test_a_unit_astropy_does_not_know_survives_write_table_fits(tmp_path):
    # e.g. lgm_tot_p50 read from a TAP answer with SkyServer's unit 'Log solar masses'
    path = tmp_path / "galspec.vot"
    path.write_text(GALSPEC_VOUNITS)
    labels = read_table(path)
    assert isinstance(labels["lgm_tot_p50"].unit, u.UnrecognizedUnit)
    fits_path = tmp_path / "galspec.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)  # astropy: not a FITS unit
        write_table(labels, fits_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # restored from GPMMETA: no "unknown unit"
        back = read_table(fits_path)  # was: TableIOError "malformed GPMMETA header keyword"
    assert str(back["lgm_tot_p50"].unit) == str(labels["lgm_tot_p50"].unit)
    out = predict_metallicity(back, estimator="mass_metallicity", progress=False)
    assert out["Z_pred_flag"].tolist() == ["ok", "missing_mass"]


def test_a_csv_header_behind_a_hash_stays_the_header(tmp_path):
    # only SkyServer's '#Table1' makes '#' lines comments: no data row becomes a header
    path = tmp_path / "mine.csv"
    path.write_text("#ra,dec\n10.0,0.0\n11.0,1.0\n")
    table = read_table(path)
    assert len(table) == 2 and table.colnames == ["#ra", "dec"]


def test_a_csv_saved_with_a_byte_order_mark_keeps_its_first_column_name(tmp_path):
    # Excel's "CSV UTF-8" starts with a BOM, which astropy glued to the first name: '\ufeffra'
    path = tmp_path / "labels.csv"
    path.write_bytes(b"\xef\xbb\xbfra,dec,specobjid\r\n10.0,0.0,1\r\n")
    labels = read_table(path)
    assert labels.colnames == ["ra", "dec", "specobjid"]
    assert crossmatch(labels, Table({"ra": [10.0], "dec": [0.0]}))["match_flag"][0] == "ok"


def test_votable_columns_are_named_by_the_field_names_not_their_ids(tmp_path):
    # a FIELD's ID is an XML key ('col0'); its name is what the service calls the column
    path = tmp_path / "answer.vot"
    path.write_text(TAP_ANSWER.format(status="OK", text="", after="", table=(
        '<TABLE><FIELD ID="col0" name="ra" datatype="double" unit="deg"/>'
        '<FIELD ID="col1" name="dec" datatype="double" unit="deg"/>'
        "<DATA><TABLEDATA><TR><TD>10.0</TD><TD>0.0</TD></TR></TABLEDATA></DATA></TABLE>")))
    labels = read_table(path)
    assert labels.colnames == ["ra", "dec"]
    assert crossmatch(labels, Table({"ra": [10.0], "dec": [0.0]}))["match_flag"][0] == "ok"


def test_galspecline_flux_units_read_without_warnings(tmp_path):
    # SkyServer's unit of the MPA-JHU line fluxes; -1 is its error sentinel, kept as written
    path = tmp_path / "lines.vot"
    path.write_text(TAP_ANSWER.format(status="OK", text="", after="", table=(
        '<TABLE><FIELD name="h_alpha_flux" datatype="float" unit="1e-17 erg/s/cm^2"/>'
        '<FIELD name="h_alpha_flux_err" datatype="float" unit="1e-17 erg/s/cm^2"/>'
        "<DATA><TABLEDATA><TR><TD>10.0</TD><TD>-1</TD></TR></TABLEDATA></DATA></TABLE>")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lines = read_table(path)
    assert lines["h_alpha_flux"].unit == u.Unit("1e-17 erg / (s cm2)")
    assert lines["h_alpha_flux_err"][0] == -1


def test_galspecline_flux_unit_as_a_fits_tunit_reads_without_warnings(tmp_path):
    path = tmp_path / "lines.fits"
    fits.BinTableHDU.from_columns([fits.Column("H_ALPHA_FLUX", "E", unit="1e-17 erg/s/cm^2",
                                               array=[10.0, -9999.0])]).writeto(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lines = read_table(path)
    assert lines["H_ALPHA_FLUX"].unit == u.Unit("1e-17 erg / (s cm2)")


def test_gpm_resnet_columns_are_the_same_when_no_row_is_predicted(saved_model):
    # a survey chunk whose cutouts all failed preprocessing, or an empty chunk
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    table = make_estimator_table(3, seed=4, cutout_size=SIZE)
    full = predict_metallicity(table, estimator=estimator, progress=False).colnames
    assert "Z_pred_domain_flag" in full
    table["preprocess_ok"] = False
    failed = predict_metallicity(table, estimator=estimator, progress=False)
    assert failed.colnames == full
    assert np.ma.getmaskarray(failed["Z_pred_domain"]).all()
    with pytest.warns(EmptyResultWarning):
        assert predict_metallicity(table[:0], estimator=estimator,
                                   progress=False).colnames == full


@pytest.mark.parametrize("scale", [0.262 * u.arcsec / u.pix, 0.262 / 3600 * u.deg / u.pix])
def test_pixel_scale_as_an_angle_per_pixel(scale):
    # astropy's own way of writing a pixel scale (the pixel_scale equivalency)
    table = make_estimator_table(1, seed=4, cutout_size=32)["cutout",]
    expected = preprocess_cutouts(table, pixel_scale=0.262, progress=False)
    for out in (preprocess_cutouts(table, pixel_scale=scale, progress=False),
                preprocess_cutouts(Table(table, meta={"pixel_scale": scale}), progress=False)):
        assert out["preprocess_flag"].tolist() == expected["preprocess_flag"].tolist()
        assert out["enclosing_radius"].tolist() == pytest.approx(
            expected["enclosing_radius"].tolist(), nan_ok=True)
