"""Data source ``sdss_mpajhu``: the SDSS DR8 MPA-JHU label catalogue from SkyServer.

The SQL goes through ``astroquery.sdss.SDSS.query_sql(sql, data_release=8)``, with the
astroquery client's transport replaced so that every byte travels through
`gpm_astro.remote.RemoteDataSource._request` (retries, cache, rate limit). SkyServer allows
500,000 rows and 600 s per query and 60 queries a minute, so the catalogue is read in
specObjID ranges (one range = a run of plates, since specObjID = plate << 50 | ...), each well
under the row limit, at most one query a second.

Nothing is filtered on the server: `gpm_astro.select_starforming` applies the cuts locally and
reports how many rows each one removed.
"""

import copy
import numbers
import re
import warnings

import numpy as np
from astropy import config as _config
from astropy.table import MaskedColumn, Table, vstack

from gpm_astro.exceptions import ParameterError, RemoteServiceError
from gpm_astro.remote import RemoteConf, RemoteDataSource
from gpm_astro.tables import record_step, warn_empty

__all__ = ["Conf", "conf", "SDSSMPAJHU", "LABEL_COLUMNS", "mpajhu_sql", "range_sql",
           "extra_column_map"]

#: output column -> SkyServer expression (tables: galSpecInfo i, galSpecExtra e, SpecObjAll s)
LABEL_COLUMNS = {
    "specobjid": "i.specObjID",
    "ra": "i.ra",
    "dec": "i.dec",
    "spectrotype": "i.spectrotype",
    "z": "i.z",
    "z_warning": "i.z_warning",
    "reliable": "i.reliable",
    "sn_median": "i.sn_median",
    "snmedian_r": "s.snMedian_r",
    "bptclass": "e.bptclass",
    "oh_p2p5": "e.oh_p2p5",
    "oh_p16": "e.oh_p16",
    "oh_p50": "e.oh_p50",
    "oh_p84": "e.oh_p84",
    "oh_p97p5": "e.oh_p97p5",
    "lgm_tot_p50": "e.lgm_tot_p50",
    "lgm_fib_p50": "e.lgm_fib_p50",
    "sfr_tot_p50": "e.sfr_tot_p50",
    "specsfr_tot_p50": "e.specsfr_tot_p50",
}
_UNITS = {"ra": "deg", "dec": "deg", "oh_p2p5": "dex", "oh_p16": "dex", "oh_p50": "dex",
          "oh_p84": "dex", "oh_p97p5": "dex"}
_DESCRIPTIONS = {
    "specobjid": "SDSS spectrum id", "sn_median": "median S/N per pixel of the whole spectrum",
    "snmedian_r": "median S/N per pixel in the r band (SpecObjAll.snMedian_r)",
    "bptclass": "BPT class: -1 unclassifiable, 1 SF, 2 low-S/N SF, 3 composite, 4 AGN, "
                "5 low-S/N LINER",
    "oh_p50": "12 + log(O/H), median of the likelihood", "lgm_tot_p50": "log10(M*/Msun), total",
    "lgm_fib_p50": "log10(M*/Msun) in the fibre", "sfr_tot_p50": "log10(SFR / (Msun/yr))",
    "specsfr_tot_p50": "log10(SFR/M* / (1/yr))"}
