"""The TAP exchanges of ``datalab_tap``: one synchronous query, or one asynchronous UWS job.

Every HTTP request goes through `gpm_astro.remote.RemoteDataSource._request`, so each step of
the UWS cycle (create, run, poll, fetch, delete) is retried like any other request: time-outs,
dropped connections, HTTP 429 / 5xx, and HTML error pages (proxies and overloaded servers send
them with status 200). Redirects are not followed when a job is created or deleted, so a
retried step never creates a second job behind the first one's back.

A job that was created is always deleted, whatever happens afterwards. A job that stays
``PENDING`` / ``QUEUED`` longer than the stall time is deleted and submitted again (a bounded
number of times); a job still running after the job time-out is deleted and the chunk fails.
A ``threading.Event`` handed in by the caller stops the wait at once (another chunk failed).

The VOTable answer is read with astropy: its ``QUERY_STATUS`` (``OK``, ``OVERFLOW`` or
``ERROR``, TAP 1.1 §2.9) is returned with the table, so the caller can split an overflowing
chunk instead of keeping a truncated one.
"""

import io
import time
import warnings

from gpm_astro.exceptions import RemoteServiceError
from gpm_astro.remote import (
    HTTPStatusError,
    MalformedResponseError,
    RemoteTimeoutError,
    TransientResponseError,
)

__all__ = ["TAPAnswer", "run_sync", "run_async", "parse_tap_votable", "UWS_PHASES"]

UWS_PHASES = frozenset({"PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR", "ABORTED",
                        "UNKNOWN", "HELD", "SUSPENDED", "ARCHIVED"})
_WAITING = frozenset({"PENDING", "QUEUED", "HELD", "SUSPENDED"})
_FINAL = frozenset({"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"})


class JobStalled(RemoteServiceError):
    """A job did not start within the stall time, or vanished from the server."""


class TAPAnswer:
    """A parsed TAP result: ``status`` (``"OK"`` or ``"OVERFLOW"``) and ``table``."""

    __slots__ = ("status", "table")

    def __init__(self, status, table):
        self.status = status
        self.table = table


