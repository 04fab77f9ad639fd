"""legacysurvey_cutouts against a local server replaying stored viewer responses."""

import io

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.plugins import get_source
from gpm_astro_plugins.legacysurvey.archive import iter_archive
from gpm_astro_plugins.legacysurvey.cutouts import (
    LegacySurveyCutouts,
    conf,
    parse_cutout,
)

from .conftest import Reply

FITS_TYPE = "image/fits"


@pytest.fixture
def cutout_bytes(stored):
    return stored("legacysurvey_cutout_grz.fits")


@pytest.fixture
def zero_bytes(cutout_bytes):
    with fits.open(io.BytesIO(cutout_bytes)) as hdul:
        hdul[0].data[:] = 0
        buffer = io.BytesIO()
        hdul.writeto(buffer)
    return buffer.getvalue()


def with_invvar(image_bytes, invvar_value):
    """The cutout answer to ``&invvar``: the image plus an INVVAR HDU of one value."""
    with fits.open(io.BytesIO(image_bytes)) as hdul:
        invvar = fits.ImageHDU(np.full_like(hdul[0].data, invvar_value))
        invvar.header["IMAGETYP"] = "INVVAR"
        buffer = io.BytesIO()
        fits.HDUList([hdul[0].copy(), invvar]).writeto(buffer)
    return buffer.getvalue()


def edited(image_bytes, edit):
    with fits.open(io.BytesIO(image_bytes)) as hdul:
        edit(hdul[0])
        buffer = io.BytesIO()
        hdul.writeto(buffer)
    return buffer.getvalue()


def make_source(service, tmp_path, **options):
    settings = dict(cache_dir=tmp_path / "cache", max_retries=2, backoff_factor=0.01,
                    timeout=2.0, max_workers=2, progress=False)
    settings.update(options)
    source = LegacySurveyCutouts(**settings)
    return source


def targets(n):
    return Table({"ra": 150.0 + 0.01 * np.arange(n), "dec": np.full(n, 2.2),
                  "objid": np.arange(n)})


def by_ra(mapping, default):
    """A route callable answering according to the requested ra."""
    def answer(request):
        return mapping.get(request.params["ra"], default)
    return answer


def test_registered_and_payload():
    assert get_source("legacysurvey_cutouts") is LegacySurveyCutouts
    payload = LegacySurveyCutouts().query(targets(2), get_query_payload=True)
    assert len(payload) == 2
    assert payload[0]["url"] == "https://www.legacysurvey.org/viewer/cutout.fits"
    assert payload[0]["params"] == {"ra": "150.0000000", "dec": "2.2000000", "layer": "ls-dr9",
                                    "pixscale": 0.262, "size": 152, "bands": "grz"}


def test_ok_cutouts_and_cache(fake_service, tmp_path, cutout_bytes):
    fake_service.route("/cutout.fits", Reply(cutout_bytes, content_type=FITS_TYPE))
    table = targets(3)
    with conf.set_temp("server", fake_service.url):
        source = make_source(fake_service, tmp_path)
        result = source.query(table)
        assert len(fake_service.requests) == 3
        again = make_source(fake_service, tmp_path).query(table)
        assert len(fake_service.requests) == 3  # the second run came from the cache
        assert source.clear_cache() == 3
        make_source(fake_service, tmp_path).query(table)
    assert len(fake_service.requests) == 6  # an emptied cache asks again
    assert list(result["cutout_flag"]) == ["ok"] * 3
    assert result["cutout"].shape == (3, 3, 152, 152)
    assert result["cutout"].dtype == np.float32
    expected = fits.getdata(io.BytesIO(cutout_bytes))
    np.testing.assert_array_equal(result["cutout"][1], expected)
    np.testing.assert_array_equal(again["cutout"], result["cutout"])
    assert result.meta["bands"] == "grz" and result.meta["pixel_scale"] == 0.262
    assert result.meta["gpm_astro"]["steps"][-1]["step"] == "legacysurvey_cutouts"
    assert "cutout" not in table.colnames  # input untouched
    assert list(result["objid"]) == [0, 1, 2]


