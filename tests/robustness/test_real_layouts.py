"""The four Table functions on catalogues laid out exactly as users download them.

Layouts (column names, dtypes, sentinels) follow the published data models:

* MPA-JHU DR8 ``galSpecInfo-dr8.fits`` / ``galSpecExtra-dr8.fits`` (SDSS data model pages
  ``SPECTRO_REDUX/galSpecInfo``; SkyServer schema ``galSpecTables.sql``): upper-case FITS
  names, big-endian, fixed-width byte strings, ``SN_MEDIAN`` (no ``snMedian_r``), -9999 for a
  missing measurement, -1 ids / blank ``SPECTROTYPE`` on rows the pipeline never ran;
* the same through SkyServer / CasJobs: lower-case names, ``specObjID`` bigint, and (DR14+,
  plates above 8191) specObjIDs above 2**63, which astroquery reads as uint64;
* Legacy Survey DR9 sweep / Tractor files (RELEASE int16, BRICKID int32, BRICKNAME char[8],
  OBJID int32, TYPE char[3], FLUX_* in nanomaggies with TUNIT, MW_TRANSMISSION_*) and their
  photo-z files (Z_PHOT_MEDIAN, Z_SPEC -99 when missing); Data Lab TAP's lower-case names.
"""

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table, join

from gpm_astro import crossmatch, predict_metallicity, preprocess_cutouts, select_starforming
from gpm_astro.exceptions import SchemaError
from gpm_astro.io import read_table, write_table

#: specObjID of plate 266, MJD 51630, fibre 1 (DR8 encoding: plate << 50 | fiber << 38 | ...)
SPECOBJID_266 = 299489677444933632
#: a DR14+ specObjID (plate 9000): above 2**63, uint64 only
SPECOBJID_BIG = (9000 << 50) | (1 << 38)
N_PIX = 152


def _mpajhu_fits(path):
    """galSpecInfo joined with galSpecExtra, written as FITS the way the SAS files are."""
    n = 10
    cols = [
        fits.Column("SPECOBJID", "K", array=SPECOBJID_266 + (np.arange(1, n + 1) << 38)),
        fits.Column("PLATEID", "I", array=np.r_[np.full(n - 1, 266), -1]),
        fits.Column("MJD", "J", array=np.r_[np.full(n - 1, 51630), -1]),
        fits.Column("FIBERID", "I", array=np.r_[np.arange(1, n), -1]),
        fits.Column("RA", "E", array=145.0 + 0.002 * np.arange(n)),
        fits.Column("DEC", "E", array=np.full(n, -0.5)),
        fits.Column("TARGETTYPE", "32A", array=["GALAXY"] * (n - 1) + [""]),
        # row 3 a QSO, the last row never analysed: blank SPECTROTYPE, -1 everywhere
        fits.Column("SPECTROTYPE", "32A", array=["GALAXY", "GALAXY", "QSO"] + ["GALAXY"] * 6
                    + [""]),
        fits.Column("Z", "E", array=[0.05, 0.08, 0.5, 0.001, 0.1, 0.07, 0.06, 0.09, 0.03, -1]),
        fits.Column("Z_WARNING", "I", array=[0, 0, 0, 0, 0, 4, 0, 0, 0, -1]),
        fits.Column("SN_MEDIAN", "E", array=[10, 12, 20, 8, 3, 9, 15, 11, 7, -1]),
        fits.Column("RELEASE", "32A", array=["dr4"] * (n - 1) + [""]),
        fits.Column("RELIABLE", "I", array=[1, 1, 1, 1, 1, 1, 1, 0, 1, 0]),
        fits.Column("BPTCLASS", "I", array=[1, 1, 1, 1, 1, 1, 4, 1, -1, -1]),
        fits.Column("OH_P16", "E", array=[8.85, -9999, 8.6, 8.7, 8.8, 8.9, -9999, 8.9, -9999,
                                          -9999]),
        fits.Column("OH_P50", "E", array=[8.9, -9999, 8.7, 8.8, 8.9, 9.0, -9999, 8.95, -9999,
                                          -9999]),
        fits.Column("OH_P84", "E", array=[8.95, -9999, 8.8, 8.9, 9.0, 9.1, -9999, 9.0, -9999,
                                          -9999]),
        fits.Column("LGM_TOT_P50", "E", array=[10.1, 10.3, 11, 9.5, 9.9, 10.0, 10.8, 10.2, 9.0,
                                               -9999]),
        fits.Column("LGM_FIB_P50", "E", array=[9.7, 9.9, 10.5, 9.1, 9.5, 9.6, 10.4, 9.8, 8.6,
                                               -9999]),
    ]
    fits.BinTableHDU.from_columns(cols).writeto(path)
    return path


