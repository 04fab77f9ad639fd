"""Registry of named model weights: a name resolves to a file or URL plus its sha256.

A remote file is downloaded once into astropy's download cache
(`astropy.utils.data.download_file` with ``cache=True``) and checked against its sha256 on every
use; a file whose checksum differs is refused with `~gpm_astro.exceptions.WeightsError` (and, if
it came from the cache, removed from it so the next call downloads it again).

Entries come from three places, later ones overriding earlier ones:

1. ``gpm_astro/weights_registry.json`` shipped with the package;
2. JSON files named in the environment variable ``GPM_ASTRO_WEIGHTS`` (``os.pathsep``-separated),
   each ``{"name": {"url": ..., "sha256": ..., "description": ...}, ...}``; a relative ``url``
   is taken relative to that JSON file;
3. `register_weights` at run time.
"""

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from astropy.table import Table

from .exceptions import ParameterError, WeightsError

__all__ = ["WeightsEntry", "register_weights", "unregister_weights", "get_weights_entry",
           "list_weights", "fetch_weights", "sha256_of", "WEIGHTS_ENV_VAR"]

WEIGHTS_ENV_VAR = "GPM_ASTRO_WEIGHTS"
BUILTIN_REGISTRY = Path(__file__).with_name("weights_registry.json")
_HEX = set("0123456789abcdef")


@dataclass(frozen=True)
class WeightsEntry:
    """One named set of weights.

    Attributes
    ----------
    name : str
    url : str
        ``http(s)://`` or ``file://`` URL, or a local path.
    sha256 : str
        Lower-case hex digest of the file.
    description : str
    estimator : str
        Estimator name the weights belong to (e.g. ``gpm_resnet``).
    """

    name: str
    url: str
    sha256: str
    description: str = ""
    estimator: str = "gpm_resnet"


_lock = threading.RLock()
_runtime = {}


def _check_sha(sha256, name):
    sha = str(sha256).lower()
    if len(sha) != 64 or not set(sha) <= _HEX:
        msg = f"weights {name!r}: sha256 must be 64 hex digits, got {sha256!r}"
        raise ParameterError(msg)
    return sha


def _entries_from_json(path):
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read weights registry {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict):
        msg = f"weights registry {str(path)!r} must hold a JSON object, got {type(data).__name__}"
        raise WeightsError(msg)
    entries = {}
    for name, item in data.items():
        if not isinstance(item, dict) or "url" not in item or "sha256" not in item:
            msg = f"weights registry {str(path)!r}: entry {name!r} needs 'url' and 'sha256'"
            raise WeightsError(msg)
        url = item["url"]
        if "://" not in url and not os.path.isabs(url):
            url = str((path.parent / url).resolve())
        entries[name] = WeightsEntry(name, url, _check_sha(item["sha256"], name),
                                     item.get("description", ""),
                                     item.get("estimator", "gpm_resnet"))
    return entries


def _all_entries():
    entries = {}
    if BUILTIN_REGISTRY.exists():
        entries.update(_entries_from_json(BUILTIN_REGISTRY))
    for path in filter(None, os.environ.get(WEIGHTS_ENV_VAR, "").split(os.pathsep)):
        entries.update(_entries_from_json(path))
    with _lock:
        entries.update(_runtime)
    return entries


def register_weights(name, *, url, sha256, description="", estimator="gpm_resnet",
                     overwrite=False):
    """Add a named weights file to the registry of this session.

    Parameters
    ----------
    name : str
        Name users pass as ``weights=`` (e.g. to ``GPMResNetEstimator.load``).
    url : str
        ``http(s)://`` or ``file://`` URL, or a local path.
    sha256 : str
        Expected hex digest of the file.
    description : str, optional
    estimator : str, optional
        Name of the estimator the weights are for.
    overwrite : bool, optional
        Replace an existing entry of the same name.

    Returns
    -------
    WeightsEntry

    Raises
    ------
    ParameterError
        Bad name or checksum, or the name exists and ``overwrite`` is False.

    Examples
    --------
    >>> from gpm_astro.weights import register_weights, unregister_weights
    >>> entry = register_weights("demo", url="https://example.org/demo.safetensors",
    ...                          sha256="0" * 64)
    >>> entry.name
    'demo'
    >>> unregister_weights("demo")
    """
    if not isinstance(name, str) or not name:
        raise ParameterError(f"weights name must be a non-empty string, got {name!r}")
    entry = WeightsEntry(name, str(url), _check_sha(sha256, name), description, estimator)
    with _lock:
        if not overwrite and name in _all_entries():
            msg = f"weights name {name!r} is already registered; pass overwrite=True"
            raise ParameterError(msg)
        _runtime[name] = entry
    return entry