def test_faults_become_flags(fake_service, tmp_path, cutout_bytes, zero_bytes, stored):
    html = stored("legacysurvey_error_page.html")
    small = stored("legacysurvey_cutout_grz_invvar_size32.fits")
    table = targets(7)
    ra = [f"{r:.7f}" for r in table["ra"]]
    answers = {
        ra[0]: Reply(cutout_bytes, content_type=FITS_TYPE),
        ra[1]: Reply(zero_bytes, content_type=FITS_TYPE),
        ra[2]: Reply(html, status=200, content_type="text/html"),
        ra[3]: Reply(cutout_bytes[:100_000], content_type=FITS_TYPE),  # a cut-short file
        ra[4]: Reply(small, content_type=FITS_TYPE),  # wrong size
        ra[5]: Reply(b"Not found", status=404, content_type="text/plain"),
        ra[6]: Reply(cutout_bytes, content_type=FITS_TYPE, truncate_to=5000),
    }
    no_exposure = Reply(with_invvar(zero_bytes, 0.0), content_type=FITS_TYPE)
    lookup = by_ra(answers, None)
    fake_service.route("/cutout.fits",
                       lambda r: no_exposure if "invvar" in r.params else lookup(r))
    with conf.set_temp("server", fake_service.url):
        result = make_source(fake_service, tmp_path).query(table)
    flags = list(result["cutout_flag"])
    assert flags == ["ok", "outside_footprint", "html_error_page", "truncated", "bad_shape",
                     "http_error", "truncated"]
    assert np.all(np.isnan(result["cutout"][2:]))
    assert np.all(result["cutout"][1] == 0)
    assert "404" in result["cutout_detail"][5]
    # bodies cut short (by the connection or inside the FITS) and the HTML page are retried
    # twice within the run, the all-zero cube asks for its inverse variance; 404 and a wrong
    # shape are not asked again
    assert len(fake_service.requests) == 7 + 2 + 2 + 2 + 1


def test_ok_means_finite_with_data_in_every_band(fake_service, tmp_path, cutout_bytes,
                                                 zero_bytes):
    def nan_pixels(hdu):
        hdu.data[0, 10, 10] = np.nan
        hdu.data[2, 5, 5] = np.inf

    def no_z(hdu):
        hdu.data[2] = 0

    table = targets(4)
    ra = [f"{r:.7f}" for r in table["ra"]]
    answers = {ra[0]: Reply(edited(cutout_bytes, nan_pixels), content_type=FITS_TYPE),
               ra[1]: Reply(edited(cutout_bytes, no_z), content_type=FITS_TYPE),
               ra[2]: Reply(zero_bytes, content_type=FITS_TYPE),
               ra[3]: Reply(cutout_bytes, content_type=FITS_TYPE)}
    invvar = {ra[2]: Reply(with_invvar(zero_bytes, 25.0), content_type=FITS_TYPE)}
    fake_service.route("/cutout.fits", lambda r: (invvar if "invvar" in r.params
                                                  else answers)[r.params["ra"]])
    output = tmp_path / "cutouts.h5"
    with conf.set_temp("server", fake_service.url):
        result = make_source(fake_service, tmp_path, cache=False).query(table)
        stored = make_source(fake_service, tmp_path, cache=False).query(table, output=output)
        n_sent = len(fake_service.requests)
        make_source(fake_service, tmp_path, cache=False).query(table, output=output)
    assert list(result["cutout_flag"]) == ["non_finite", "band_missing", "zero_cube", "ok"]
    assert list(stored["cutout_flag"]) == list(result["cutout_flag"])
    assert "2 NaN or infinite" in result["cutout_detail"][0]
    assert "band(s) z all zero" in result["cutout_detail"][1]
    assert "inverse variance is positive" in result["cutout_detail"][2]
    assert np.isnan(result["cutout"][0, 0, 10, 10])  # the cube is kept as sent
    # zero_cube is not trusted as final: only that row (and its invvar) is asked again
    assert [r.params["ra"] for r in fake_service.requests[n_sent:]] == [ra[2], ra[2]]