_INT_COLUMNS = ("z_warning", "reliable", "bptclass")
_EXTRA_EXPRESSION = re.compile(r"^[ies]\.[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: what SkyServer writes when the SQL itself is wrong (asking again cannot help)
_SQL_ERROR_MARKERS = ("error_message", "incorrect syntax", "invalid column name",
                      "invalid object name", "sql returned the following error",
                      "is not a recognized", "could not be bound", "conversion failed",
                      "ambiguous column name")
SPECOBJID_MAX = 2 ** 64 - 1
#: rows SkyServer's SQL Search returns at most (DR8 help, "Query Limits"); it cuts the answer
#: there without saying so, so a chunk that reaches it cannot be trusted
ROW_LIMIT = 500_000
#: a CSV header line: column names separated by commas
_CSV_HEADER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*$")
PLATE_SHIFT = 50  # specObjID = plate << 50 | fiber << 38 | (mjd - 50000) << 24 | run2d << 10


class Conf(RemoteConf):
    """Configuration of `SDSSMPAJHU`."""

    server = _config.ConfigItem("https://skyserver.sdss.org",
                                "SkyServer base URL (astroquery's skyserver_baseurl).")
    timeout = _config.ConfigItem(600.0, "Seconds per query (SkyServer stops a query at 600 s).")
    min_interval = _config.ConfigItem(
        1.0, "Seconds between queries (SkyServer allows 60 queries a minute).")
    max_workers = _config.ConfigItem(1, "Queries at a time (SkyServer is rate limited).")


conf = Conf()


def extra_column_map(extra_columns):
    """Check ``extra_columns``; return ``{alias: expression}``.

    Parameters
    ----------
    extra_columns : sequence of str or dict, optional
        Columns of galSpecInfo (``i.``), galSpecExtra (``e.``) or SpecObjAll (``s.``) wanted
        beyond `LABEL_COLUMNS`, e.g. ``["e.d4000_n", "s.plate"]`` (each named after its
        column, as written) or ``{"plate_id": "s.plate"}`` (named by the key).

    Raises
    ------
    ParameterError
        Not a plain ``<i|e|s>.<name>`` identifier (this stops SQL injection), an alias that is
        not an identifier, or a name already taken by `LABEL_COLUMNS` or another extra.

    Examples
    --------
    >>> extra_column_map(["e.d4000_n", "s.plate"])
    {'d4000_n': 'e.d4000_n', 'plate': 's.plate'}
    """
    if extra_columns is None:
        return {}
    if isinstance(extra_columns, str):
        extra_columns = [extra_columns]
    if isinstance(extra_columns, dict):
        pairs = list(extra_columns.items())
    else:
        try:
            pairs = [(None, expr) for expr in extra_columns]
        except TypeError:
            msg = (f"extra_columns must be a sequence of '<i|e|s>.<column>' or a dict "
                   f"alias -> column, got {extra_columns!r}")
            raise ParameterError(msg) from None
    result, taken = {}, {name.lower() for name in LABEL_COLUMNS}
    for alias, expr in pairs:
        if not isinstance(expr, str) or not _EXTRA_EXPRESSION.match(expr):
            msg = (f"extra_columns entries must be 'i.<column>' (galSpecInfo), 'e.<column>' "
                   f"(galSpecExtra) or 's.<column>' (SpecObjAll), got {expr!r}")
            raise ParameterError(msg)
        alias = expr.split(".", 1)[1] if alias is None else alias
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            msg = f"extra_columns alias must be a plain identifier, got {alias!r}"
            raise ParameterError(msg)
        if alias.lower() in taken:
            msg = (f"extra column {expr!r} would be named {alias!r}, which the label columns "
                   f"or another extra already use (names are compared ignoring case); give "
                   f"it another name with a dict, e.g. {{'{alias}_extra': '{expr}'}}")
            raise ParameterError(msg)
        taken.add(alias.lower())
        result[alias] = expr
    return result


def mpajhu_sql(lo, hi, extra_columns=None):
    """Return the SQL of one chunk: rows with ``lo <= specObjID < hi``.

    Examples
    --------
    >>> print(mpajhu_sql(1 << 50, 2 << 50).split("WHERE")[1])
     i.specObjID >= 1125899906842624 AND i.specObjID < 2251799813685248 ORDER BY i.specObjID
    """
    for name, value in (("lo", lo), ("hi", hi)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
                not 0 <= value <= SPECOBJID_MAX:
            msg = f"specObjID bound {name} must be an integer in [0, 2**64), got {value!r}"
            raise ParameterError(msg)
    columns = {**LABEL_COLUMNS, **extra_column_map(extra_columns)}
    select = ", ".join(f"{expr} AS {alias}" for alias, expr in columns.items())
    return (f"SELECT {select} FROM galSpecInfo AS i "
            f"JOIN galSpecExtra AS e ON e.specObjID = i.specObjID "
            f"JOIN SpecObjAll AS s ON s.specObjID = i.specObjID "
            f"WHERE i.specObjID >= {int(lo)} AND i.specObjID < {int(hi)} "
            f"ORDER BY i.specObjID")


def range_sql():
    """SQL giving the smallest and largest specObjID of galSpecInfo."""
    return ("SELECT MIN(specObjID) AS min_specobjid, MAX(specObjID) AS max_specobjid "
            "FROM galSpecInfo")


class _Transported:
    """What astroquery's parser reads from a response: ``.text``."""

    def __init__(self, response):
        self.text = response.text
        self.content = response.content
        self.status_code = response.status


def _sdss_client(source):
    """An astroquery SDSS client whose HTTP goes through ``source._request``."""
    from astroquery.sdss import SDSSClass

    class RoutedSDSS(SDSSClass):
        def _get_query_url(self, data_release):
            suffix = (self.QUERY_URL_SUFFIX_DR_OLD if data_release < 10 else
                      self.QUERY_URL_SUFFIX_DR_10 if data_release == 10 else
                      self.QUERY_URL_SUFFIX_DR_NEW)
            return source.server + suffix.format(dr=data_release)

        def _request(self, method, url, params=None, data=None, timeout=None, cache=None,
                     **kwargs):
            return _Transported(source._request(method, url, params=params, data=data,
                                                cache=cache, validate=_check_skyserver_body))

    return RoutedSDSS()


def _check_skyserver_body(response):
    """Refuse an answer that is not SkyServer's CSV: an SQL error at once, a transient error
    page (e.g. "Something went wrong") to be asked again with back-off.

    The CSV is one table: the newer SkyServers (DR10 on) put a ``#Table1`` line before its
    header, the classic ``x_sql.asp`` of DR1-DR9 starts at the header line (astroquery
    issues #1715, #1924); both are read. Its SQL errors come as a first line beginning
    ``ERROR`` (the SkyServer ``sqlcl`` client's test).
    """
    from gpm_astro.remote import MalformedResponseError, TransientResponseError

    text = response.text
    lowered = text.lower()
    if any(marker in lowered for marker in _SQL_ERROR_MARKERS):
        msg = f"SkyServer refused the SQL (an error page): {text!r}"
        raise MalformedResponseError(msg)
    if lowered.lstrip().startswith(("<!doctype", "<html")) or "<html" in lowered[:512]:
        msg = f"SkyServer answered with an error page: {text[:1000]!r}"
        raise TransientResponseError(msg)
    lines = text.lstrip().splitlines()
    first = lines[0].strip() if lines else ""
    if first.upper().startswith("ERROR"):
        msg = f"SkyServer refused the SQL: {text[:1000]!r}"
        raise MalformedResponseError(msg)
    header = lines[1].strip() if first == "#Table1" and len(lines) > 1 else first
    if first != "#Table1" and not _CSV_HEADER.match(header):
        msg = f"SkyServer answer is not CSV with a header line: {text[:200]!r}"
        raise MalformedResponseError(msg)
    tables = [line.strip() for line in lines if line.startswith("#Table")]
    if len(tables) > 1:
        msg = (f"SkyServer answered with {len(tables)} tables ({', '.join(tables)}) where one "
               f"was asked for: {text[:200]!r}")
        raise MalformedResponseError(msg)


class SDSSMPAJHU(RemoteDataSource):
    """The MPA-JHU DR8 catalogue (galSpecInfo + galSpecExtra + SpecObjAll.snMedian_r).

    Parameters
    ----------
    data_release : int
        SkyServer data release; the MPA-JHU catalogue of the paper is DR8.
    plates_per_chunk : int
        Plates per query. A plate holds 640 (SDSS) or 1000 (BOSS) fibres, so 200 plates stay
        far below SkyServer's 500,000-row limit.
    specobjid_range : (int, int), optional
        ``(lo, hi)`` specObjIDs to read (``lo <= id < hi``); default: asked from the server.
    extra_columns : sequence of str or dict, optional
        Columns wanted beyond `LABEL_COLUMNS` (see `extra_column_map`), e.g.
        ``["e.d4000_n", "s.plate"]``; they come after the label columns, named as written.
    progress : bool
        Show a progress bar over the chunks.
    cache, cache_dir, timeout, max_retries, backoff_factor, max_workers
        See `gpm_astro.remote.RemoteDataSource`.

    Examples
    --------
    >>> source = SDSSMPAJHU(specobjid_range=(299489952322840576, 299489952322840576 + 2 ** 50))
    >>> payload = source.query(get_query_payload=True)
    >>> payload[0]["params"]["format"], "galSpecExtra" in payload[0]["params"]["cmd"]
    ('csv', True)
    """

    name = "sdss_mpajhu"
    provides = ("labels",)
    conf = conf

    def __init__(self, *, data_release=8, plates_per_chunk=200, specobjid_range=None,
                 extra_columns=None, progress=True, cache=True, cache_dir=None, timeout=None, max_retries=None,
                 backoff_factor=None, max_workers=None):
        super().__init__(cache=cache, cache_dir=cache_dir, timeout=timeout,
                         max_retries=max_retries, backoff_factor=backoff_factor,
                         max_workers=max_workers)
        self.data_release = data_release
        self.plates_per_chunk = plates_per_chunk
        self.specobjid_range = specobjid_range
        self.extra_columns = extra_columns
        self.progress = progress

    def _check_params(self):
        if isinstance(self.data_release, bool) or not isinstance(
                self.data_release, numbers.Integral) or not 1 <= self.data_release <= 99:
            msg = f"data_release must be an SDSS data release number, got {self.data_release!r}"
            raise ParameterError(msg)
        chunk = self.plates_per_chunk
        if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or \
                not 1 <= chunk <= 400:
            msg = (f"plates_per_chunk must be an integer in [1, 400] (SkyServer returns at most "
                   f"500,000 rows a query), got {chunk!r}")
            raise ParameterError(msg)
        extra_column_map(self.extra_columns)
        if self.specobjid_range is not None:
            lo, hi = self._range_values(self.specobjid_range)
            if lo >= hi:
                msg = f"specobjid_range must be (lo, hi) with lo < hi, got {self.specobjid_range!r}"
                raise ParameterError(msg)

    @staticmethod
    def _range_values(value):
        try:
            lo, hi = value
        except (TypeError, ValueError):
            msg = f"specobjid_range must be a pair (lo, hi) of integers, got {value!r}"
            raise ParameterError(msg) from None
        for bound in (lo, hi):
            if isinstance(bound, bool) or not isinstance(bound, numbers.Integral) or \
                    not 0 <= bound <= SPECOBJID_MAX + 1:
                msg = f"specobjid_range bounds must be integers in [0, 2**64], got {value!r}"
                raise ParameterError(msg)
        return int(lo), int(hi)

    def _run_sql(self, sql, what="the specObjID range query"):
        client = _sdss_client(self)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                table = client.query_sql(sql, data_release=self.data_release, cache=self.cache)
        except RemoteServiceError as exc:  # name the request: same class, status and body
            named = copy.copy(exc)
            named.args = (f"SkyServer query failed ({what}): {exc}",)
            raise named from exc
        except Exception as exc:  # astroquery's own errors (parse failures, its exceptions)
            msg = f"SkyServer query failed ({what}): {exc}"
            raise RemoteServiceError(msg) from exc
        return table

    def _chunks(self, lo, hi):
        step = int(self.plates_per_chunk) << PLATE_SHIFT
        first = (lo >> PLATE_SHIFT) << PLATE_SHIFT  # align to plate boundaries
        bounds = []
        start = first
        while start < hi:
            stop = min(start + step, hi)
            bounds.append((max(start, lo), stop))
            start += step
        return bounds

    def _resolve_range(self):
        if self.specobjid_range is not None:
            return self._range_values(self.specobjid_range)
        table = self._run_sql(range_sql())
        if table is None or len(table) != 1:
            msg = f"SkyServer gave no specObjID range for galSpecInfo: {table!r}"
            raise RemoteServiceError(msg)
        return int(table["min_specobjid"][0]), int(table["max_specobjid"][0]) + 1

    def query(self, *, get_query_payload=False):
        """Download the catalogue, chunk by chunk.

        Parameters
        ----------
        get_query_payload : bool
            Return the list of requests (method, url, params) instead of sending them (the
            specObjID range query itself is listed first when ``specobjid_range`` is None).

        Returns
        -------
        astropy.table.Table or list of dict
            Columns `LABEL_COLUMNS` (lower-case, as ``select_starforming`` expects), sorted by
            specobjid; -9999 and friends are kept as the catalogue has them.

        Raises
        ------
        RemoteServiceError
            A chunk failed after every retry, or SkyServer sent an error page.
        """
        tables = list(self.iter_query(get_query_payload=get_query_payload))
        if get_query_payload:
            return [p for group in tables for p in group]
        tables = [t for t in tables if len(t)]
        if not tables:
            warn_empty("sdss_mpajhu")
            result = _empty_labels(extra_column_map(self.extra_columns))
        else:
            result = vstack(tables, metadata_conflicts="silent")
        result.meta = {}
        record_step(result, "sdss_mpajhu", server=self.server, data_release=self.data_release,
                    plates_per_chunk=self.plates_per_chunk,
                    specobjid_range=list(self._range_used),
                    extra_columns=extra_column_map(self.extra_columns), n_rows=len(result))
        return result

    def iter_query(self, *, chunk_size=None, get_query_payload=False):
        """Yield the catalogue one specObjID chunk at a time (``chunk_size`` is fixed by
        ``plates_per_chunk``; passing another value is an error)."""
        if chunk_size is not None:
            msg = (f"sdss_mpajhu chunks by plates_per_chunk; chunk_size must be None, "
                   f"got {chunk_size!r}")
            raise ParameterError(msg)
        self._check_params()
        client = _sdss_client(self)
        if get_query_payload:
            payloads = []
            if self.specobjid_range is None:
                payloads.append(self._payload(client, range_sql()))
                yield payloads
                return
            lo, hi = self._range_values(self.specobjid_range)
            yield [self._payload(client, mpajhu_sql(a, b, self.extra_columns))
                   for a, b in self._chunks(lo, hi)]
            return
        lo, hi = self._resolve_range()
        self._range_used = (lo, hi)
        from tqdm.auto import tqdm

        for a, b in tqdm(self._chunks(lo, hi), desc="sdss_mpajhu", unit="chunk",
                         disable=not self.progress):
            table = self._run_sql(mpajhu_sql(a, b, self.extra_columns),
                                  what=f"the chunk of specObjIDs [{a}, {b})")
            if table is not None and len(table) >= ROW_LIMIT:
                msg = (f"SkyServer returned {len(table)} rows for specObjIDs [{a}, {b}), its "
                       f"row limit ({ROW_LIMIT}): the answer may be cut short; lower "
                       f"plates_per_chunk")
                raise RemoteServiceError(msg)
            yield _tidy(table, extra_column_map(self.extra_columns))

    def _payload(self, client, sql):
        params = client.query_sql(sql, data_release=self.data_release, get_query_payload=True)
        return {"method": "GET", "url": client._get_query_url(self.data_release),
                "params": params}


def _empty_labels(extras=None):
    table = Table()
    for name in [*LABEL_COLUMNS, *(extras or {})]:
        dtype = (np.uint64 if name == "specobjid" else "U16" if name == "spectrotype"
                 else np.int64 if name in _INT_COLUMNS else np.float64)
        table[name] = np.zeros(0, dtype=dtype)
    return _tidy(table, extras)


def _tidy(table, extras=None):
    """Give a chunk the label schema: every column, units, masked NULLs; the extra columns
    follow, as SkyServer typed them (text stripped)."""
    extras = extras or {}
    if table is None:
        return _empty_labels(extras)
    wanted = [*LABEL_COLUMNS, *extras]
    missing = [name for name in wanted if name not in table.colnames]
    if missing:
        msg = f"SkyServer answer lacks column(s) {missing}; it has {table.colnames}"
        raise RemoteServiceError(msg)
    table = table[wanted]
    for name in extras:
        if table[name].dtype.kind in "US":
            table[name] = np.char.strip(np.asarray(table[name], dtype=str))
    table["specobjid"] = np.asarray(table["specobjid"], dtype=np.uint64)
    table["spectrotype"] = np.char.strip(np.asarray(table["spectrotype"], dtype=str))
    for name in LABEL_COLUMNS:
        if name in ("specobjid", "spectrotype"):
            continue
        column = table[name]
        if column.dtype.kind not in "iuf":  # a NULL turns a numeric column into text
            values = np.asarray(column, dtype=str)
            numeric = np.array([_to_float(v) for v in values])
            table[name] = MaskedColumn(numeric, mask=np.isnan(numeric))
        if name in _UNITS:
            table[name].unit = _UNITS[name]
    for name, text in _DESCRIPTIONS.items():
        table[name].description = text
    return table


def _to_float(text):
    try:
        return float(text)
    except ValueError:
        return np.nan
