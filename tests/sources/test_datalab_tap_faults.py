"""datalab_tap against a stateful local TAP server that gzip-encodes its answers, cuts results
at MAXREC with QUERY_STATUS=OVERFLOW, and faults every step of the UWS job cycle.

The server counts the jobs it created and deleted: every test checks that no job is left
behind, that every row comes back, and that the run ends in bounded time.
"""

import gzip
import io
import re
import threading
import time

import numpy as np
import pytest
from astropy.io.votable import from_table
from astropy.io.votable.tree import Info
from astropy.table import Table

from gpm_astro.exceptions import RemoteServiceError
from gpm_astro.remote import RemoteTimeoutError
from gpm_astro_plugins.datalab.tap import DataLabTAP, conf

from .conftest import DATA, Reply

VOTABLE = "application/x-votable+xml"
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
             b"<body><h1>Something went wrong</h1></body></html>")


def sky_rows(n_bricks, per_brick):
    """``per_brick`` rows in each of bricks 1..n_bricks, columns as datalab_tap selects."""
    template = Table.read(DATA / "datalab_tap_sync_result.xml", format="votable")
    n = n_bricks * per_brick
    rows = template[np.arange(n) % len(template)]
    bricks = np.repeat(np.arange(1, n_bricks + 1), per_brick)
    rows["brickid"] = bricks.astype(rows["brickid"].dtype)
    rows["ls_id"] = np.arange(n, dtype=rows["ls_id"].dtype) + 1
    return rows


def votable_bytes(table, status="OK", message=None):
    """A TAP answer as DALI lays it out: QUERY_STATUS before the TABLE; on OVERFLOW that one
    says OK and a second QUERY_STATUS=OVERFLOW follows the TABLE (pyvo's
    dal/tests/data/query/overflowstatus.xml)."""
    votable = from_table(table)
    resource = votable.resources[0]
    resource.type = "results"
    info = Info(name="QUERY_STATUS", value="OK" if status == "OVERFLOW" else status)
    if message:
        info.content = message
    resource.infos.append(info)
    buffer = io.BytesIO()
    votable.to_xml(buffer)
    body = buffer.getvalue()
    if status == "OVERFLOW":
        trailer = b'<INFO name="QUERY_STATUS" value="OVERFLOW"/>\n </RESOURCE>'
        body = body.replace(b"</RESOURCE>", trailer, 1)
    return body


