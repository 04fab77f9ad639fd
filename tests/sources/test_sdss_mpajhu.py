"""sdss_mpajhu against a local server replaying stored SkyServer CSV answers."""

import re

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.exceptions import EmptyResultWarning, ParameterError, RemoteServiceError
from gpm_astro.plugins import get_source
from gpm_astro_plugins.sdss.mpajhu import LABEL_COLUMNS, SDSSMPAJHU, conf, mpajhu_sql

from .conftest import DATA, Reply

SQL_PATH = "/dr8/en/tools/search/x_sql.asp"
# the label columns of docs/dev/interfaces.md, in order
INTERFACE_COLUMNS = ["specobjid", "ra", "dec", "spectrotype", "z", "z_warning", "reliable",
                     "sn_median", "snmedian_r", "bptclass", "oh_p2p5", "oh_p16", "oh_p50",
                     "oh_p84", "oh_p97p5", "lgm_tot_p50", "lgm_fib_p50", "sfr_tot_p50",
                     "specsfr_tot_p50"]


def skyserver(request):
    """Answer like SkyServer: the range query, or the stored rows inside the asked range."""
    cmd = request.params["cmd"]
    assert request.params["format"] == "csv"
    if "MIN(specObjID)" in cmd:
        return Reply((DATA / "skyserver_dr8_specobjid_range.csv").read_bytes(),
                     content_type="text/plain")
    lo, hi = map(int, re.search(r"specObjID >= (\d+) AND i.specObjID < (\d+)", cmd).groups())
    header, columns, *data = (DATA / "skyserver_dr8_mpajhu.csv").read_text().splitlines()
    kept = sorted((r for r in data if lo <= int(r.split(",")[0]) < hi),
                  key=lambda r: int(r.split(",")[0]))  # ORDER BY i.specObjID
    body = "\n".join([header, columns, *kept]) + "\n"
    return Reply(body.encode(), content_type="text/plain")


def make_source(tmp_path, **options):
    settings = dict(cache_dir=tmp_path / "cache", max_retries=2, backoff_factor=0.01,
                    timeout=2.0, progress=False, plates_per_chunk=400)
    settings.update(options)
    return SDSSMPAJHU(**settings)


@pytest.fixture
def stored_rows():
    table = Table.read((DATA / "skyserver_dr8_mpajhu.csv").read_text(), format="ascii.csv",
                       comment="#")
    table.sort("specobjid")
    return table


def test_registered_and_payload():
    assert get_source("sdss_mpajhu") is SDSSMPAJHU
    lo = 300 << 50
    payload = SDSSMPAJHU(specobjid_range=(lo, lo + (500 << 50)),
                         plates_per_chunk=200).query(get_query_payload=True)
    assert len(payload) == 3
    assert payload[0]["url"] == "https://skyserver.sdss.org/dr8/en/tools/search/x_sql.asp"
    cmd = payload[1]["params"]["cmd"]
    assert f"i.specObjID >= {lo + (200 << 50)} AND i.specObjID < {lo + (400 << 50)}" in cmd
    assert "JOIN SpecObjAll AS s" in cmd and "s.snMedian_r AS snmedian_r" in cmd
    # without a range, the first request asks the server for it
    first = SDSSMPAJHU().query(get_query_payload=True)
    assert "MIN(specObjID)" in first[0]["params"]["cmd"]


def test_query_in_chunks_gives_the_label_schema(fake_service, tmp_path, stored_rows):
    fake_service.route(SQL_PATH, skyserver)
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        result = make_source(tmp_path).query()
        n_sent = len(fake_service.requests)
        again = make_source(tmp_path).query()
    assert result.colnames == INTERFACE_COLUMNS == list(LABEL_COLUMNS)
    assert len(result) == len(stored_rows) == 40
    np.testing.assert_array_equal(result["specobjid"], stored_rows["specobjid"])
    np.testing.assert_allclose(result["oh_p50"], stored_rows["oh_p50"])
    assert result["specobjid"].dtype == np.uint64
    assert set(result["spectrotype"]) == {"GALAXY", "QSO"}
    assert str(result["oh_p50"].unit) == "dex"
    # one range query + several chunks, each far below SkyServer's row limit
    assert n_sent > 2
    assert len(fake_service.requests) == n_sent  # the re-run came from the cache
    assert len(again) == 40
    step = result.meta["gpm_astro"]["steps"][-1]
    assert step["step"] == "sdss_mpajhu" and step["params"]["n_rows"] == 40


