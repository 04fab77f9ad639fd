"""Data source ``datalab_tap``: Legacy Survey DR9 sources with photometric redshifts.

``ls_dr9.tractor`` joined on ``ls_id`` to ``ls_dr9.photo_z`` through the NOIRLab Astro Data
Lab TAP service (pyvo's `~pyvo.dal.TAPService`), one query per range of ``brickid``:
synchronous for small ranges, asynchronous UWS jobs for the millions of rows of a full type
selection. pyvo is handed a session whose every request goes through
`gpm_astro.remote.RemoteDataSource._request` (retries, time-outs); whole chunk results are
cached by their ADQL.

No user text reaches the ADQL unchecked: types must come from `TRACTOR_TYPES`, brick ids and
magnitudes must be numbers, column names must be plain identifiers of the two tables; anything
else is a `~gpm_astro.exceptions.ParameterError`.
"""

import http
import io
import numbers
import re
import time
import warnings

import numpy as np
import requests
from astropy import config as _config
from astropy.table import Table, vstack

from gpm_astro.exceptions import GPMAstroWarning, ParameterError, RemoteServiceError
from gpm_astro.remote import RemoteConf, RemoteDataSource, RemoteTimeoutError, request_key
from gpm_astro.tables import record_step, warn_empty

__all__ = ["Conf", "conf", "DataLabTAP", "TRACTOR_TYPES", "DEFAULT_COLUMNS", "build_adql"]

TRACTOR_TYPES = ("PSF", "REX", "EXP", "DEV", "SER", "DUP")
#: columns selected by default: tractor (t) then photo_z (p)
DEFAULT_COLUMNS = ("t.ls_id", "t.release", "t.brickid", "t.objid", "t.ra", "t.dec", "t.type",
                   "t.flux_g", "t.flux_r", "t.flux_z", "t.mag_g", "t.mag_r", "t.mag_z",
                   "p.z_phot_median", "p.z_phot_l68", "p.z_phot_u68", "p.z_phot_std")
#: DR9 brick ids run from 1 to 662174
DR9_BRICKID_RANGE = (1, 662174)
_IDENTIFIER = re.compile(r"^[tp]\.[a-z][a-z0-9_]{0,63}$")
_UNITS = {"ra": "deg", "dec": "deg", "flux_g": "nanomaggy", "flux_r": "nanomaggy",
          "flux_z": "nanomaggy", "mag_g": "mag", "mag_r": "mag", "mag_z": "mag"}


class Conf(RemoteConf):
    """Configuration of `DataLabTAP`."""

    server = _config.ConfigItem("https://datalab.noirlab.edu/tap",
                                "Base URL of the Data Lab TAP service.")
    timeout = _config.ConfigItem(300.0, "Seconds to wait for one HTTP exchange.")
    job_timeout = _config.ConfigItem(3600.0, "Seconds an asynchronous job may run.")
    poll_interval = _config.ConfigItem(2.0, "Seconds between two looks at a running job.")
    max_workers = _config.ConfigItem(2, "Chunks (queries or jobs) running at the same time.")
    sync_max_bricks = _config.ConfigItem(
        50, "mode='auto' uses synchronous queries when a chunk spans at most this many bricks.")


conf = Conf()


def _integer(value, name, low, high):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        msg = f"{name} must be an integer, got {value!r}"
        raise ParameterError(msg)
    if not low <= int(value) <= high:
        msg = f"{name} must be in [{low}, {high}], got {value!r}"
        raise ParameterError(msg)
    return int(value)


def _number(value, name, low, high):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or \
            not np.isfinite(value) or not low <= float(value) <= high:
        msg = f"{name} must be a finite number in [{low}, {high}], got {value!r}"
        raise ParameterError(msg)
    return float(value)


def _types(types):
    values = [types] if isinstance(types, str) else list(types)
    if not values:
        msg = f"types must name at least one of {TRACTOR_TYPES}, got {types!r}"
        raise ParameterError(msg)
    for value in values:
        if not isinstance(value, str) or value not in TRACTOR_TYPES:
            msg = f"types must be among {TRACTOR_TYPES} (upper case), got {value!r}"
            raise ParameterError(msg)
    return sorted(set(values))


def _columns(columns):
    values = list(columns)
    for value in values:
        if not isinstance(value, str) or not _IDENTIFIER.match(value):
            msg = (f"columns must be 't.<name>' (ls_dr9.tractor) or 'p.<name>' (ls_dr9.photo_z) "
                   f"with a plain lower-case name, got {value!r}")
            raise ParameterError(msg)
    if "t.ls_id" not in values:
        msg = f"columns must include 't.ls_id', got {values!r}"
        raise ParameterError(msg)
    return values


