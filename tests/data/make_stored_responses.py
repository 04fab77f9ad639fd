"""Write the stored service responses under tests/data/ (run once; see README.md here).

    python tests/data/make_stored_responses.py

Every file imitates, byte for byte in format, what the real service sends (METHOD.md §13);
the values are synthetic (a seeded random generator), not copied from any service.
"""

import io
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.votable.tree import Field, Info, Resource, TableElement, VOTableFile

HERE = Path(__file__).parent
rng = np.random.default_rng(20260125)


# -- Legacy Survey viewer: cutout.fits ---------------------------------------------------------
def galaxy_cube(size, ra, dec):
    """A 3-band exponential disc plus sky noise, in nanomaggies per pixel."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    radius = np.hypot(x / 1.0, y / 0.6)
    disc = np.exp(-radius / 6.0)
    cube = np.stack([0.6 * disc, 1.0 * disc, 1.4 * disc])
    cube += rng.normal(0, [[[0.004]], [[0.006]], [[0.015]]], cube.shape)
    return cube.astype(np.float32)


def cutout_header(size, ra, dec, pixel_scale=0.262, imagetyp="IMAGE"):
    header = fits.Header()
    header["SURVEY"] = "LegacySurvey"
    header["VERSION"] = "DR9"
    header["IMAGETYP"] = imagetyp
    header["BANDS"] = "grz"
    for i, band in enumerate("grz"):
        header[f"BAND{i}"] = band
    header["CTYPE1"] = "RA---TAN"
    header["CTYPE2"] = "DEC--TAN"
    header["CRVAL1"] = ra
    header["CRVAL2"] = dec
    header["CRPIX1"] = (size + 1) / 2
    header["CRPIX2"] = (size + 1) / 2
    header["CD1_1"] = -pixel_scale / 3600
    header["CD1_2"] = 0.0
    header["CD2_1"] = 0.0
    header["CD2_2"] = pixel_scale / 3600
    header["IMAGEW"] = float(size)
    header["IMAGEH"] = float(size)
    return header


def write_cutouts():
    ra, dec = 150.1165, 2.2058
    cube = galaxy_cube(152, ra, dec)
    fits.PrimaryHDU(cube, cutout_header(152, ra, dec)).writeto(
        HERE / "legacysurvey_cutout_grz.fits", overwrite=True)
    # the &invvar variant, small (size=32) to keep the repository light
    small = galaxy_cube(32, ra, dec)
    invvar = (1 / np.array([0.004, 0.006, 0.015]) ** 2)[:, None, None] * np.ones_like(small)
    hdus = fits.HDUList([fits.PrimaryHDU(small, cutout_header(32, ra, dec)),
                         fits.ImageHDU(invvar.astype(np.float32),
                                       cutout_header(32, ra, dec, imagetyp="INVVAR"))])
    hdus.writeto(HERE / "legacysurvey_cutout_grz_invvar_size32.fits", overwrite=True)
    (HERE / "legacysurvey_error_page.html").write_text(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>Server Error (500)</title></head>\n"
        "<body><h1>Server Error (500)</h1>\n<p>Please try again later.</p></body>\n</html>\n")


# -- SkyServer DR8 x_sql.asp, format=csv --------------------------------------------------------
SDSS_COLUMNS = ("specobjid", "ra", "dec", "spectrotype", "z", "z_warning", "reliable",
                "sn_median", "snmedian_r", "bptclass", "oh_p2p5", "oh_p16", "oh_p50", "oh_p84",
                "oh_p97p5", "lgm_tot_p50", "lgm_fib_p50", "sfr_tot_p50", "specsfr_tot_p50")


def specobjid(plate, mjd, fiber):
    """SDSS specObjID bit layout: plate << 50 | fiber << 38 | (mjd - 50000) << 24 | run2d."""
    return (plate << 50) | (fiber << 38) | ((mjd - 50000) << 24) | (26 << 10)


def write_sdss(n_rows=40):
    plates = rng.choice(np.arange(266, 2975), 5, replace=False)
    lines = ["#Table1", ",".join(SDSS_COLUMNS)]
    fibers = rng.choice(np.arange(1, 641), n_rows, replace=False)  # ids stay unique
    for k in range(n_rows):
        plate = int(plates[k % 5])
        sid = specobjid(plate, 51600 + plate % 700, int(fibers[k]))
        bpt = int(rng.choice([-1, 1, 1, 1, 2, 3, 4, 5]))
        oh = rng.normal(8.95, 0.15) if bpt in (1, 2) and k % 7 else -9999
        oh_fmt = (lambda d: f"{oh + d:.5f}") if oh != -9999 else (lambda d: "-9999")
        spectrotype = "GALAXY" if k % 11 else "QSO"
        row = [str(sid), f"{rng.uniform(0, 360):.6f}", f"{rng.uniform(-10, 70):.6f}",
               spectrotype, f"{rng.uniform(0.0005, 0.3):.6f}", str(int(k % 13 == 0) * 4),
               str(int(k % 9 != 0)), f"{rng.uniform(2, 40):.4f}", f"{rng.uniform(2, 40):.4f}",
               str(bpt), oh_fmt(-0.2), oh_fmt(-0.1), oh_fmt(0.0), oh_fmt(0.1), oh_fmt(0.2),
               f"{rng.normal(10.3, 0.5):.4f}", f"{rng.normal(9.9, 0.5):.4f}",
               f"{rng.normal(0.3, 0.6):.4f}", f"{rng.normal(-10.0, 0.5):.4f}"]
        lines.append(",".join(row))
    (HERE / "skyserver_dr8_mpajhu.csv").write_text("\n".join(lines) + "\n")
    ids = [int(line.split(",")[0]) for line in lines[2:]]
    (HERE / "skyserver_dr8_specobjid_range.csv").write_text(
        f"#Table1\nmin_specobjid,max_specobjid\n{min(ids)},{max(ids)}\n")


# -- Data Lab TAP: VOTable results and UWS job documents ---------------------------------------
TAP_FIELDS = [("ls_id", "long", None), ("release", "short", None), ("brickid", "int", None),
              ("objid", "int", None), ("ra", "double", "deg"), ("dec", "double", "deg"),
              ("type", "char", None), ("flux_g", "float", "nanomaggy"),
              ("flux_r", "float", "nanomaggy"), ("flux_z", "float", "nanomaggy"),
              ("mag_g", "float", "mag"), ("mag_r", "float", "mag"), ("mag_z", "float", "mag"),
              ("z_phot_median", "float", None), ("z_phot_l68", "float", None),
              ("z_phot_u68", "float", None), ("z_phot_std", "float", None)]


def tap_votable(n_rows, brick_lo, brick_hi, status="OK"):
    votable = VOTableFile()
    resource = Resource(type="results")
    votable.resources.append(resource)
    resource.infos.append(Info(name="QUERY_STATUS", value=status))
    if status != "OK":
        resource.infos[0].content = "Query error: syntax error at or near 'FORM'"
        return votable
    fields = [Field(votable, name=name, datatype=dtype, unit=unit,
                    arraysize="*" if dtype == "char" else None)
              for name, dtype, unit in TAP_FIELDS]
    table = TableElement(votable)
    table.fields.extend(fields)
    resource.tables.append(table)
    table.create_arrays(n_rows)
    for k in range(n_rows):
        brick = int(rng.integers(brick_lo, brick_hi + 1))
        objid = int(rng.integers(0, 5000))
        fluxes = rng.lognormal(0.5, 1.0, 3)
        if k == 3:
            fluxes[0] = -0.2  # a negative flux: LS gives no magnitude there
        mags = [22.5 - 2.5 * np.log10(f) if f > 0 else np.nan for f in fluxes]
        z = rng.uniform(0.02, 0.8) if k != 5 else -99.0
        ls_id = (9010 << 40) | (brick << 16) | objid
        table.array[k] = (ls_id, 9010, brick, objid, rng.uniform(0, 360), rng.uniform(-20, 60),
                          "EXP", *fluxes, *mags, z, z - 0.05 if z > 0 else -99.0,
                          z + 0.05 if z > 0 else -99.0, 0.05 if z > 0 else -99.0)
    return votable


def uws_job(job_id, phase, result_href=None):
    results = ""
    if result_href:
        results = (f'    <uws:result id="result" xlink:type="simple" '
                   f'xlink:href="{result_href}"/>\n')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<uws:job xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
        'xmlns:xlink="http://www.w3.org/1999/xlink" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f'  <uws:jobId>{job_id}</uws:jobId>\n'
        '  <uws:runId xsi:nil="true"/>\n'
        '  <uws:ownerId xsi:nil="true"/>\n'
        f'  <uws:phase>{phase}</uws:phase>\n'
        '  <uws:quote xsi:nil="true"/>\n'
        '  <uws:startTime>2026-01-25T10:00:01.000</uws:startTime>\n'
        '  <uws:endTime xsi:nil="true"/>\n'
        '  <uws:executionDuration>3600</uws:executionDuration>\n'
        '  <uws:destruction>2026-02-01T10:00:00.000</uws:destruction>\n'
        '  <uws:parameters>\n'
        '    <uws:parameter id="lang">ADQL</uws:parameter>\n'
        '    <uws:parameter id="format">votable</uws:parameter>\n'
        '  </uws:parameters>\n'
        f'  <uws:results>\n{results}  </uws:results>\n'
        '</uws:job>\n')


def write_tap():
    for name, (n, lo, hi) in {"datalab_tap_sync_result.xml": (12, 1000, 1999),
                              "datalab_tap_async_result.xml": (15, 2000, 2999)}.items():
        buffer = io.BytesIO()
        tap_votable(n, lo, hi).to_xml(buffer)
        (HERE / name).write_bytes(buffer.getvalue())
    buffer = io.BytesIO()
    tap_votable(0, 0, 0, status="ERROR").to_xml(buffer)
    (HERE / "datalab_tap_query_error.xml").write_bytes(buffer.getvalue())
    job_id = "a1b2c3d4e5f6"
    (HERE / "datalab_uws_job_executing.xml").write_text(uws_job(job_id, "EXECUTING"))
    (HERE / "datalab_uws_job_completed.xml").write_text(uws_job(
        job_id, "COMPLETED", f"https://datalab.noirlab.edu/tap/async/{job_id}/results/result"))


if __name__ == "__main__":
    write_cutouts()
    write_sdss()
    write_tap()