def test_single_band_request_reads_the_2d_answer(fake_service, tmp_path, cutout_bytes):
    def r_only(hdu):
        hdu.data = hdu.data[1].copy()
        hdu.header["BANDS"] = "r"

    fake_service.route("/cutout.fits", Reply(edited(cutout_bytes, r_only),
                                             content_type=FITS_TYPE))
    with conf.set_temp("server", fake_service.url):
        result = make_source(fake_service, tmp_path, bands="r").query(targets(2))
    assert list(result["cutout_flag"]) == ["ok", "ok"]
    assert result["cutout"].shape == (2, 1, 152, 152)
    np.testing.assert_array_equal(result["cutout"][0, 0],
                                  fits.getdata(io.BytesIO(cutout_bytes))[1])
    assert fake_service.requests[0].params["bands"] == "r"


def test_html_error_pages_are_retried_within_the_run(fake_service, tmp_path, cutout_bytes,
                                                     stored):
    html = Reply(stored("legacysurvey_error_page.html"), content_type="text/html")
    fake_service.route("/cutout.fits", html, html, Reply(cutout_bytes, content_type=FITS_TYPE))
    with conf.set_temp("server", fake_service.url):
        result = make_source(fake_service, tmp_path, max_workers=1).query(targets(3))
    assert list(result["cutout_flag"]) == ["ok"] * 3
    assert len(fake_service.requests) == 3 + 2


KILLED_FETCH = """
import sys
from astropy.table import Table
import numpy as np
from gpm_astro_plugins.legacysurvey.cutouts import LegacySurveyCutouts, conf
server, output, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
table = Table({"ra": 150.0 + 0.01 * np.arange(n), "dec": np.full(n, 2.2),
               "objid": np.arange(n)})
with conf.set_temp("server", server):
    LegacySurveyCutouts(cache=False, max_workers=1, progress=False, timeout=30).query(
        table, output=output)
"""


def test_killed_fetch_without_cache_refetches_nothing_written(fake_service, tmp_path,
                                                              cutout_bytes):
    import signal
    import subprocess
    import sys
    import time

    n, kill_at = 12, 6
    fake_service.route("/cutout.fits", Reply(cutout_bytes, content_type=FITS_TYPE, delay=0.3))
    output = tmp_path / "cutouts.h5"
    child = subprocess.Popen([sys.executable, "-c", KILLED_FETCH, fake_service.url,
                              str(output), str(n)])
    try:
        deadline = time.monotonic() + 60
        while len(fake_service.requests) < kill_at and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.15)  # the 6th answer is still on its way; the 5th has been stored
        child.send_signal(signal.SIGKILL)  # no clean-up at all
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    first = [r.params["ra"] for r in fake_service.requests]
    with h5py.File(output) as handle:
        written = np.char.decode(handle["cutout_flag"][:]) == "ok"
    assert written.sum() == kill_at - 1  # every answered row was on disk
    fake_service.route("/cutout.fits", Reply(cutout_bytes, content_type=FITS_TYPE))
    with conf.set_temp("server", fake_service.url):
        result = make_source(fake_service, tmp_path, cache=False).query(targets(n),
                                                                        output=output)
    second = [r.params["ra"] for r in fake_service.requests[len(first):]]
    written_ra = {f"{r:.7f}" for r in targets(n)["ra"][written]}
    assert not written_ra & set(second)  # nothing already written is fetched again
    assert len(second) == n - written.sum()
    assert list(result["cutout_flag"]) == ["ok"] * n


