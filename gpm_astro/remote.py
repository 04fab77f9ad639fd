"""Base class of the data sources that talk to web services (astroquery's conventions).

Every remote source has

- a ``conf`` (an `astropy.config.ConfigNamespace`) with its server URL, timeout, retries and
  back-off, so a user or a test points it elsewhere with ``conf.set_temp("server", url)``;
- one method, `RemoteDataSource._request`, through which all of its HTTP traffic goes: it
  retries time-outs, dropped connections, truncated bodies, HTTP 429 and 5xx with exponential
  back-off (honouring ``Retry-After``), and keeps a disk cache keyed by the request;
- ``cache``, ``timeout`` and ``get_query_payload=True`` (see a query without sending it);
- `RemoteDataSource._map_concurrent`, a bounded thread pool with a progress bar.
"""

import email.utils
import hashlib
import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import requests
from astropy import config as _config

from .base import DataSource
from .exceptions import ParameterError, RemoteServiceError

__all__ = [
    "RemoteConf",
    "REMOTE_SETTINGS",
    "RemoteDataSource",
    "RemoteResponse",
    "HTTPStatusError",
    "RemoteTimeoutError",
    "TruncatedResponseError",
    "MalformedResponseError",
    "TransientResponseError",
    "RETRY_STATUSES",
    "default_cache_dir",
]

#: HTTP statuses that are worth asking again for
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HTTPStatusError(RemoteServiceError):
    """The service answered with an HTTP error status (after any retries)."""

    def __init__(self, message, *, status=None, url=None, content=None):
        super().__init__(message)
        self.status = status
        self.url = url
        #: the body of the error answer (bytes), so a caller can read the service's reason
        self.content = content


class RemoteTimeoutError(RemoteServiceError):
    """The service did not answer within the time-out (after any retries)."""


class TruncatedResponseError(RemoteServiceError):
    """The connection closed before the whole body arrived (after any retries)."""


class MalformedResponseError(RemoteServiceError):
    """The body arrived but is not what the service should send (e.g. an HTML error page)."""


class TransientResponseError(MalformedResponseError):
    """A body that a passing fault explains (a proxy's or the service's HTML error page).

    A ``validate`` callable raises it to have `RemoteDataSource._request` ask again, with the
    same bounded back-off as for HTTP 5xx; a plain `MalformedResponseError` is final.
    """


#: settings every remote source has: name -> (default, description)
REMOTE_SETTINGS = {
    "timeout": (60.0, "Seconds to wait for the server to answer one request."),
    "max_retries": (4, "How many times a failed request (time-out, 429, 5xx, truncated body) "
                       "is retried."),
    "backoff_factor": (1.0, "Seconds before the first retry; each further retry waits twice "
                            "as long."),
    "max_retry_after": (120.0, "Longest wait, in seconds, accepted from a Retry-After header."),
    "min_interval": (0.0, "Shortest time, in seconds, between two requests (a rate limit)."),
    "max_workers": (4, "Requests sent at the same time by one query."),
}