def build_adql(*, brickid_min=None, brickid_max=None, types=("EXP",), columns=DEFAULT_COLUMNS,
               mag_r_max=None, cone=None):
    """Return the ADQL of one chunk, after checking every value that goes into it.

    Parameters
    ----------
    brickid_min, brickid_max : int, optional
        Inclusive brick id range; both None: no condition on the brick.
    types : str or sequence of str
        Tractor types, from `TRACTOR_TYPES`.
    columns : sequence of str
        ``t.<name>`` / ``p.<name>`` identifiers.
    mag_r_max : float, optional
        Keep ``t.mag_r <= mag_r_max``.
    cone : (float, float, float), optional
        ``(ra, dec, radius)`` in degrees.

    Returns
    -------
    str

    Raises
    ------
    ParameterError
        For any value outside what it accepts (this is what stops ADQL injection).

    Examples
    --------
    >>> print(build_adql(brickid_min=10, brickid_max=20, columns=["t.ls_id", "t.ra"]))
    SELECT t.ls_id, t.ra FROM ls_dr9.tractor AS t JOIN ls_dr9.photo_z AS p ON t.ls_id = p.ls_id WHERE t.type IN ('EXP') AND t.brickid BETWEEN 10 AND 20
    """
    from pyvo.dal.tap import escape

    type_list = ", ".join(f"'{escape(t)}'" for t in _types(types))
    where = [f"t.type IN ({type_list})"]
    if brickid_min is not None or brickid_max is not None:
        lo = _integer(brickid_min, "brickid_min", 0, 10_000_000)
        hi = _integer(brickid_max, "brickid_max", lo, 10_000_000)
        where.append(f"t.brickid BETWEEN {lo} AND {hi}")
    if mag_r_max is not None:
        where.append(f"t.mag_r <= {_number(mag_r_max, 'mag_r_max', 0, 40)!r}")
    if cone is not None:
        try:
            ra, dec, radius = cone
        except (TypeError, ValueError):
            msg = f"cone must be (ra, dec, radius) in degrees, got {cone!r}"
            raise ParameterError(msg) from None
        ra = _number(ra, "cone ra", 0, 360)
        dec = _number(dec, "cone dec", -90, 90)
        radius = _number(radius, "cone radius", 0, 180)
        where.append(f"CONTAINS(POINT('ICRS', t.ra, t.dec), "
                     f"CIRCLE('ICRS', {ra!r}, {dec!r}, {radius!r})) = 1")
    return (f"SELECT {', '.join(_columns(columns))} FROM ls_dr9.tractor AS t "
            f"JOIN ls_dr9.photo_z AS p ON t.ls_id = p.ls_id WHERE {' AND '.join(where)}")


class _RoutedSession(requests.Session):
    """A session for pyvo whose requests all go through ``source._request``."""

    def __init__(self, source):
        super().__init__()
        self._source = source

    def request(self, method, url, params=None, data=None, headers=None, cookies=None,
                files=None, auth=None, timeout=None, allow_redirects=True, proxies=None,
                hooks=None, stream=None, verify=None, cert=None, json=None):
        from urllib3.response import HTTPResponse

        reply = self._source._request(method, url, params=params, data=data, cache=False,
                                      timeout=timeout, allow_redirects=allow_redirects)
        response = requests.Response()
        response.status_code = reply.status
        response.reason = http.HTTPStatus(reply.status).phrase
        response.url = reply.url
        response.headers = requests.structures.CaseInsensitiveDict(reply.headers)
        response._content = reply.content
        response.encoding = "utf-8"
        response.raw = HTTPResponse(body=io.BytesIO(reply.content), headers=reply.headers,
                                    status=reply.status, preload_content=False)
        response.request = requests.Request(method, url).prepare()
        return response