def test_retries_429_with_retry_after_and_500(fake_service, tmp_path, cutout_bytes,
                                              monkeypatch):
    fake_service.route("/cutout.fits",
                       Reply(b"slow down", status=429, headers={"Retry-After": "7"}),
                       Reply(b"oops", status=500),
                       Reply(cutout_bytes, content_type=FITS_TYPE))
    pauses = []
    monkeypatch.setattr("gpm_astro.remote.time.sleep", pauses.append)
    with conf.set_temp("server", fake_service.url), conf.set_temp("max_retry_after", 60.0):
        result = make_source(fake_service, tmp_path, max_workers=1, backoff_factor=0.5,
                             max_retries=3).query(targets(1))
    assert list(result["cutout_flag"]) == ["ok"]
    assert len(fake_service.requests) == 3
    # Retry-After honoured, then exponential back-off (0.5 x 2**1)
    assert pauses == [7.0, 1.0]
    # a Retry-After beyond max_retry_after is capped
    fake_service.route("/cutout.fits",
                       Reply(b"slow down", status=429, headers={"Retry-After": "7"}),
                       Reply(cutout_bytes, content_type=FITS_TYPE))
    pauses.clear()
    with conf.set_temp("server", fake_service.url), conf.set_temp("max_retry_after", 2.0):
        make_source(fake_service, tmp_path, cache=False).query(targets(1))
    assert pauses == [2.0]


def test_retry_after_forms_and_cap():
    import email.utils
    import time

    from gpm_astro.remote import _retry_after_seconds

    assert _retry_after_seconds("3") == 3.0
    assert _retry_after_seconds(None) is None and _retry_after_seconds("soon") is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 50 < _retry_after_seconds(later) <= 60


def test_persistent_500_and_slow_server_give_flags(fake_service, tmp_path, cutout_bytes):
    table = targets(2)
    ra = [f"{r:.7f}" for r in table["ra"]]
    fake_service.route("/cutout.fits", by_ra({
        ra[0]: Reply(b"down", status=503),
        ra[1]: Reply(cutout_bytes, content_type=FITS_TYPE, delay=1.0)}, None))
    with conf.set_temp("server", fake_service.url):
        result = make_source(fake_service, tmp_path, timeout=0.2, max_retries=1).query(table)
    assert list(result["cutout_flag"]) == ["http_error", "timeout"]
    assert len(fake_service.requests) == 4  # each tried twice


def test_invalid_positions_are_not_sent(fake_service, tmp_path, cutout_bytes):
    fake_service.route("/cutout.fits", Reply(cutout_bytes, content_type=FITS_TYPE))
    table = Table({"ra": [150.0, np.nan, 400.0], "dec": [2.0, 1.0, 1.0]})
    with conf.set_temp("server", fake_service.url):
        result = make_source(fake_service, tmp_path).query(table)
    assert list(result["cutout_flag"]) == ["ok", "invalid_position", "invalid_position"]
    assert len(fake_service.requests) == 1


def test_bad_options_and_schema():
    with pytest.raises(ParameterError, match="size"):
        LegacySurveyCutouts(size=5000).query(targets(1), get_query_payload=True)
    with pytest.raises(ParameterError, match="bands"):
        LegacySurveyCutouts(bands="gg").query(targets(1), get_query_payload=True)
    with pytest.raises(ParameterError, match="timeout"):
        LegacySurveyCutouts(timeout=-1)._request("GET", "http://127.0.0.1:9/")
    with pytest.raises(SchemaError, match="ra"):
        LegacySurveyCutouts().query(Table({"x": [1.0]}))