class RemoteConf(_config.ConfigNamespace):
    """Base of each remote source's configuration.

    A subclass defines ``server`` (and may redefine any of `REMOTE_SETTINGS` with its own
    default); the settings it does not define are created for it, in its own module's config
    section, so ``conf.set_temp("max_retries", 0)`` on one source never changes another.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, (default, description) in REMOTE_SETTINGS.items():
            if name not in cls.__dict__:
                item = _config.ConfigItem(default, description, module=cls.__module__)
                item.name = name
                setattr(cls, name, item)


def default_cache_dir():
    """Return gpm_astro's cache directory (astropy's convention, ``~/.gpm_astro/cache``)."""
    from astropy.config import get_cache_dir_path

    return Path(get_cache_dir_path("gpm_astro")) / "remote"


class RemoteResponse:
    """What `RemoteDataSource._request` returns: status, headers and the whole body.

    Attributes
    ----------
    url : str
    status : int
    headers : dict
        Lower-case header names.
    content : bytes
    from_cache : bool
    """

    __slots__ = ("url", "status", "headers", "content", "from_cache")

    def __init__(self, url, status, headers, content, from_cache=False):
        self.url = url
        self.status = status
        self.headers = {k.lower(): v for k, v in dict(headers).items()}
        self.content = content
        self.from_cache = from_cache

    @property
    def text(self):
        return self.content.decode("utf-8", errors="replace")

    def __repr__(self):
        return (f"RemoteResponse(url={self.url!r}, status={self.status}, "
                f"bytes={len(self.content)}, from_cache={self.from_cache})")


def _retry_after_seconds(value):
    """Parse a Retry-After header (seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def request_key(method, url, params=None, data=None):
    """Return the cache key (hex SHA-256) of a request: method, URL and sorted parameters."""
    def _items(mapping):
        if mapping is None:
            return []
        items = mapping.items() if isinstance(mapping, dict) else mapping
        return sorted((str(k), str(v)) for k, v in items)

    text = json.dumps([method.upper(), url, _items(params), _items(data)])
    return hashlib.sha256(text.encode()).hexdigest()


class RemoteDataSource(DataSource):
    """A data source served over HTTP, built the way astroquery builds its services.

    Subclasses set ``conf`` (a `RemoteConf` subclass instance with at least ``server``) and
    call `_request` for every HTTP exchange. Constructor options left as None take their value
    from ``conf`` when a request is made, so ``conf.set_temp`` works on existing objects.

    Parameters
    ----------
    cache : bool
        Keep successful responses on disk and answer repeated requests from there.
    cache_dir : str or path-like, optional
        Where the cache lives; default `default_cache_dir` / the source's name.
    timeout : float, optional
        Seconds to wait for one answer; default ``conf.timeout``.
    max_retries : int, optional
        Retries of a failed request; default ``conf.max_retries``.
    backoff_factor : float, optional
        Seconds before the first retry, doubling each time; default ``conf.backoff_factor``.
    max_workers : int, optional
        Concurrent requests; default ``conf.max_workers``.
    """

    conf = None
    #: a dedicated cache folder name; defaults to ``name``
    cache_name = None

    def __init__(self, *, cache=True, cache_dir=None, timeout=None, max_retries=None,
                 backoff_factor=None, max_workers=None):
        self.cache = cache
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_factor = backoff_factor
        self.max_workers = max_workers

    # -- settings ---------------------------------------------------------------------------
    def _setting(self, name):
        """The constructor's value of ``name`` if given, else ``conf``'s."""
        value = getattr(self, name, None)
        if value is None:
            value = getattr(self.conf, name)
        return value

    def _check_settings(self):
        timeout = self._setting("timeout")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            msg = f"timeout must be a positive number of seconds, got {timeout!r}"
            raise ParameterError(msg)
        retries = self._setting("max_retries")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            msg = f"max_retries must be a non-negative integer, got {retries!r}"
            raise ParameterError(msg)
        backoff = self._setting("backoff_factor")
        if not (isinstance(backoff, (int, float)) and backoff >= 0):
            msg = f"backoff_factor must be a non-negative number, got {backoff!r}"
            raise ParameterError(msg)
        workers = self._setting("max_workers")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            msg = f"max_workers must be a positive integer, got {workers!r}"
            raise ParameterError(msg)

    @property
    def server(self):
        """Base URL of the service, from ``conf.server`` (no trailing slash)."""
        return str(self.conf.server).rstrip("/")

    def _cache_root(self):
        root = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()
        return root / (self.cache_name or self.name or type(self).__name__)

    # -- plumbing shared by the threads ------------------------------------------------------
    def __getstate__(self):  # sessions and locks stay with the process that made them
        state = dict(self.__dict__)
        state.pop("_remote_state", None)
        return state

    def _state(self):
        # setdefault is atomic, so two threads never create two states
        return self.__dict__.setdefault("_remote_state", {
            "local": threading.local(), "rate_lock": threading.Lock(), "last_request": [0.0],
            "counter_lock": threading.Lock(), "n_requests": 0})

    def _session(self):
        """One `requests.Session` per thread (sessions are not safe to share across threads)."""
        local = self._state()["local"]
        session = getattr(local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"gpm_astro/{_package_version()} ({self.name})"
            local.session = session
        return session

    @property
    def n_requests(self):
        """How many HTTP requests this object has sent (cache hits excluded)."""
        return self._state()["n_requests"]

    def _wait_for_rate_limit(self):
        interval = float(self._setting("min_interval"))
        if interval <= 0:
            return
        state = self._state()
        with state["rate_lock"]:
            pause = state["last_request"][0] + interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            state["last_request"][0] = time.monotonic()

    # -- cache -------------------------------------------------------------------------------
    def _cache_paths(self, key):
        folder = self._cache_root() / key[:2]
        return folder / f"{key}.body", folder / f"{key}.json"

    def _cache_load(self, key):
        body_path, info_path = self._cache_paths(key)
        try:
            info = json.loads(info_path.read_text())
            content = body_path.read_bytes()
        except (OSError, ValueError):
            return None
        if len(content) != info.get("length"):  # a half-written entry is no entry
            return None
        return RemoteResponse(info["url"], info["status"], info["headers"], content,
                              from_cache=True)

    def _cache_store(self, key, response):
        body_path, info_path = self._cache_paths(key)
        body_path.parent.mkdir(parents=True, exist_ok=True)
        suffix = f".tmp{os.getpid()}.{threading.get_ident()}"
        tmp_body = body_path.with_name(body_path.name + suffix)
        tmp_body.write_bytes(response.content)
        os.replace(tmp_body, body_path)
        info = {"url": response.url, "status": response.status,
                "headers": {k: v for k, v in response.headers.items()
                            if k in ("content-type", "content-length")},
                "length": len(response.content)}
        tmp_info = info_path.with_name(info_path.name + suffix)
        tmp_info.write_text(json.dumps(info))
        os.replace(tmp_info, info_path)

    def clear_cache(self):
        """Delete this source's cached responses. Returns the number of entries removed."""
        root = self._cache_root()
        removed = 0
        if root.is_dir():
            for path in root.glob("*/*.json"):
                path.unlink(missing_ok=True)
                path.with_suffix(".body").unlink(missing_ok=True)
                removed += 1
        return removed

    # -- the one request method ---------------------------------------------------------------
    def _request(self, method, url, *, params=None, data=None, cache=None, timeout=None,
                 validate=None, allow_redirects=True):
        """Send one HTTP request, with retries and the disk cache; return a `RemoteResponse`.

        Parameters
        ----------
        method : str
            ``"GET"`` or ``"POST"`` (or any verb the service takes).
        url : str
        params, data : dict, optional
            Query-string parameters and form body.
        cache : bool, optional
            Use the cache for this request; default ``self.cache``. Only responses that pass
            ``validate`` are stored.
        timeout : float, optional
            Default: the source's ``timeout``.
        validate : callable, optional
            ``validate(response)`` raises `MalformedResponseError` for a body that must not be
            cached or used (not retried: the same request gives the same body), or
            `TransientResponseError` for one a passing fault explains (retried like a 5xx).
        allow_redirects : bool

        Returns
        -------
        RemoteResponse

        Raises
        ------
        HTTPStatusError
            A 4xx status, or a 429 / 5xx status that persisted through every retry.
        RemoteTimeoutError, TruncatedResponseError, RemoteServiceError
            A time-out, a truncated body or a connection failure that persisted.
        MalformedResponseError
            Raised by ``validate`` (a `TransientResponseError` only after every retry).
        """
        self._check_settings()
        use_cache = self.cache if cache is None else cache
        timeout = self._setting("timeout") if timeout is None else timeout
        key = request_key(method, url, params, data)
        if use_cache:
            cached = self._cache_load(key)
            if cached is not None:
                return cached

        retries = self._setting("max_retries")
        backoff = float(self._setting("backoff_factor"))
        max_retry_after = float(self._setting("max_retry_after"))
        error = None
        for attempt in range(retries + 1):
            retry_after = None
            self._wait_for_rate_limit()
            state = self._state()
            with state["counter_lock"]:
                state["n_requests"] += 1
            try:
                raw = self._session().request(method, url, params=params, data=data,
                                              timeout=timeout, allow_redirects=allow_redirects)
                content = raw.content  # reads the whole body: truncation surfaces here
            except requests.Timeout as exc:
                error = RemoteTimeoutError(f"{method} {url} timed out after {timeout} s: {exc}")
            except (requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                error = TruncatedResponseError(f"{method} {url}: body truncated: {exc}")
            except requests.ConnectionError as exc:
                error = RemoteServiceError(f"{method} {url}: connection failed: {exc}")
            else:
                response = RemoteResponse(raw.url, raw.status_code, raw.headers, content)
                if raw.status_code in RETRY_STATUSES:
                    retry_after = _retry_after_seconds(raw.headers.get("Retry-After"))
                    error = HTTPStatusError(
                        f"{method} {url} answered HTTP {raw.status_code} {raw.reason}: "
                        f"{response.text[:500]!r}", status=raw.status_code, url=url,
                        content=content)
                elif raw.status_code >= 400:  # the service's reason whole, not a prefix
                    msg = (f"{method} {url} answered HTTP {raw.status_code} {raw.reason}: "
                           f"{response.text!r}")
                    raise HTTPStatusError(msg, status=raw.status_code, url=url,
                                          content=content)
                else:
                    try:
                        if validate is not None:
                            validate(response)
                    except TransientResponseError as exc:
                        error = exc
                    else:
                        if use_cache:
                            self._cache_store(key, response)
                        return response
            if attempt < retries:
                delay = backoff * 2 ** attempt
                if retry_after is not None:
                    delay = min(retry_after, max_retry_after)
                time.sleep(delay)
        raise error

    # -- bounded concurrency -----------------------------------------------------------------
    def _map_concurrent(self, func, items, *, desc=None, progress=True, total=None,
                        salvage=None):
        """Call ``func(item)`` on a bounded thread pool; yield ``(index, result, error)``.

        Results come back in completion order; ``error`` is the exception ``func`` raised (and
        ``result`` None) so one bad item never stops the rest. At most ``max_workers`` calls run
        and at most ``4 * max_workers`` are queued, so memory stays flat on long inputs. If the
        consumer stops (an exception, KeyboardInterrupt or ``close()``), queued calls are
        cancelled, running ones finish, and, if ``salvage`` is a list, the finished results
        that were not yet yielded are appended to it as ``(index, result, error)`` so a caller
        can keep work already paid for.
        """
        from tqdm.auto import tqdm

        self._check_settings()
        workers = self._setting("max_workers")
        items = iter(enumerate(items))
        bar = tqdm(total=total, desc=desc or self.name, unit="req", disable=not progress)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=self.name or "remote")
        pending = {}
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < 4 * workers:
                    try:
                        index, item = next(items)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[pool.submit(func, item)] = index
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    exc = future.exception()
                    bar.update(1)
                    if exc is not None and not isinstance(exc, Exception):
                        raise exc  # KeyboardInterrupt / SystemExit in a worker
                    yield index, (None if exc else future.result()), exc
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            if salvage is not None:
                for future, index in pending.items():
                    if future.done() and not future.cancelled() and future.exception() is None:
                        salvage.append((index, future.result(), None))


def _package_version():
    from .tables import package_version

    return package_version()