def unregister_weights(name):
    """Remove a name added by `register_weights` (KeyError-free if absent: WeightsError)."""
    with _lock:
        if name not in _runtime:
            msg = f"weights {name!r} was not registered at run time; known: {sorted(_runtime)}"
            raise WeightsError(msg)
        del _runtime[name]


def get_weights_entry(name):
    """Return the `WeightsEntry` of ``name``.

    Raises
    ------
    WeightsError
        Unknown name; the message lists the known ones.
    """
    entries = _all_entries()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        msg = f"no weights named {name!r}; known: {known}"
        raise WeightsError(msg)
    return entries[name]


def list_weights():
    """Return a Table of the registered weights: name, estimator, url, sha256, description."""
    names = ("name", "estimator", "url", "sha256", "description")
    rows = [(e.name, e.estimator, e.url, e.sha256, e.description)
            for e in sorted(_all_entries().values(), key=lambda e: e.name)]
    if not rows:
        return Table(names=names, dtype=[str] * len(names))
    return Table(rows=rows, names=names)


def sha256_of(path, *, chunk_size=1 << 20):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_weights(name_or_url, *, sha256=None, cache=True, show_progress=False, timeout=60):
    """Return a local path to verified weights.

    Parameters
    ----------
    name_or_url : str
        A registered name, an ``http(s)://`` / ``file://`` URL, or a local path.
    sha256 : str, optional
        Expected digest; taken from the registry for a name. Required for a URL.
    cache : bool, optional
        Keep downloads in astropy's cache (downloaded once).
    show_progress : bool, optional
        Show a download progress bar.
    timeout : float, optional
        Seconds before a download attempt gives up.

    Returns
    -------
    str
        Path of the file on disk.

    Raises
    ------
    WeightsError
        Unknown name, failed download, missing file, or checksum mismatch.

    Examples
    --------
    >>> import tempfile, os
    >>> from gpm_astro.weights import fetch_weights, sha256_of
    >>> path = os.path.join(tempfile.mkdtemp(), "w.bin")
    >>> _ = open(path, "wb").write(b"weights")
    >>> fetch_weights(path, sha256=sha256_of(path)) == path
    True
    """
    entries = _all_entries()
    if name_or_url in entries:
        entry = entries[name_or_url]
        url, expected = entry.url, entry.sha256
        if sha256 is not None and _check_sha(sha256, name_or_url) != expected:
            msg = f"weights {name_or_url!r}: sha256 {sha256!r} differs from the registry's"
            raise WeightsError(msg)
    else:
        url = name_or_url
        if sha256 is None:
            known = ", ".join(sorted(entries)) or "none"
            if "://" in str(url) or os.path.exists(url):
                msg = f"weights {name_or_url!r}: a URL or path needs sha256= (known names: {known})"
            else:
                msg = f"no weights named {name_or_url!r}; known: {known}"
            raise WeightsError(msg)
        expected = _check_sha(sha256, name_or_url)
    scheme = urlparse(url).scheme
    from_cache = False
    if scheme in ("http", "https", "ftp"):
        from astropy.utils.data import download_file

        try:
            path = download_file(url, cache=cache, show_progress=show_progress,
                                 timeout=timeout)
        except Exception as exc:  # urllib / astropy raise many kinds
            raise WeightsError(f"cannot download weights from {url!r}: {exc}") from exc
        from_cache = cache
    elif scheme == "file":
        path = urlparse(url).path
    else:
        path = url
    if not os.path.isfile(path):
        raise WeightsError(f"weights file {path!r} does not exist")
    actual = sha256_of(path)
    if actual != expected:
        if from_cache:
            from astropy.utils.data import clear_download_cache

            clear_download_cache(url)
        msg = (f"weights {name_or_url!r}: sha256 of {url!r} is {actual}, expected {expected}; "
               f"refusing a corrupted or tampered file")
        raise WeightsError(msg)
    return path
