"""datalab_tap against a local server replaying stored TAP sync and UWS async exchanges."""

import numpy as np
import pytest
from astropy.table import Table

from gpm_astro.exceptions import ParameterError, RemoteServiceError
from gpm_astro.plugins import get_source
from gpm_astro_plugins.datalab.tap import DataLabTAP, build_adql, conf

from .conftest import DATA, Reply

VOTABLE = "application/x-votable+xml"
JOB_ID = "a1b2c3d4e5f6"


def make_source(tmp_path, **options):
    settings = dict(cache_dir=tmp_path / "cache", max_retries=2, backoff_factor=0.01,
                    timeout=2.0, progress=False, poll_interval=0.01)
    settings.update(options)
    return DataLabTAP(**settings)


def stored_table(name):
    return Table.read(DATA / name, format="votable")


class AsyncTAP:
    """Replays Data Lab's UWS exchange: create (303) -> run (303) -> poll -> result -> delete."""

    def __init__(self, service, polls_executing=1):
        self.service = service
        self.polls_executing = polls_executing
        self.deleted = 0
        base = f"/tap/async/{JOB_ID}"
        service.route("/tap/async", self.jobs)
        service.route(base, self.job)
        service.route(f"{base}/phase", self.phase)
        service.route(f"{base}/results/result", Reply(
            (DATA / "datalab_tap_async_result.xml").read_bytes(), content_type=VOTABLE))

    def jobs(self, request):
        if request.method == "POST":
            assert request.form["LANG"] == "ADQL" and "ls_dr9.tractor" in request.form["QUERY"]
            return Reply(b"", status=303,
                         headers={"Location": f"{self.service.url}/tap/async/{JOB_ID}"})
        return Reply(b'<uws:jobs xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0"/>',
                     content_type="text/xml")

    def job(self, request):
        if request.method == "DELETE" or request.form.get("ACTION") == "DELETE":
            self.deleted += 1
            return Reply(b"", status=303, headers={"Location": f"{self.service.url}/tap/async"})
        if self.polls_executing > 0:
            self.polls_executing -= 1
            return Reply((DATA / "datalab_uws_job_executing.xml").read_bytes(),
                         content_type="text/xml")
        body = (DATA / "datalab_uws_job_completed.xml").read_text().replace(
            "https://datalab.noirlab.edu", self.service.url)
        return Reply(body.encode(), content_type="text/xml")

    def phase(self, request):
        if request.method == "POST":
            assert request.form == {"PHASE": "RUN"}
            return Reply(b"", status=303,
                         headers={"Location": f"{self.service.url}/tap/async/{JOB_ID}"})
        if self.polls_executing > 0:
            self.polls_executing -= 1
            return Reply(b"EXECUTING", content_type="text/plain")
        return Reply(b"COMPLETED", content_type="text/plain")


def test_registered_and_payload():
    assert get_source("datalab_tap") is DataLabTAP
    payload = DataLabTAP(types=["EXP", "DEV"], brickid_range=(1, 120), bricks_per_chunk=50,
                         mag_r_max=21.5).query(get_query_payload=True)
    assert [p["mode"] for p in payload] == ["sync", "sync", "sync"]
    query = payload[2]["data"]["QUERY"]
    assert "t.type IN ('DEV', 'EXP')" in query and "t.brickid BETWEEN 101 AND 120" in query
    assert "JOIN ls_dr9.photo_z AS p ON t.ls_id = p.ls_id" in query
    assert "t.mag_r <= 21.5" in query
    assert payload[0]["url"] == "https://datalab.noirlab.edu/tap/sync"


@pytest.mark.parametrize("options, match", [
    ({"types": "EXP') OR 1=1 --"}, "types"),
    ({"types": ["exp"]}, "types"),
    ({"brickid_range": ("1; DROP TABLE ls_dr9.tractor", 5)}, "brickid"),
    ({"brickid_range": (1.5, 5)}, "brickid"),
    ({"mag_r_max": "21 OR 1=1"}, "mag_r_max"),
    ({"mag_r_max": float("nan")}, "mag_r_max"),
    ({"cone": (10.0, 5.0, "1) = 1 OR (1")}, "cone radius"),
    ({"columns": ["t.ls_id", "t.ra; DELETE FROM x"]}, "columns"),
    ({"columns": ["t.ra"]}, "ls_id"),
    ({"mode": "fast"}, "mode"),
])
def test_injection_and_bad_values_refused(options, match, fake_service, tmp_path):
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        with pytest.raises(ParameterError, match=match):
            make_source(tmp_path, **options).query()
    assert fake_service.requests == []  # nothing was sent