def _looks_like_html(content):
    head = content[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def parse_tap_votable(content, url):
    """Read a TAP VOTable answer; return a `TAPAnswer`.

    Raises
    ------
    TransientResponseError
        An HTML page instead of a VOTable.
    RemoteServiceError
        ``QUERY_STATUS`` is ``ERROR`` (the service's message whole), or the body is not a
        readable VOTable (the parser's reason).
    """
    from astropy.io.votable import parse

    if _looks_like_html(content):
        text = content.decode("utf-8", errors="replace")
        msg = f"Data Lab TAP answered {url} with an HTML page instead of a VOTable: {text!r}"
        raise TransientResponseError(msg)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's VOTable spec warnings (W01 ...)
            votable = parse(io.BytesIO(content), verify="ignore")
            resource = _results_resource(votable)
            status, message = _query_status(votable, resource)
            if status == "ERROR":
                msg = f"Data Lab TAP refused the query: {message}"
                raise RemoteServiceError(msg)
            if not resource.tables:
                msg = f"Data Lab TAP answer from {url} holds no table (QUERY_STATUS {status})"
                raise RemoteServiceError(msg)
            table = resource.tables[0].to_table(use_names_over_ids=True)
    except RemoteServiceError:
        raise
    except Exception as exc:  # astropy's parser: ValueError, ExpatError, VOTableSpecError ...
        text = content[:1000].decode("utf-8", errors="replace")
        msg = (f"Data Lab TAP answer from {url} is not a readable VOTable "
               f"({type(exc).__name__}: {exc}); it begins {text!r}")
        raise MalformedResponseError(msg) from exc
    return TAPAnswer(status, table)


def _results_resource(votable):
    resources = list(votable.resources)
    for resource in resources:
        if resource.type == "results":
            return resource
    if not resources:
        msg = "the VOTable has no RESOURCE"
        raise ValueError(msg)
    return resources[0]


def _query_status(votable, resource):
    """(status, message) of QUERY_STATUS, from every INFO of that name in the results
    RESOURCE (before or after its TABLE), inside its tables, or below the root.

    DALI puts ``QUERY_STATUS=OK`` before the TABLE and, when the answer was cut at MAXREC, a
    second ``QUERY_STATUS=OVERFLOW`` after it (pyvo reads the last one for that reason), so
    any ERROR wins, then any OVERFLOW; a status TAP does not define is an error.
    """
    infos = list(resource.infos)
    for table in resource.tables:
        infos.extend(getattr(table, "infos", []))
    infos.extend(votable.infos)
    found = []
    for info in infos:
        if str(info.name).strip().upper() == "QUERY_STATUS":
            status = str(info.value).strip().upper()
            message = (info.content or "").strip() if hasattr(info, "content") else ""
            found.append((status, message or str(info.value)))
    for wanted in ("ERROR", "OVERFLOW", "OK"):
        for status, message in found:
            if status == wanted:
                return status, message
    if found:
        msg = f"QUERY_STATUS {found[0][0]!r} is none of OK, OVERFLOW, ERROR"
        raise ValueError(msg)
    return "OK", ""


def _tap_error(exc, url):
    """A RemoteServiceError carrying the TAP service's own reason for an HTTP error."""
    content = getattr(exc, "content", None) or b""
    if content.lstrip().startswith((b"<?xml", b"<VOTABLE")):
        try:
            parse_tap_votable(content, url)
        except RemoteServiceError as reason:
            msg = f"{reason} (HTTP {exc.status})"
            return RemoteServiceError(msg)
    return exc


def _query_form(adql, maxrec):
    return {"REQUEST": "doQuery", "LANG": "ADQL", "FORMAT": "votable", "QUERY": adql,
            "MAXREC": str(int(maxrec))}


def _answer_validator(url, into):
    def validate(response):
        into.append(parse_tap_votable(response.content, url))
    return validate


def run_sync(source, adql, maxrec):
    """One synchronous query (``POST {server}/sync``); return a `TAPAnswer`."""
    url = f"{source.server}/sync"
    parsed = []
    try:
        source._request("POST", url, data=_query_form(adql, maxrec), cache=False,
                        validate=_answer_validator(url, parsed))
    except HTTPStatusError as exc:
        raise _tap_error(exc, url) from exc
    return parsed[-1]


def run_async(source, adql, maxrec, *, poll_interval, job_timeout, stall_time, max_restarts,
              cancel):
    """One asynchronous query as a UWS job; return a `TAPAnswer`.

    The job is submitted, started, polled every ``poll_interval`` s, read and deleted. A job
    still waiting to start after ``stall_time`` s (or gone from the server) is deleted and
    submitted again, at most ``max_restarts`` times.

    Raises
    ------
    RemoteTimeoutError
        The job ran longer than ``job_timeout`` s, or never started.
    RemoteServiceError
        The job ended in ERROR (with the service's message) or ABORTED, a step failed after
        every retry, or ``cancel`` was set.
    """
    for attempt in range(max_restarts + 1):
        job_url = _create_job(source, adql, maxrec)
        try:
            return _drive_job(source, job_url, poll_interval=poll_interval,
                              job_timeout=job_timeout, stall_time=stall_time, cancel=cancel)
        except JobStalled as exc:
            if attempt == max_restarts:
                msg = (f"Data Lab TAP job did not start after {max_restarts + 1} submissions "
                       f"(last: {exc})")
                raise RemoteTimeoutError(msg) from exc
        finally:
            _delete_job(source, job_url)
    raise AssertionError("unreachable")  # the loop returns or raises


def _create_job(source, adql, maxrec):
    url = f"{source.server}/async"

    def validate(response):
        if response.headers.get("location") and response.status in (201, 202, 302, 303):
            return
        if _looks_like_html(response.content) or not response.content.strip():
            msg = (f"creating a Data Lab TAP job answered HTTP {response.status} without a "
                   f"job location: {response.text!r}")
            raise TransientResponseError(msg)
        msg = (f"creating a Data Lab TAP job answered HTTP {response.status} without a job "
               f"location: {response.text!r}")
        raise MalformedResponseError(msg)

    try:
        reply = source._request("POST", url, data=_query_form(adql, maxrec), cache=False,
                                allow_redirects=False, validate=validate)
    except HTTPStatusError as exc:
        raise _tap_error(exc, url) from exc
    location = reply.headers["location"]
    if not location.startswith(("http://", "https://")):
        from urllib.parse import urljoin

        location = urljoin(url + "/", location)
    return location.rstrip("/")


def _no_html(response):
    if _looks_like_html(response.content):
        msg = f"{response.url} answered with an HTML page: {response.text!r}"
        raise TransientResponseError(msg)


def _phase(source, job_url):
    def validate(response):
        if response.text.strip().upper() not in UWS_PHASES:
            msg = f"the phase of {job_url} is not a UWS phase: {response.text!r}"
            raise TransientResponseError(msg)

    try:
        reply = source._request("GET", f"{job_url}/phase", cache=False, validate=validate)
    except HTTPStatusError as exc:
        if exc.status == 404:
            msg = f"Data Lab TAP job {job_url} is gone from the server"
            raise JobStalled(msg) from exc
        raise
    return reply.text.strip().upper()


def _drive_job(source, job_url, *, poll_interval, job_timeout, stall_time, cancel):
    source._request("POST", f"{job_url}/phase", data={"PHASE": "RUN"}, cache=False,
                    allow_redirects=False, validate=_no_html)
    started = time.monotonic()
    while True:
        if cancel is not None and cancel.is_set():
            msg = f"Data Lab TAP job {job_url} abandoned: another chunk failed"
            raise RemoteServiceError(msg)
        phase = _phase(source, job_url)
        waited = time.monotonic() - started
        if phase in _FINAL:
            break
        if phase in _WAITING and waited > stall_time:
            msg = f"job {job_url} still {phase} after {waited:.1f} s"
            raise JobStalled(msg)
        if waited > job_timeout:
            msg = f"Data Lab TAP job {job_url} still {phase} after {job_timeout} s"
            raise RemoteTimeoutError(msg)
        if cancel is not None:
            cancel.wait(poll_interval)
        else:
            time.sleep(poll_interval)
    if phase == "ERROR":
        msg = f"Data Lab TAP job {job_url} ended in ERROR: {_job_error(source, job_url)}"
        raise RemoteServiceError(msg)
    if phase != "COMPLETED":
        msg = f"Data Lab TAP job {job_url} ended {phase}"
        raise RemoteServiceError(msg)
    url = f"{job_url}/results/result"
    parsed = []
    try:
        source._request("GET", url, cache=False, validate=_answer_validator(url, parsed))
    except HTTPStatusError as exc:
        raise _tap_error(exc, url) from exc
    return parsed[-1]


def _job_error(source, job_url):
    """The job's error message: the error document, else the job's errorSummary."""
    try:
        reply = source._request("GET", f"{job_url}/error", cache=False)
        if reply.content.lstrip().startswith((b"<?xml", b"<VOTABLE")):
            try:
                parse_tap_votable(reply.content, job_url)
            except RemoteServiceError as exc:
                return str(exc).removeprefix("Data Lab TAP refused the query: ")
        if reply.text.strip() and not _looks_like_html(reply.content):
            return reply.text.strip()
    except RemoteServiceError:
        pass
    try:
        from pyvo.io.uws import parse_job

        reply = source._request("GET", job_url, cache=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = parse_job(io.BytesIO(reply.content)).errorsummary
        if summary is not None and summary.message is not None:
            return str(summary.message.content).strip()
    except Exception as exc:  # the job document itself is unreadable: say so
        return f"(no error message readable: {type(exc).__name__}: {exc})"
    return "(the service gave no message)"


def _delete_job(source, job_url):
    """Delete a job (UWS ``DELETE``), retried; a job already gone counts as deleted."""
    from gpm_astro.exceptions import GPMAstroWarning

    try:
        source._request("DELETE", job_url, cache=False, allow_redirects=False,
                        validate=_no_html)
    except HTTPStatusError as exc:
        if exc.status in (404, 410):
            return
        warnings.warn(f"could not delete Data Lab TAP job {job_url}: {exc}", GPMAstroWarning,
                      stacklevel=3)
    except RemoteServiceError as exc:
        warnings.warn(f"could not delete Data Lab TAP job {job_url}: {exc}", GPMAstroWarning,
                      stacklevel=3)