def test_mpajhu_fits_files_select_exactly_the_hand_computed_rows(tmp_path):
    table = read_table(_mpajhu_fits(tmp_path / "galSpec-dr8.fits"))
    assert table["SPECTROTYPE"].dtype.kind == "S"  # fixed-width bytes, as in the file
    # the FITS files have SN_MEDIAN, not SpecObjAll's snMedian_r: a clear error names it
    with pytest.raises(SchemaError, match="snmedian_r.*SN_MEDIAN"):
        select_starforming(table)
    kept = select_starforming(table, snr_column="SN_MEDIAN")
    # by hand: row 1 passes; 2 no OH (-9999), 3 QSO, 4 z < 0.002, 5 S/N 3, 6 z_warning 4,
    # 7 AGN, 8 unreliable, 9 unclassifiable (-1), 10 never analysed (blank type)
    assert kept["FIBERID"].tolist() == [1]
    report = {c["cut"]: (c["removed"], c["missing"], c["implausible"])
              for c in kept.meta["gpm_astro"]["select_starforming"]}
    assert report == {"spectrotype": (2, 1, 0), "reliable": (1, 0, 0), "z_warning": (1, 0, 0),
                      "bptclass": (2, 0, 0), "z": (1, 0, 0), "snr": (1, 0, 0),
                      "metallicity": (1, 1, 0)}
    assert kept["SPECOBJID"].dtype == np.int64 and kept["SPECOBJID"][0] == SPECOBJID_266 + (1 << 38)
    assert kept.colnames == table.colnames  # the file's own names are kept


def test_mpajhu_sentinels_are_missing_for_the_mass_metallicity_relation(tmp_path):
    table = read_table(_mpajhu_fits(tmp_path / "galSpec-dr8.fits"))
    result = predict_metallicity(table, estimator="mass_metallicity", mass_column="LGM_TOT_P50")
    assert len(result) == len(table)
    assert result["Z_pred_flag"][-1] == "missing_mass"  # -9999, never a mass of -9999 dex
    assert bool(np.ma.getmaskarray(result["Z_pred"])[-1])
    assert result["Z_pred_flag"][0] == "ok"


def _casjobs_labels(specobjid):
    """SkyServer / CasJobs lower-case answer (as astroquery types it)."""
    n = len(specobjid)
    return Table({
        "specObjID": specobjid, "ra": 150.0 + 0.003 * np.arange(n), "dec": np.full(n, 2.0),
        "spectrotype": np.array(["GALAXY  "] * n), "z": np.full(n, 0.05, np.float32),
        "z_warning": np.zeros(n, np.int16), "reliable": np.ones(n, np.int16),
        "snMedian_r": np.full(n, 10.0, np.float32),
        "bptclass": np.array([1, 1, 2, 1, 1, 1][:n], np.int16),
        "oh_p50": np.array([8.5, 8.7, 8.8, -9999.0, 8.9, 9.1][:n], np.float32),
        "lgm_tot_p50": np.array([9.2, 9.6, 10.0, 10.4, 10.8, -9999.0][:n], np.float32)})


@pytest.mark.parametrize("ids", [
    pytest.param(np.arange(6, dtype=np.int64) + SPECOBJID_266, id="int64-dr8"),
    pytest.param(np.arange(6, dtype=np.uint64) + np.uint64(SPECOBJID_BIG), id="uint64-dr14"),
])
def test_casjobs_layout_keeps_ids_exact_through_every_function(ids):
    labels = _casjobs_labels(ids)
    kept = select_starforming(labels)
    # row 3 is low-S/N star-forming (bptclass 2), row 4 has no metallicity
    assert kept["specObjID"].tolist() == ids[[0, 1, 4, 5]].tolist()
    assert kept["specObjID"].dtype == ids.dtype
    images = _sweep(len(labels), ra=labels["ra"], dec=labels["dec"])
    matched = crossmatch(kept, images, one_to_one=True, label_id="specObjID",
                         image_id=("RELEASE", "BRICKID", "OBJID"))
    assert matched["specObjID"].tolist() == kept["specObjID"].tolist()
    assert matched["specObjID"].dtype == ids.dtype
    result = predict_metallicity(matched, estimator="mass_metallicity")
    assert result["specObjID"].tolist() == kept["specObjID"].tolist()
    assert result["Z_pred_flag"].tolist() == ["ok", "ok", "ok", "missing_mass"]