class DataLabTAP(RemoteDataSource):
    """Legacy Survey DR9 Tractor sources joined to their photo-z, from Data Lab's TAP.

    Parameters
    ----------
    types : str or sequence of str
        Tractor types to select (``"EXP"`` for the paper's application catalogue).
    brickid_range : (int, int), optional
        Inclusive range of brick ids to cover. None (default): all of DR9 in chunks, or, with
        a ``cone``, one query limited by the cone alone.
    bricks_per_chunk : int
        Bricks per query (and per asynchronous job).
    mag_r_max : float, optional
        Faint limit on ``mag_r``.
    cone : (float, float, float), optional
        ``(ra, dec, radius)`` in degrees.
    columns : sequence of str
        ``t.<name>`` / ``p.<name>`` columns to select; ``t.type`` comes back as ``source_type``.
    mode : {"auto", "sync", "async"}
        ``auto``: synchronous when a chunk spans at most ``conf.sync_max_bricks`` bricks.
    poll_interval : float, optional
        Seconds between looks at a running job; default ``conf.poll_interval``.
    progress : bool
        Progress bar over the chunks.
    cache, cache_dir, timeout, max_retries, backoff_factor, max_workers
        See `gpm_astro.remote.RemoteDataSource`.

    Examples
    --------
    >>> source = DataLabTAP(types="EXP", brickid_range=(1000, 1999), bricks_per_chunk=500)
    >>> payload = source.query(get_query_payload=True)
    >>> len(payload), payload[0]["mode"]
    (2, 'async')
    >>> DataLabTAP(types="EXP' OR 1=1 --").query(get_query_payload=True)
    Traceback (most recent call last):
    ...
    gpm_astro.exceptions.ParameterError: types must be among ('PSF', 'REX', 'EXP', 'DEV', 'SER', 'DUP') (upper case), got "EXP' OR 1=1 --"
    """

    name = "datalab_tap"
    provides = ("catalog",)
    conf = conf

    def __init__(self, *, types=("EXP",), brickid_range=None,
                 bricks_per_chunk=5000, mag_r_max=None, cone=None, columns=DEFAULT_COLUMNS,
                 mode="auto", poll_interval=None, progress=True, cache=True, cache_dir=None,
                 timeout=None, max_retries=None, backoff_factor=None, max_workers=None):
        super().__init__(cache=cache, cache_dir=cache_dir, timeout=timeout,
                         max_retries=max_retries, backoff_factor=backoff_factor,
                         max_workers=max_workers)
        self.types = types
        self.brickid_range = brickid_range
        self.bricks_per_chunk = bricks_per_chunk
        self.mag_r_max = mag_r_max
        self.cone = cone
        self.columns = columns
        self.mode = mode
        self.poll_interval = poll_interval
        self.progress = progress

    def _chunks(self):
        if self.brickid_range is None and self.cone is not None:
            return [(None, None)]
        try:
            lo, hi = DR9_BRICKID_RANGE if self.brickid_range is None else self.brickid_range
        except (TypeError, ValueError):
            msg = f"brickid_range must be (min, max), got {self.brickid_range!r}"
            raise ParameterError(msg) from None
        lo = _integer(lo, "brickid_range min", 0, 10_000_000)
        hi = _integer(hi, "brickid_range max", lo, 10_000_000)
        step = _integer(self.bricks_per_chunk, "bricks_per_chunk", 1, 10_000_000)
        return [(a, min(a + step - 1, hi)) for a in range(lo, hi + 1, step)]

    def _mode_for(self, lo, hi):
        if self.mode not in ("auto", "sync", "async"):
            msg = f"mode must be 'auto', 'sync' or 'async', got {self.mode!r}"
            raise ParameterError(msg)
        if self.mode != "auto":
            return self.mode
        if lo is None:  # a cone over the whole survey: size unknown in advance
            return "async"
        return "sync" if hi - lo + 1 <= int(self.conf.sync_max_bricks) else "async"

    def _plan(self):
        """[(adql, mode)] for every chunk; validates everything first."""
        plan = []
        for lo, hi in self._chunks():
            adql = build_adql(brickid_min=lo, brickid_max=hi, types=self.types,
                              columns=self.columns, mag_r_max=self.mag_r_max, cone=self.cone)
            plan.append((adql, self._mode_for(lo, hi)))
        return plan

    def _service(self):
        import pyvo

        return pyvo.dal.TAPService(self.server, session=_RoutedSession(self))

    def _run(self, adql, mode):
        """Run one chunk; return its astropy Table (from the cache when possible)."""
        key = request_key("TAP", self.server, {"QUERY": adql, "LANG": "ADQL"})
        if self.cache:
            cached = self._cache_load(key)
            if cached is not None:
                return Table.read(io.BytesIO(cached.content), format="votable")
        import pyvo

        service = self._service()
        try:
            if mode == "sync":
                table = service.run_sync(adql).to_table()
            else:
                table = self._run_async(service, adql)
        except pyvo.dal.DALQueryError as exc:
            msg = f"Data Lab TAP refused the query: {exc}"
            raise RemoteServiceError(msg) from exc
        except pyvo.dal.DALServiceError as exc:
            msg = f"Data Lab TAP failed: {exc}"
            raise RemoteServiceError(msg) from exc
        if self.cache:
            from gpm_astro.remote import RemoteResponse

            buffer = io.BytesIO()
            table.write(buffer, format="votable")
            self._cache_store(key, RemoteResponse(f"{self.server}#{key}", 200, {},
                                                  buffer.getvalue()))
        return table

    def _run_async(self, service, adql):
        poll = float(self._setting("poll_interval"))
        limit = float(self.conf.job_timeout)
        job = service.submit_job(adql)
        try:
            job.run()
            started = time.monotonic()
            while True:
                phase = job.phase
                if phase in ("COMPLETED", "ERROR", "ABORTED"):
                    break
                if time.monotonic() - started > limit:
                    job.abort()
                    msg = f"Data Lab TAP job {job.job_id} still {phase} after {limit} s"
                    raise RemoteTimeoutError(msg)
                time.sleep(poll)
            job.raise_if_error()
            if phase != "COMPLETED":
                msg = f"Data Lab TAP job {job.job_id} ended {phase}"
                raise RemoteServiceError(msg)
            return job.fetch_result().to_table()
        finally:
            try:
                job.delete()
            except Exception as exc:  # a job left behind expires on the server; result stands
                warnings.warn(f"could not delete Data Lab TAP job {job.url}: {exc}",
                              GPMAstroWarning, stacklevel=2)

    def iter_query(self, *, chunk_size=None, get_query_payload=False):
        """Yield one Table per brick-id chunk, in brick order (``chunk_size`` is set by
        ``bricks_per_chunk``; passing another value is an error). Up to ``max_workers`` chunks
        run at the same time."""
        if chunk_size is not None:
            msg = f"datalab_tap chunks by bricks_per_chunk; chunk_size must be None, got " \
                  f"{chunk_size!r}"
            raise ParameterError(msg)
        plan = self._plan()
        if get_query_payload:
            yield [{"method": "POST", "url": f"{self.server}/{mode}", "mode": mode,
                    "data": {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql}}
                   for adql, mode in plan]
            return
        # up to max_workers jobs run at once; chunks are yielded in brick order
        finished, next_index = {}, 0
        for index, table, error in self._map_concurrent(
                lambda step: self._run(*step), plan, desc="datalab_tap",
                progress=self.progress, total=len(plan)):
            if error is not None:
                raise error
            finished[index] = table
            while next_index in finished:
                yield _tidy(finished.pop(next_index))
                next_index += 1

    def query(self, *, get_query_payload=False):
        """Run every chunk and return one Table.

        Parameters
        ----------
        get_query_payload : bool
            Return the list of queries (url, mode, ADQL) instead of sending them.

        Returns
        -------
        astropy.table.Table or list of dict
            The selected columns; ``type`` renamed ``source_type`` (str), units on ra/dec
            (deg), fluxes (nanomaggy) and magnitudes (mag). z_phot values of -99 are kept
            as the catalogue has them (undefined).

        Raises
        ------
        ParameterError
            An invalid selection value (nothing is sent).
        RemoteServiceError
            The service refused a query or failed after every retry.
        """
        chunks = list(self.iter_query(get_query_payload=get_query_payload))
        if get_query_payload:
            return chunks[0]
        chunks = [c for c in chunks if len(c)]
        if chunks:
            result = vstack(chunks, metadata_conflicts="silent")
        else:
            warn_empty("datalab_tap")
            result = Table(names=[c.split(".")[1] for c in self.columns])
            result = _tidy(result)
        result.meta = {}
        record_step(result, "datalab_tap", server=self.server, types=_types(self.types),
                    brickid_range=(None if self.brickid_range is None
                                   else list(self.brickid_range)),
                    bricks_per_chunk=self.bricks_per_chunk, mag_r_max=self.mag_r_max,
                    cone=None if self.cone is None else list(self.cone), n_rows=len(result))
        return result


def _tidy(table):
    table = Table(table, copy=False)
    table.meta = {}
    if "type" in table.colnames:
        table.rename_column("type", "source_type")
        table["source_type"] = np.char.strip(np.asarray(table["source_type"], dtype=str))
        table["source_type"].description = "Tractor morphological type"
    for name, unit in _UNITS.items():
        if name in table.colnames:
            table[name].unit = unit
    return table