def test_rate_limit_spaces_queries_and_empty_result(fake_service, tmp_path, monkeypatch):
    fake_service.route(SQL_PATH, skyserver)
    pauses = []
    monkeypatch.setattr("gpm_astro.remote.time.sleep", pauses.append)
    lo = 300 << 50  # no stored row lies on plates 300-302
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 30.0):
        with pytest.warns(EmptyResultWarning):
            result = make_source(tmp_path, cache=False, plates_per_chunk=1,
                                 specobjid_range=(lo, lo + (3 << 50))).query()
    assert len(fake_service.requests) == 3
    # the 2nd and 3rd queries waited for the rest of the 30 s interval
    assert len(pauses) == 2 and all(25 < p <= 30 for p in pauses)
    assert len(result) == 0 and result.colnames == INTERFACE_COLUMNS


SOMETHING_WENT_WRONG = (b"<!DOCTYPE html><html><head><title>SkyServer</title></head><body>"
                        b"<h1>Something went wrong</h1><p>Please try again later.</p>"
                        b"</body></html>")


def test_transient_error_pages_are_retried_with_backoff(fake_service, tmp_path, monkeypatch):
    pauses = []
    monkeypatch.setattr("gpm_astro.remote.time.sleep", pauses.append)
    page = Reply(SOMETHING_WENT_WRONG, content_type="text/html")
    fake_service.route(SQL_PATH, page, page, skyserver)  # the range query meets two pages
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        result = make_source(tmp_path, cache=False).query()
    assert len(result) == 40
    assert pauses[:2] == [0.01, 0.02]  # back-off doubles
    # a page that never goes away: bounded by max_retries, then the page is the error
    fake_service.route(SQL_PATH, page)
    n_before = len(fake_service.requests)
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        with pytest.raises(RemoteServiceError, match="Something went wrong"):
            make_source(tmp_path, cache=False).query()
    assert len(fake_service.requests) - n_before == 3  # 1 + max_retries


def test_sql_error_is_refused_at_once(fake_service, tmp_path):
    page = (b"<html><body><font color=red>SQL returned the following error: "
            b"Incorrect syntax near 'FORM'.</font></body></html>")
    fake_service.route(SQL_PATH, Reply(page, content_type="text/html"))
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        with pytest.raises(RemoteServiceError, match="refused the SQL.*Incorrect syntax"):
            make_source(tmp_path, cache=False).query()
    assert len(fake_service.requests) == 1


def with_extra_columns(request):
    """SkyServer's answer with the columns the SQL asked for beyond the label schema."""
    reply = skyserver(request)
    cmd = request.params["cmd"]
    if "MIN(specObjID)" in cmd:
        return reply
    assert "e.d4000_n AS d4000_n" in cmd and "s.plate AS plateID" in cmd
    header, columns, *rows = reply.body.decode().splitlines()
    rows = [f"{r},{1.2 + k / 100:.2f},{int(r.split(',')[0]) >> 50}" for k, r in enumerate(rows)]
    body = "\n".join([header, columns + ",d4000_n,plateID", *rows]) + "\n"
    return Reply(body.encode(), content_type="text/plain")


def test_extra_columns(fake_service, tmp_path):
    fake_service.route(SQL_PATH, with_extra_columns)
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        result = make_source(tmp_path, cache=False,
                             extra_columns={"d4000_n": "e.d4000_n",
                                            "plateID": "s.plate"}).query()
    assert result.colnames == [*LABEL_COLUMNS, "d4000_n", "plateID"]
    np.testing.assert_array_equal(result["plateID"], result["specobjid"] >> np.uint64(50))
    assert result.meta["gpm_astro"]["steps"][-1]["params"]["extra_columns"] == {
        "d4000_n": "e.d4000_n", "plateID": "s.plate"}
    for bad, match in [(["e.d4000_n; DROP TABLE x"], "extra_columns entries"),
                       (["x.plate"], "extra_columns entries"),
                       ({"Z": "e.d4000_n"}, "already use"),
                       ({"a b": "s.plate"}, "alias")]:
        with pytest.raises(ParameterError, match=match):
            SDSSMPAJHU(extra_columns=bad).query(get_query_payload=True)


def test_retry_on_500_then_error_page_raises(fake_service, tmp_path):
    fake_service.route(SQL_PATH, Reply(b"busy", status=500), skyserver)
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        result = make_source(tmp_path).query()
    assert len(result) == 40
    assert fake_service.requests[0].path == SQL_PATH and len(fake_service.requests) > 2
    page = b"<!DOCTYPE html><html><body>error_message: Query timed out</body></html>"
    fake_service.route(SQL_PATH, Reply(page, content_type="text/html"))
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        with pytest.raises(RemoteServiceError, match="error page"):
            make_source(tmp_path, cache=False).query()


