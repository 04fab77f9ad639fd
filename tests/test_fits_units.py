"""FITS files keep units outside the FITS standard (dex, nmgy) where every reader sees them."""

import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table

from gpm_astro.io import read_table, write_table
from gpm_astro.pipeline import make_catalogue


def test_catalogue_fits_has_dex_on_z_pred_and_its_error(tmp_path):
    predictions = Table({"ra": [1.0], "dec": [2.0], "release": [9010], "brickid": [5],
                         "objid": [7], "z_phot_median": [0.1], "flux_r": [10.0],
                         "Z_pred": [8.9], "Z_pred_err": [0.1], "Z_pred_flag": ["ok"]})
    path = tmp_path / "catalogue.fits"
    write_table(make_catalogue(predictions), path)
    header = fits.getheader(path, 1)
    units = {header[f"TTYPE{i}"]: header.get(f"TUNIT{i}")
             for i in range(1, header["TFIELDS"] + 1)}
    assert units["Z_pred"] == units["Z_pred_err"] == "dex"
    assert units["mag_r"] == "mag" and units["ra"] == "deg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read back quietly, with the units
        table = read_table(path)
    assert table["Z_pred"].unit == u.dex and table["Z_pred_err"].unit == u.dex


def test_a_foreign_fits_file_with_dex_reads_as_dex(tmp_path):
    column = fits.Column(name="Z", format="D", unit="dex", array=np.array([9.0]))
    fits.BinTableHDU.from_columns([column]).writeto(tmp_path / "other.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_table(tmp_path / "other.fits")["Z"].unit == u.dex


def test_a_unit_astropy_does_not_know_is_written_quietly_and_kept(tmp_path):
    # as read_table gives SkyServer's 'Log solar masses', or a FITS reader a 'nanomaggy'
    table = Table({"lgm_tot_p50": [10.1], "flux_r": [2.0]})
    table["lgm_tot_p50"].unit = u.Unit("Log solar masses", parse_strict="silent")
    table["flux_r"].unit = u.Unit("nanomaggy", format="fits", parse_strict="silent")
    path = tmp_path / "t.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warned once per such column and write
        write_table(table, path)
    header = fits.getheader(path, 1)
    units = {header[f"TTYPE{i}"]: header.get(f"TUNIT{i}") for i in (1, 2)}
    assert units == {"lgm_tot_p50": "Log solar masses", "flux_r": "nanomaggy"}  # any reader
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = read_table(path)
    assert str(back["lgm_tot_p50"].unit) == "Log solar masses"
    assert back["flux_r"].unit == u.nanomaggy