def test_interrupted_fetch_to_hdf5_resumes(fake_service, tmp_path, cutout_bytes, monkeypatch):
    fake_service.route("/cutout.fits", Reply(cutout_bytes, content_type=FITS_TYPE))
    table = targets(10)
    output = tmp_path / "cutouts.h5"
    original = LegacySurveyCutouts._fetch_one
    calls = {"n": 0}

    def interrupted(self, position):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, position)

    with conf.set_temp("server", fake_service.url):
        monkeypatch.setattr(LegacySurveyCutouts, "_fetch_one", interrupted)
        with pytest.raises(KeyboardInterrupt):
            make_source(fake_service, tmp_path, cache=False, max_workers=1).query(
                table, output=output)
        monkeypatch.setattr(LegacySurveyCutouts, "_fetch_one", original)
        first = {r.params["ra"] for r in fake_service.requests}
        with h5py.File(output) as handle:
            done = np.char.decode(handle["cutout_flag"][:]) == "ok"
        assert done.sum() == len(first) >= 4
        result = make_source(fake_service, tmp_path, cache=False).query(table, output=output)
    second = [r.params["ra"] for r in fake_service.requests[len(first):]]
    assert len(second) == 10 - len(first)
    assert not first & set(second)  # nothing fetched twice
    assert list(result["cutout_flag"]) == ["ok"] * 10
    assert "cutout" not in result.colnames and result.meta["cutout_file"] == str(output)
    # the file reads back through the archive reader
    chunks = list(iter_archive(output, chunk_size=4))
    images = np.concatenate([c["cutout"] for c in chunks])
    np.testing.assert_array_equal(images[9], fits.getdata(io.BytesIO(cutout_bytes)))
    np.testing.assert_array_equal(np.concatenate([c["objid"] for c in chunks]), table["objid"])


def test_resume_refuses_a_different_request(fake_service, tmp_path, cutout_bytes):
    fake_service.route("/cutout.fits", Reply(cutout_bytes, content_type=FITS_TYPE))
    output = tmp_path / "cutouts.h5"
    with conf.set_temp("server", fake_service.url):
        make_source(fake_service, tmp_path).query(targets(2), output=output)
        with pytest.raises(ParameterError, match="different fetch"):
            make_source(fake_service, tmp_path).query(targets(3), output=output)


def test_failed_rows_are_fetched_again_on_resume(fake_service, tmp_path, cutout_bytes):
    fake_service.route("/cutout.fits", Reply(b"down", status=503),
                       Reply(cutout_bytes, content_type=FITS_TYPE))
    output = tmp_path / "cutouts.h5"
    with conf.set_temp("server", fake_service.url):
        first = make_source(fake_service, tmp_path, max_retries=0, max_workers=1).query(
            targets(3), output=output)
        second = make_source(fake_service, tmp_path, max_retries=0).query(
            targets(3), output=output)
    assert list(first["cutout_flag"]) == ["http_error", "ok", "ok"]
    assert list(second["cutout_flag"]) == ["ok", "ok", "ok"]
    assert len(fake_service.requests) == 4


def test_parse_cutout_reads_invvar_variant(stored):
    flag, detail, image = parse_cutout(stored("legacysurvey_cutout_grz_invvar_size32.fits"),
                                       size=32)
    assert flag == "ok" and detail == "" and image.shape == (3, 32, 32)
    assert parse_cutout(b"garbage")[0] == "not_fits"


@pytest.mark.remote_data
def test_live_cutout():
    table = Table({"ra": [150.1165], "dec": [2.2058]})
    result = LegacySurveyCutouts(cache=False, progress=False).query(table)
    assert result["cutout_flag"][0] == "ok"
    assert result["cutout"].shape == (1, 3, 152, 152)


def test_source_pickles_after_use(fake_service, tmp_path, cutout_bytes):
    import pickle

    fake_service.route("/cutout.fits", Reply(cutout_bytes, content_type=FITS_TYPE))
    source = make_source(fake_service, tmp_path)
    with conf.set_temp("server", fake_service.url):
        source.query(targets(1))
        copy = pickle.loads(pickle.dumps(source))
        assert copy.get_params() == source.get_params()
        assert list(copy.query(targets(1))["cutout_flag"]) == ["ok"]