def test_sync_query(fake_service, tmp_path):
    fake_service.route("/tap/sync", Reply(b"busy", status=503),
                       Reply((DATA / "datalab_tap_sync_result.xml").read_bytes(),
                             content_type=VOTABLE))
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        result = make_source(tmp_path, brickid_range=(1000, 1030)).query()
        again = make_source(tmp_path, brickid_range=(1000, 1030)).query()
    expected = stored_table("datalab_tap_sync_result.xml")
    assert len(result) == len(expected) == 12
    assert "source_type" in result.colnames and "type" not in result.colnames
    assert set(result["source_type"]) == {"EXP"}
    np.testing.assert_array_equal(result["ls_id"], expected["ls_id"])
    assert result["flux_r"].unit == "nanomaggy" and result["ra"].unit == "deg"
    sent = fake_service.requests_to("/tap/sync")
    assert len(sent) == 2  # one 503, one answer; the re-run came from the cache
    assert "t.brickid BETWEEN 1000 AND 1030" in sent[-1].form["QUERY"]
    assert len(again) == 12
    assert result.meta["gpm_astro"]["steps"][-1]["params"]["types"] == ["EXP"]


def test_async_job_exchange(fake_service, tmp_path):
    tap = AsyncTAP(fake_service, polls_executing=2)
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        result = make_source(tmp_path, brickid_range=(2000, 2999), bricks_per_chunk=1000,
                             mode="async").query()
    assert len(result) == 15
    np.testing.assert_array_equal(result["ls_id"],
                                  stored_table("datalab_tap_async_result.xml")["ls_id"])
    assert len(fake_service.requests_to(f"/tap/async/{JOB_ID}/results/result")) == 1
    assert tap.deleted == 1


def test_async_in_chunks(fake_service, tmp_path):
    AsyncTAP(fake_service, polls_executing=0)
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        result = make_source(tmp_path, brickid_range=(2000, 2999), bricks_per_chunk=400,
                             mode="async", cache=False, max_workers=1).query()
    creates = [r for r in fake_service.requests_to("/tap/async") if r.method == "POST"]
    assert [c.form["QUERY"].split("BETWEEN ")[1] for c in creates] == [
        "2000 AND 2399", "2400 AND 2799", "2800 AND 2999"]
    assert len(result) == 3 * 15  # the stored answer replayed for each chunk


def test_concurrent_chunks_come_back_in_brick_order(fake_service, tmp_path):
    first = (DATA / "datalab_tap_sync_result.xml").read_bytes()
    second = (DATA / "datalab_tap_async_result.xml").read_bytes()

    def answer(request):  # the first chunk is the slower one
        if "BETWEEN 1 AND 10" in request.form["QUERY"]:
            return Reply(first, content_type=VOTABLE, delay=0.3)
        return Reply(second, content_type=VOTABLE)

    fake_service.route("/tap/sync", answer)
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        result = make_source(tmp_path, brickid_range=(1, 20), bricks_per_chunk=10,
                             mode="sync", max_workers=2, cache=False).query()
    expected = (stored_table("datalab_tap_sync_result.xml")["ls_id"].tolist()
                + stored_table("datalab_tap_async_result.xml")["ls_id"].tolist())
    assert result["ls_id"].tolist() == expected


def test_query_error_is_reported(fake_service, tmp_path):
    fake_service.route("/tap/sync", Reply((DATA / "datalab_tap_query_error.xml").read_bytes(),
                                          content_type=VOTABLE))
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        with pytest.raises(RemoteServiceError, match="syntax error"):
            make_source(tmp_path, brickid_range=(1, 2)).query()


def test_build_adql_cone():
    adql = build_adql(brickid_min=1, brickid_max=2, cone=(150.0, 2.2, 0.1))
    assert "CIRCLE('ICRS', 150.0, 2.2, 0.1)) = 1" in adql
    with pytest.raises(ParameterError, match="brickid_max"):
        build_adql(brickid_min=1, cone=(150.0, 2.2, 0.1))


def test_cone_without_bricks_is_one_async_query():
    payload = DataLabTAP(cone=(185.0, 15.0, 2.0)).query(get_query_payload=True)
    assert len(payload) == 1 and payload[0]["mode"] == "async"
    assert "BETWEEN" not in payload[0]["data"]["QUERY"]
    # without a cone the whole survey is covered in brick chunks
    payload = DataLabTAP(bricks_per_chunk=100_000).query(get_query_payload=True)
    assert [p["data"]["QUERY"].split("BETWEEN ")[1] for p in payload][-1] == "600001 AND 662174"


@pytest.mark.remote_data
def test_live_small_chunk():
    result = DataLabTAP(types="EXP", brickid_range=(330000, 330000), cache=False,
                        progress=False).query()
    assert set(result["source_type"]) <= {"EXP"}
    assert "z_phot_median" in result.colnames