@pytest.mark.parametrize("ending", ["fits", "ecsv", "csv", "h5", "parquet"])
def test_specobjid_above_2_63_survives_every_format(tmp_path, ending):
    if ending == "parquet":
        pytest.importorskip("pyarrow")
    ids = np.array([SPECOBJID_BIG, SPECOBJID_BIG + 1, SPECOBJID_266], dtype=np.uint64)
    path = tmp_path / f"labels.{ending}"
    write_table(Table({"specObjID": ids, "z": [0.1, 0.2, 0.3]}), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "reverting to String"
        back = read_table(path)
    assert back["specObjID"].dtype == np.uint64
    assert back["specObjID"].tolist() == ids.tolist()


def test_skyserver_csv_with_dr14_specobjids_reads_them_as_uint64(tmp_path):
    path = tmp_path / "skyserver.csv"
    path.write_text(f"specObjID,z,bptclass\n{SPECOBJID_BIG},0.1,1\n{SPECOBJID_266},0.2,4\n")
    table = read_table(path)
    assert table["specObjID"].dtype == np.uint64
    assert table["specObjID"].tolist() == [SPECOBJID_BIG, SPECOBJID_266]
    # digits below 2**63 and text stay as astropy reads them
    path.write_text("objid,name\n12,0012\n13,abc\n")
    assert read_table(path)["objid"].dtype.kind == "i"
    assert read_table(path)["name"].dtype.kind == "U"


def _galaxies(n, rng):
    y, x = np.mgrid[:N_PIX, :N_PIX]
    galaxy = np.exp(-((x - 75.5) ** 2 + (y - 75.5) ** 2) / 20.0)
    cutouts = np.stack([galaxy * (0.2 + 0.1 * b) for b in range(3)])[None] * np.ones((n, 1, 1, 1))
    return (cutouts + rng.normal(0, 0.003, cutouts.shape)).astype(np.float32)


def _sweep(n, *, ra, dec, seed=0):
    """A DR9 sweep / Tractor file slice, as a FITS file reads: upper case, TUNITs, big-endian."""
    rng = np.random.default_rng(seed)
    types = ["EXP", "REX", "PSF", "DEV", "SER", "DUP"]
    cols = [fits.Column("RELEASE", "I", array=np.full(n, 9010)),
            fits.Column("BRICKID", "J", array=np.full(n, 330123)),
            fits.Column("BRICKNAME", "8A", array=["1500p020"] * n),
            fits.Column("OBJID", "J", array=np.arange(n)),
            fits.Column("TYPE", "3A", array=[types[i % 6] for i in range(n)]),
            fits.Column("RA", "D", unit="deg", array=np.asarray(ra) + 0.2 / 3600),
            fits.Column("DEC", "D", unit="deg", array=np.asarray(dec)),
            fits.Column("EBV", "E", unit="mag", array=np.full(n, 0.03))]
    for band, base in zip("GRZ", (3.0, 5.0, 8.0)):
        cols += [fits.Column(f"FLUX_{band}", "E", unit="nanomaggy",
                             array=base * rng.uniform(1, 2, n)),
                 fits.Column(f"FLUX_IVAR_{band}", "E", unit="1/nanomaggy^2",
                             array=np.full(n, 100.0)),
                 fits.Column(f"MW_TRANSMISSION_{band}", "E", array=np.full(n, 0.9)),
                 fits.Column(f"NOBS_{band}", "I", array=np.full(n, 3))]
    cols += [fits.Column("SHAPE_R", "E", unit="arcsec", array=np.full(n, 1.5)),
             fits.Column("MASKBITS", "I", array=np.zeros(n)),
             fits.Column("FITBITS", "I", array=np.zeros(n))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)  # nanomaggy is not a FITS unit
        table = Table.read(fits.BinTableHDU.from_columns(cols))
    for name in table.colnames:  # big-endian, as the file holds them
        if table[name].dtype.kind in "iuf":
            table[name] = table[name].astype(table[name].dtype.newbyteorder(">"))
    return table


def _photo_z(sweep):
    """The matching DR9 photo-z file rows: Z_SPEC is -99 where there is no spectrum."""
    n = len(sweep)
    return Table({"RELEASE": sweep["RELEASE"], "BRICKID": sweep["BRICKID"],
                  "OBJID": sweep["OBJID"],
                  "Z_PHOT_MEDIAN": np.linspace(0.05, 0.2, n).astype(">f4"),
                  "Z_SPEC": np.where(np.arange(n) % 2, -99.0, 0.1).astype(">f4")})


@pytest.mark.parametrize("case", ["upper", "lower"])
def test_sweep_layout_through_the_documented_path(tmp_path, case):
    rng = np.random.default_rng(3)
    labels = _casjobs_labels(np.arange(6, dtype=np.int64) + SPECOBJID_266)
    labels["spectrotype"] = ["GALAXY"] * 6
    labels["bptclass"] = np.ones(6, np.int16)
    labels["oh_p50"] = np.linspace(8.4, 9.1, 6).astype(np.float32)
    sweep = join(_sweep(8, ra=np.r_[labels["ra"], 151.0, 152.0], dec=np.r_[labels["dec"], 0, 0]),
                 _photo_z(_sweep(8, ra=np.zeros(8), dec=np.zeros(8))),
                 keys=["RELEASE", "BRICKID", "OBJID"])
    sweep.sort("OBJID")
    if case == "lower":  # Data Lab TAP / a user's lower-case copy
        sweep.rename_columns(sweep.colnames, [c.lower() for c in sweep.colnames])
    path = tmp_path / "sweep.fits"
    write_table(sweep, path)
    images = read_table(path)
    images["cutout"] = _galaxies(len(images), rng)

    starforming = select_starforming(labels)
    matched = crossmatch(starforming, images, radius=1 * u.arcsec, one_to_one=True)
    assert len(matched) == len(starforming) == 6  # a left join: no label row dropped
    assert matched["match_flag"].tolist() == ["ok"] * 6
    objid = "OBJID" if case == "upper" else "objid"
    assert matched[objid].tolist() == list(range(6)) and matched[objid].dtype == np.int32
    z_spec = np.asarray(matched["Z_SPEC" if case == "upper" else "z_spec"])
    assert (z_spec[1::2] == -99).all()  # kept as the catalogue has it

    clean = preprocess_cutouts(matched[matched["matched"]], progress=False)
    assert len(clean) == 6 and clean["preprocess_ok"].all()
    result = predict_metallicity(clean, estimator="colour_polynomial", order=1, fit_table=clean)
    assert len(result) == 6 and (result["Z_pred_flag"] == "ok").all()
    # the fluxes are read as nanomaggies, as observed (no Milky Way transmission applied)
    flux = {b: np.asarray(clean[f"FLUX_{b}" if case == "upper" else f"flux_{b.lower()}"],
                          dtype=float) for b in "GRZ"}
    from gpm_astro.plugins import get_estimator
    g_r, r_z, _ = get_estimator("colour_polynomial")().colours(clean)
    np.testing.assert_allclose(g_r, -2.5 * np.log10(flux["G"] / flux["R"]), rtol=1e-6)
    np.testing.assert_allclose(r_z, -2.5 * np.log10(flux["R"] / flux["Z"]), rtol=1e-6)
    mzr = predict_metallicity(clean, estimator="mass_metallicity", mass_column="lgm_tot_p50")
    assert mzr["Z_pred_flag"].tolist() == ["ok"] * 5 + ["missing_mass"]


def test_padded_tractor_types_read_from_fits_match_their_names(tmp_path):
    # DR8 wrote TYPE as char[4] ("PSF ", "EXP "); FITS readers hand back bytes
    path = tmp_path / "tractor.fits"
    fits.BinTableHDU.from_columns([
        fits.Column("TYPE", "4A", array=["EXP ", "PSF ", "REX ", "COMP"]),
        fits.Column("RA", "D", array=[1.0, 2, 3, 4]),
        fits.Column("DEC", "D", array=[0.0, 0, 0, 0])]).writeto(path)
    table = read_table(path)
    types = np.char.strip(np.asarray(table["TYPE"]).astype(str))
    assert types.tolist() == ["EXP", "PSF", "REX", "COMP"]