def test_hdf5_with_other_position_columns_resumes(fake_service, tmp_path, cutout_bytes):
    # as after a crossmatch: labels' ra/dec plus the image catalogue's ra_image/dec_image
    fake_service.route("/cutout.fits", Reply(b"down", status=503),
                       Reply(cutout_bytes, content_type=FITS_TYPE))
    table = Table({"ra": [10.0, 11.0], "dec": [1.0, 1.0], "ra_image": [10.0001, 11.0001],
                   "dec_image": [1.0001, 1.0001], "flux_g": [1.0, 2.0], "flux_r": [2.0, 3.0],
                   "flux_z": [3.0, 4.0], "name": ["a", "b"]})
    output = tmp_path / "matched.h5"
    options = dict(output=output, ra_column="ra_image", dec_column="dec_image")
    with conf.set_temp("server", fake_service.url):
        first = make_source(fake_service, tmp_path, max_retries=0, max_workers=1).query(
            table, **options)
        second = make_source(fake_service, tmp_path, max_retries=0).query(table, **options)
    assert list(first["cutout_flag"]) == ["http_error", "ok"]
    assert list(second["cutout_flag"]) == ["ok", "ok"]
    assert [r.params["ra"] for r in fake_service.requests] == [
        "10.0001000", "11.0001000", "10.0001000"]
    (chunk,) = iter_archive(output, chunk_size=10)
    np.testing.assert_allclose(chunk["ra"], table["ra_image"])
    np.testing.assert_allclose(chunk["ra_input"], table["ra"])
    np.testing.assert_allclose(chunk["flux_r"], table["flux_r"])
    assert chunk["mag_r"][0] == pytest.approx(22.5 - 2.5 * np.log10(2.0))
    assert list(chunk["name"]) == ["a", "b"]


def test_no_such_layer_is_flagged_once_not_retried(fake_service, tmp_path):
    # the viewer's answer to an unknown layer: HttpResponse('no such layer'), i.e. status
    # 200, Django's default text/html content type, and no markup (decals-web map/views.py,
    # needs_layer); asking again cannot change it
    fake_service.route("/cutout.fits", Reply(b"no such layer", status=200,
                                             content_type="text/html; charset=utf-8"))
    with conf.set_temp("server", fake_service.url):
        result = make_source(fake_service, tmp_path, layer="ls-dr99").query(targets(2))
    assert list(result["cutout_flag"]) == ["not_fits", "not_fits"]
    assert "no such layer" in result["cutout_detail"][0]
    assert np.all(np.isnan(result["cutout"]))
    assert len(fake_service.requests) == 2  # one request a row, no retries
    assert fake_service.requests[0].params["layer"] == "ls-dr99"


def test_unusable_invvar_answer_is_retried_and_never_cached(fake_service, tmp_path,
                                                             zero_bytes, stored):
    # an all-zero cube asks for its inverse variance; an error page in answer to that must
    # not be cached, or every later run would read the page again and never decide the row
    page = Reply(stored("legacysurvey_error_page.html"), content_type="text/html")
    fake_service.route("/cutout.fits", lambda r: page if "invvar" in r.params
                       else Reply(zero_bytes, content_type=FITS_TYPE))
    with conf.set_temp("server", fake_service.url):
        first = make_source(fake_service, tmp_path).query(targets(1))
        n_first = len(fake_service.requests)
        make_source(fake_service, tmp_path).query(targets(1))
    assert list(first["cutout_flag"]) == ["zero_cube"]
    assert "inverse-variance request failed" in first["cutout_detail"][0]
    assert np.all(first["cutout"][0] == 0)  # the cube as sent is kept
    assert n_first == 1 + 3  # the cube, then the invvar asked 1 + max_retries times
    invvar_again = [r for r in fake_service.requests[n_first:] if "invvar" in r.params]
    assert len(invvar_again) == 3  # the cube came from the cache, the page did not