def test_bad_parameters():
    with pytest.raises(ParameterError, match="plates_per_chunk"):
        SDSSMPAJHU(plates_per_chunk=10_000).query(get_query_payload=True)
    with pytest.raises(ParameterError, match="specobjid_range"):
        SDSSMPAJHU(specobjid_range=(5, "1; DROP TABLE x")).query(get_query_payload=True)
    with pytest.raises(ParameterError, match="lo"):
        mpajhu_sql("0 OR 1=1", 5)


@pytest.mark.remote_data
def test_live_one_plate():
    lo = 266 << 50
    result = SDSSMPAJHU(specobjid_range=(lo, lo + (1 << 50)), cache=False,
                        progress=False).query()
    assert result.colnames == list(LABEL_COLUMNS)
    assert 0 < len(result) <= 640


def test_result_feeds_select_starforming(fake_service, tmp_path, stored_rows):
    from gpm_astro import select_starforming

    fake_service.route(SQL_PATH, skyserver)
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        labels = make_source(tmp_path).query()
    kept = select_starforming(labels)
    rows = stored_rows
    expected = ((rows["spectrotype"] == "GALAXY") & (rows["reliable"] == 1)
                & (rows["z_warning"] == 0) & (rows["bptclass"] == 1) & (rows["z"] >= 0.002)
                & (rows["snmedian_r"] >= 5) & (rows["oh_p50"] != -9999))
    assert 0 < len(kept) == expected.sum()
    np.testing.assert_array_equal(np.sort(kept["specobjid"]),
                                  np.sort(rows["specobjid"][expected]))


def classic_skyserver(request):
    """SkyServer's classic x_sql.asp (DR1-DR9): the same CSV without the '#Table1' line, lines
    ending in CRLF (astroquery issues #1715, #1924)."""
    reply = skyserver(request)
    lines = [line for line in reply.body.decode().splitlines() if line != "#Table1"]
    return Reply(("\r\n".join(lines) + "\r\n").encode(), content_type="text/plain")


def test_classic_x_sql_asp_csv_without_table_line(fake_service, tmp_path, stored_rows):
    fake_service.route(SQL_PATH, classic_skyserver)
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        result = make_source(tmp_path, cache=False).query()
    assert result.colnames == list(LABEL_COLUMNS)
    np.testing.assert_array_equal(result["specobjid"], stored_rows["specobjid"])
    np.testing.assert_allclose(result["oh_p50"], stored_rows["oh_p50"])
    assert result.meta["gpm_astro"]["steps"][-1]["params"]["specobjid_range"] == [
        int(stored_rows["specobjid"].min()), int(stored_rows["specobjid"].max()) + 1]


@pytest.mark.parametrize("body, match", [
    (b"ERROR\r\nDivide by zero error encountered.\r\n", "refused the SQL"),
    (b"", "not CSV with a header line"),
    (b"No objects have been found\r\n", "not CSV with a header line"),
    (b"#Table1\nmin_specobjid,max_specobjid\n1,2\n#Table2\nx\n3\n", "2 tables"),
])
def test_error_empty_and_several_table_answers_are_refused(fake_service, tmp_path, body,
                                                             match):
    fake_service.route(SQL_PATH, Reply(body, content_type="text/plain"))
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        with pytest.raises(RemoteServiceError, match=match) as info:
            make_source(tmp_path, cache=False).query()
    assert len(fake_service.requests) == 1  # asking again cannot change these
    assert "(the specObjID range query)" in str(info.value)  # the error names the request


def test_a_failed_chunk_is_named(fake_service, tmp_path):
    def second_chunk_fails(request):
        if "i.specObjID >= 1" in request.params["cmd"] and len(fake_service.requests) > 2:
            return Reply(b"ERROR\r\nTimeout expired.\r\n", content_type="text/plain")
        return skyserver(request)

    fake_service.route(SQL_PATH, second_chunk_fails)
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        with pytest.raises(RemoteServiceError,
                           match=r"\(the chunk of specObjIDs \[\d+, \d+\)\): SkyServer "
                                 r"refused the SQL: 'ERROR"):
            make_source(tmp_path, cache=False).query()


def test_chunk_at_the_row_limit_is_not_taken_as_complete(fake_service, tmp_path, monkeypatch):
    # SkyServer stops at its row limit without saying so: a chunk that reaches it may be cut
    monkeypatch.setattr("gpm_astro_plugins.sdss.mpajhu.ROW_LIMIT", 5)
    fake_service.route(SQL_PATH, skyserver)
    with conf.set_temp("server", fake_service.url), conf.set_temp("min_interval", 0.0):
        with pytest.raises(RemoteServiceError, match=r"rows for specObjIDs \[\d+, \d+\), its "
                                                     r"row limit \(5\)"):
            make_source(tmp_path, cache=False).query()