class FakeTAP:
    """A TAP service over ``rows``: /sync and UWS /async, with faults injected per step.

    ``faults`` maps a step (``sync``, ``create``, ``run``, ``phase``, ``result``, ``delete``)
    to a list of faults used one per request of that step: ``"503"``, ``"429"``, ``"html"``
    (an error page with status 200), ``"cut"`` (a body cut short). ``stall_jobs`` jobs stay
    PENDING whatever is asked; ``error_queries`` (substrings) make a job end in ERROR;
    ``hang_queries`` keep a job EXECUTING for ever.
    """

    def __init__(self, service, rows, *, gzip_answers=True, faults=None, stall_jobs=0,
                 executing_polls=1, error_queries=(), hang_queries=()):
        self.service = service
        self.rows = rows
        self.gzip_answers = gzip_answers
        self.faults = {step: list(items) for step, items in (faults or {}).items()}
        self.stall_jobs = stall_jobs
        self.executing_polls = executing_polls
        self.error_queries = error_queries
        self.hang_queries = hang_queries
        self.jobs = {}
        self.created = 0
        self.deleted = 0
        self.maxrecs = []
        self.overflows = 0
        self.faults_served = 0
        self._lock = threading.Lock()
        service.fallback = self.answer

    @property
    def orphans(self):
        return sorted(job for job, state in self.jobs.items() if not state["deleted"])

    def _fault(self, step):
        with self._lock:
            queue = self.faults.get(step)
            fault = queue.pop(0) if queue else None
            if fault:
                self.faults_served += 1
        if fault == "503":
            return Reply(b"Service Unavailable", status=503, content_type="text/plain")
        if fault == "429":
            return Reply(b"slow down", status=429, headers={"Retry-After": "0"})
        if fault == "html":
            return Reply(HTML_PAGE, content_type="text/html")
        if fault == "cut":
            body = votable_bytes(self.rows[:3])
            return Reply(body, content_type=VOTABLE, truncate_to=len(body) // 2)
        return None

    def _votable(self, request, query, maxrec):
        match = re.search(r"t\.brickid BETWEEN (\d+) AND (\d+)", query)
        rows = self.rows
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            rows = rows[(rows["brickid"] >= lo) & (rows["brickid"] <= hi)]
        status = "OK"
        if len(rows) > maxrec:
            rows, status = rows[:maxrec], "OVERFLOW"
            with self._lock:
                self.overflows += 1
        body = votable_bytes(rows, status)
        headers = {}
        if self.gzip_answers and "gzip" in request.headers.get("Accept-Encoding", ""):
            body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
        return Reply(body, content_type=VOTABLE, headers=headers)

    def answer(self, request):
        path = request.path
        if path == "/tap/sync":
            fault = self._fault("sync")
            if fault:
                return fault
            self.maxrecs.append(int(request.form["MAXREC"]))
            return self._votable(request, request.form["QUERY"], int(request.form["MAXREC"]))
        if path == "/tap/async" and request.method == "POST":
            fault = self._fault("create")
            if fault:
                return fault
            with self._lock:
                self.created += 1
                job = f"job{self.created:03d}"
                self.jobs[job] = {"query": request.form["QUERY"],
                                  "maxrec": int(request.form["MAXREC"]), "phase": "PENDING",
                                  "polls": 0, "deleted": False,
                                  "stalled": self.created <= self.stall_jobs}
            return Reply(b"", status=303,
                         headers={"Location": f"{self.service.url}/tap/async/{job}"})
        match = re.fullmatch(r"/tap/async/(job\d+)(/phase|/results/result|/error)?", path)
        if not match or match.group(1) not in self.jobs or self.jobs[match.group(1)]["deleted"]:
            return Reply(b"No such job", status=404, content_type="text/plain")
        job, tail = self.jobs[match.group(1)], match.group(2)
        if tail is None and (request.method == "DELETE"
                             or request.form.get("ACTION") == "DELETE"):
            fault = self._fault("delete")
            if fault:
                return fault
            job["deleted"] = True
            return Reply(b"", status=303, headers={"Location": f"{self.service.url}/tap/async"})
        if tail == "/phase" and request.method == "POST":
            fault = self._fault("run")
            if fault:
                return fault
            if not job["stalled"]:
                job["phase"] = "EXECUTING"
            return Reply(b"", status=303, headers={"Location": f"{self.service.url}{path}"})
        if tail == "/phase":
            fault = self._fault("phase")
            if fault:
                return fault
            if job["phase"] == "EXECUTING":
                job["polls"] += 1
                if any(q in job["query"] for q in self.error_queries):
                    job["phase"] = "ERROR"
                elif job["polls"] > self.executing_polls and not any(
                        q in job["query"] for q in self.hang_queries):
                    job["phase"] = "COMPLETED"
            return Reply(job["phase"].encode(), content_type="text/plain")
        if tail == "/error":
            return Reply(b"Query error: relation ls_dr9.tractr does not exist",
                         content_type="text/plain")
        if tail == "/results/result":
            fault = self._fault("result")
            if fault:
                return fault
            return self._votable(request, job["query"], job["maxrec"])
        return Reply(b"unexpected request", status=400, content_type="text/plain")


def make_source(tmp_path, **options):
    settings = dict(cache=False, cache_dir=tmp_path / "cache", max_retries=3,
                    backoff_factor=0.005, timeout=5.0, progress=False, poll_interval=0.005)
    settings.update(options)
    return DataLabTAP(**settings)


def run_query(service, source, **conf_values):
    settings = {"server": f"{service.url}/tap", "job_stall_time": 0.3, "job_restarts": 2}
    settings.update(conf_values)
    with conf.set_temp("server", settings.pop("server")), \
            conf.set_temp("job_stall_time", settings["job_stall_time"]), \
            conf.set_temp("job_restarts", settings["job_restarts"]):
        start = time.monotonic()
        return source.query(), time.monotonic() - start


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_overflow_is_split_until_every_row_is_back_gzip(fake_service, tmp_path, mode):
    rows = sky_rows(24, 4)  # 96 rows; MAXREC 30 overflows any range over 7 bricks
    tap = FakeTAP(fake_service, rows, gzip_answers=True)
    source = make_source(tmp_path, brickid_range=(1, 24), bricks_per_chunk=24, mode=mode,
                         maxrec=30, cache=True)
    result, seconds = run_query(fake_service, source)
    assert tap.overflows >= 3  # the chunk and its large halves were cut by the server ...
    assert sorted(result["ls_id"].tolist()) == rows["ls_id"].tolist()  # ... nothing was lost
    assert result["brickid"].tolist() == sorted(result["brickid"].tolist())  # brick order
    assert tap.orphans == [] and seconds < 20
    assert any("gzip" in r.headers.get("Accept-Encoding", "") for r in fake_service.requests)
    n_sent = len(fake_service.requests)
    again, _ = run_query(fake_service, make_source(
        tmp_path, brickid_range=(1, 24), bricks_per_chunk=24, mode=mode, maxrec=30, cache=True))
    assert len(fake_service.requests) == n_sent and len(again) == len(rows)  # whole chunk cached


def test_single_brick_over_maxrec_is_an_error_not_a_truncated_result(fake_service, tmp_path):
    FakeTAP(fake_service, sky_rows(2, 30))
    source = make_source(tmp_path, brickid_range=(1, 2), mode="sync", maxrec=20)
    with pytest.raises(RemoteServiceError, match="brick 1 alone holds more than maxrec=20"):
        run_query(fake_service, source)


def test_faults_at_every_step_of_the_uws_cycle(fake_service, tmp_path):
    rows = sky_rows(30, 3)
    faults = {"create": ["503", "html", "429"], "run": ["503", "html"],
              "phase": ["html", "503", "cut"], "result": ["503", "cut", "html"],
              "delete": ["503", "429", "html"]}
    tap = FakeTAP(fake_service, rows, faults=faults, stall_jobs=1, executing_polls=2)
    source = make_source(tmp_path, brickid_range=(1, 30), bricks_per_chunk=10, mode="async",
                         max_workers=2)
    result, seconds = run_query(fake_service, source)
    assert sorted(result["ls_id"].tolist()) == rows["ls_id"].tolist()
    assert tap.faults_served == sum(len(v) for v in faults.values())  # every fault was met
    assert tap.created == 4  # three chunks, one stalled job submitted again: no extra job
    assert tap.orphans == []
    assert seconds < 20


def test_stalled_jobs_end_in_bounded_time_and_are_deleted(fake_service, tmp_path):
    tap = FakeTAP(fake_service, sky_rows(4, 2), stall_jobs=100)
    source = make_source(tmp_path, brickid_range=(1, 4), mode="async")
    with pytest.raises(RemoteTimeoutError, match="did not start after 2 submissions"):
        run_query(fake_service, source, job_stall_time=0.2, job_restarts=1)
    assert tap.created == 2 and tap.orphans == []


def test_one_chunks_error_surfaces_at_once(fake_service, tmp_path):
    tap = FakeTAP(fake_service, sky_rows(20, 2), error_queries=("BETWEEN 1 AND 10",),
                  hang_queries=("BETWEEN 11 AND 20",))
    source = make_source(tmp_path, brickid_range=(1, 20), bricks_per_chunk=10, mode="async",
                         max_workers=2)
    start = time.monotonic()
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        with pytest.raises(RemoteServiceError,
                           match="ERROR: Query error: relation ls_dr9.tractr does not exist"):
            source.query()
    assert time.monotonic() - start < 5  # the hanging job (time-out 3600 s) did not hold it
    assert tap.created == 2 and tap.orphans == []


def test_service_reason_is_kept_whole(fake_service, tmp_path):
    reason = "Query error: " + "column t.flux_x does not exist; " * 20
    fake_service.route("/tap/sync", Reply(votable_bytes(Table(), "ERROR", reason),
                                          status=400, content_type=VOTABLE))
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        with pytest.raises(RemoteServiceError) as info:
            make_source(tmp_path, brickid_range=(1, 2), mode="sync").query()
    assert reason.strip() in str(info.value) and len(reason) > 600
    assert str(info.value).endswith("(the chunk of bricks 1-2, sync)")  # names the request


@pytest.mark.parametrize("body, match", [
    (b"<?xml version='1.0'?><VOTABLE><RESOURCE><TABLE><FIELD", "not a readable VOTable"),
    (b"just text", "not a readable VOTable"),
])
def test_unreadable_answers_are_remote_errors(fake_service, tmp_path, body, match):
    fake_service.route("/tap/sync", Reply(body, content_type=VOTABLE))
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        with pytest.raises(RemoteServiceError, match=match):
            make_source(tmp_path, brickid_range=(1, 2), mode="sync").query()


def test_result_without_the_selected_columns_is_an_error(fake_service, tmp_path):
    rows = sky_rows(2, 2)
    rows.remove_column("z_phot_std")
    fake_service.route("/tap/sync", Reply(votable_bytes(rows), content_type=VOTABLE))
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        with pytest.raises(RemoteServiceError, match=r"lacks the selected column\(s\) "
                                                     r"\['z_phot_std'\]"):
            make_source(tmp_path, brickid_range=(1, 2), mode="sync").query()


def test_overflow_info_after_the_table_is_not_taken_for_ok(fake_service, tmp_path):
    # OpenCADC-style answer: OK before the TABLE, OVERFLOW after it; here the server's own
    # row cap (5) is below MAXREC, so the row count alone cannot tell the answer was cut
    from gpm_astro_plugins.datalab.uws import parse_tap_votable

    rows = sky_rows(1, 5)
    body = votable_bytes(rows, "OVERFLOW")
    assert body.index(b'value="OK"') < body.index(b"<TABLE") < body.index(b'"OVERFLOW"')
    answer = parse_tap_votable(body, "http://tap/sync")
    assert answer.status == "OVERFLOW" and len(answer.table) == 5
    fake_service.route("/tap/sync", Reply(body, content_type=VOTABLE))
    with conf.set_temp("server", f"{fake_service.url}/tap"):
        with pytest.raises(RemoteServiceError, match="brick 1 alone holds more than maxrec"):
            make_source(tmp_path, brickid_range=(1, 1), mode="sync", maxrec=100).query()


def test_query_status_below_the_root_or_unknown_is_read(fake_service, tmp_path):
    from gpm_astro_plugins.datalab.uws import parse_tap_votable

    # an error document whose QUERY_STATUS sits below VOTABLE (pyvo's rootinfo.xml layout)
    root_error = (b'<?xml version="1.0" encoding="utf-8"?>\n'
                  b'<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
                  b' <INFO name="QUERY_STATUS" value="ERROR">syntax error at or near '
                  b'&quot;FORM&quot;</INFO>\n <RESOURCE type="results"/>\n</VOTABLE>\n')
    with pytest.raises(RemoteServiceError, match='refused the query: syntax error at or near '
                                                 '"FORM"'):
        parse_tap_votable(root_error, "http://tap/sync")
    odd = votable_bytes(sky_rows(1, 2), "PARTIAL")
    with pytest.raises(RemoteServiceError, match="QUERY_STATUS 'PARTIAL'"):
        parse_tap_votable(odd, "http://tap/sync")
