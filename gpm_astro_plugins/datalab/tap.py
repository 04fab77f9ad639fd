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

import copy
import io
import numbers
import re
import threading
import warnings

import astropy.units as u
import numpy as np
from astropy import config as _config
from astropy.io.votable.exceptions import VOWarning
from astropy.table import Table, vstack

from gpm_astro.exceptions import ParameterError, RemoteServiceError
from gpm_astro.remote import RemoteConf, RemoteDataSource, request_key
from gpm_astro.tables import record_step, warn_empty

from . import uws

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
    maxrec = _config.ConfigItem(
        100_000, "MAXREC sent with every query; a chunk whose answer overflows it is split in "
                 "two brick ranges and asked again, so no result is ever truncated.")
    job_stall_time = _config.ConfigItem(
        300.0, "Seconds an asynchronous job may stay PENDING / QUEUED before it is deleted and "
               "submitted again.")
    job_restarts = _config.ConfigItem(
        2, "How many times a stalled (or vanished) asynchronous job is submitted again.")


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
    # bytes (as FITS and HDF5 tables hold the Tractor type, b"EXP ") read as text
    values = [types] if isinstance(types, (str, bytes)) else list(types)
    values = [value.decode("ascii", "replace") if isinstance(value, bytes) else value
              for value in values]
    values = [value.strip() if isinstance(value, str) else value for value in values]
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
    maxrec : int, optional
        Rows asked for per query (TAP ``MAXREC``); default ``conf.maxrec``. An answer that
        overflows it (``QUERY_STATUS=OVERFLOW``) is never kept: its brick range is split in
        two and each half asked again, down to single bricks.
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
                 mode="auto", poll_interval=None, maxrec=None, progress=True, cache=True,
                 cache_dir=None, timeout=None, max_retries=None, backoff_factor=None,
                 max_workers=None):
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
        self.maxrec = maxrec
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
            plan.append((lo, hi, adql, self._mode_for(lo, hi)))
        self._limits()
        return plan

    def _limits(self):
        maxrec = self.conf.maxrec if self.maxrec is None else self.maxrec
        if isinstance(maxrec, bool) or not isinstance(maxrec, numbers.Integral) or maxrec < 1:
            msg = f"maxrec must be a positive integer, got {maxrec!r}"
            raise ParameterError(msg)
        return int(maxrec)

    def _run(self, lo, hi, mode, cancel=None):
        """Run one chunk, splitting any brick range whose answer overflows ``maxrec``; return
        its astropy Table (from the cache when possible)."""
        maxrec = self._limits()
        adql = build_adql(brickid_min=lo, brickid_max=hi, types=self.types,
                          columns=self.columns, mag_r_max=self.mag_r_max, cone=self.cone)
        key = request_key("TAP", self.server, {"QUERY": adql, "LANG": "ADQL",
                                                "MAXREC": maxrec})
        if self.cache:
            cached = self._cache_load(key)
            if cached is not None:
                return Table.read(io.BytesIO(cached.content), format="votable")
        pieces, todo = [], [(lo, hi)]
        while todo:
            a, b = todo.pop(0)
            answer = self._run_one(a, b, mode, maxrec, cancel)
            # a full page with status OK is not trusted either, unless it cannot be split
            if answer.status == "OVERFLOW" or (len(answer.table) >= maxrec and a != b):
                todo[:0] = self._split(a, b, maxrec)
                continue
            pieces.append(self._checked(answer.table))
        table = pieces[0] if len(pieces) == 1 else vstack(pieces, metadata_conflicts="silent")
        if self.cache:
            from gpm_astro.remote import RemoteResponse

            buffer = io.BytesIO()
            with warnings.catch_warnings():  # the cache's own copy: nanomaggy is no VOUnit,
                # but the unit reads back (as nmgy); astropy's notes about it are noise here
                warnings.simplefilter("ignore", u.UnitsWarning)
                warnings.simplefilter("ignore", VOWarning)
                table.write(buffer, format="votable")
            self._cache_store(key, RemoteResponse(f"{self.server}#{key}", 200, {},
                                                  buffer.getvalue()))
        return table

    @staticmethod
    def _split(lo, hi, maxrec):
        """The two halves of an overflowing brick range (a cone alone: all of DR9)."""
        if lo is None:
            lo, hi = DR9_BRICKID_RANGE
            return [(lo, hi)]
        if lo == hi:
            msg = (f"brick {lo} alone holds more than maxrec={maxrec} rows of this selection; "
                   f"raise maxrec (conf.maxrec) rather than accept a truncated result")
            raise RemoteServiceError(msg)
        middle = (lo + hi) // 2
        return [(lo, middle), (middle + 1, hi)]

    def _run_one(self, lo, hi, mode, maxrec, cancel):
        """One query of one brick range; a `~gpm_astro_plugins.datalab.uws.TAPAnswer`."""
        adql = build_adql(brickid_min=lo, brickid_max=hi, types=self.types,
                          columns=self.columns, mag_r_max=self.mag_r_max, cone=self.cone)
        if cancel is not None and cancel.is_set():
            msg = "Data Lab TAP chunk abandoned: another chunk failed"
            raise RemoteServiceError(msg)
        mode = self._mode_for(lo, hi) if self.mode == "auto" else mode
        try:
            if mode == "sync":
                return uws.run_sync(self, adql, maxrec)
            return uws.run_async(
                self, adql, maxrec, poll_interval=float(self._setting("poll_interval")),
                job_timeout=float(self.conf.job_timeout),
                stall_time=float(self.conf.job_stall_time),
                max_restarts=int(self.conf.job_restarts), cancel=cancel)
        except RemoteServiceError as exc:  # name the chunk; same class, status and body
            what = "the cone query" if lo is None else f"the chunk of bricks {lo}-{hi}"
            named = copy.copy(exc)
            named.args = (f"{exc} ({what}, {mode})",)
            raise named from exc

    def _checked(self, table):
        """The table with every selected column, named as selected; else an error."""
        wanted = [c.split(".", 1)[1] for c in self.columns]
        lower = {}
        for name in table.colnames:
            lower.setdefault(name.lower(), []).append(name)
        missing = [w for w in wanted if w.lower() not in lower]
        if missing:
            msg = (f"Data Lab TAP answer lacks the selected column(s) {missing}; it has "
                   f"{table.colnames}")
            raise RemoteServiceError(msg)
        for name in wanted:
            found = lower[name.lower()]
            if len(found) > 1:
                msg = f"Data Lab TAP answer has columns {found} that differ only in case"
                raise RemoteServiceError(msg)
            if found[0] != name:
                table.rename_column(found[0], name)
        return table[wanted]

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
            maxrec = self._limits()
            yield [{"method": "POST", "url": f"{self.server}/{mode}", "mode": mode,
                    "data": {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql,
                             "MAXREC": maxrec}}
                   for _, _, adql, mode in plan]
            return
        # up to max_workers chunks run at once; chunks are yielded in brick order. The first
        # error stops the others at once (``cancel``): their jobs are deleted, nothing waits.
        cancel = threading.Event()
        results = self._map_concurrent(
            lambda step: self._run(step[0], step[1], step[3], cancel), plan,
            desc="datalab_tap", progress=self.progress, total=len(plan))
        finished, next_index = {}, 0
        try:
            for index, table, error in results:
                if error is not None:
                    raise _as_remote_error(error)
                finished[index] = table
                while next_index in finished:
                    yield _tidy(finished.pop(next_index))
                    next_index += 1
        finally:
            cancel.set()
            results.close()

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


def _as_remote_error(error):
    """Any exception out of a chunk as the package's error: RemoteServiceError (and
    ParameterError) pass through; anything else (pyvo, astropy, urllib3, ValueError ...) is
    wrapped with its message whole."""
    if isinstance(error, (RemoteServiceError, ParameterError)):
        return error
    msg = f"Data Lab TAP failed: {type(error).__name__}: {error}"
    wrapped = RemoteServiceError(msg)
    wrapped.__cause__ = error
    return wrapped


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
