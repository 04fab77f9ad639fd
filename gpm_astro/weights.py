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
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from astropy.table import Table

from .exceptions import ParameterError, UnverifiedWeightsWarning, WeightsError

__all__ = ["WeightsEntry", "register_weights", "unregister_weights", "get_weights_entry",
           "list_weights", "fetch_weights", "sha256_of", "model_digest", "check_model_digest",
           "read_model_card", "WEIGHTS_ENV_VAR", "DIGEST_KEYS"]

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


def _looks_like_path(text):
    """Whether ``text`` reads as a file system path rather than a registered name."""
    text = str(text)
    return (any(sep in text for sep in filter(None, ("/", os.sep, os.altsep)))
            or text.endswith((".safetensors", ".json")) or text.startswith("~"))


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
            elif _looks_like_path(url):
                msg = (f"weights file or folder {name_or_url!r} does not exist (and no weights "
                       f"are registered under that name; known: {known})")
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


# --------------------------------------------------------------------------------------------
# the content digest: one checksum over everything that changes a prediction
# --------------------------------------------------------------------------------------------

#: Card entries that record digests and file names; left out of `model_digest`.
DIGEST_KEYS = ("weights_file", "weights_sha256", "content_sha256")


def _card_bytes(card):
    kept = {key: value for key, value in card.items() if key not in DIGEST_KEYS}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _tensor_buffer(tensor):
    """(dtype name, shape, contiguous uint8 buffer) of a torch tensor or a NumPy array."""
    if hasattr(tensor, "detach"):  # torch.Tensor, any dtype (bf16 has no NumPy twin)
        import torch

        flat = tensor.detach().cpu().contiguous().reshape(-1)
        return str(tensor.dtype), list(tensor.shape), flat.view(torch.uint8).numpy()
    import numpy as np

    array = np.ascontiguousarray(tensor)
    return str(array.dtype), list(array.shape), array.reshape(-1).view(np.uint8)


def model_digest(card, tensors):
    """The sha256 (hex) of a model card and its tensors, everything that changes a prediction.

    Covers every card entry but `DIGEST_KEYS` (canonical JSON, sorted keys) and, in name order,
    each tensor's name, dtype, shape and bytes. A flipped byte in the weights or an edited
    target mean in the card changes it.

    Parameters
    ----------
    card : dict
        The model card (JSON-able).
    tensors : mapping of str to torch.Tensor or numpy.ndarray

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> import numpy as np
    >>> from gpm_astro.weights import model_digest
    >>> card = {"target_standardization": {"mean": 8.9, "std": 0.2}}
    >>> a = model_digest(card, {"w": np.ones(3, np.float32)})
    >>> a == model_digest({"target_standardization": {"mean": 9.4, "std": 0.2}},
    ...                   {"w": np.ones(3, np.float32)})
    False
    """
    digest = hashlib.sha256(_card_bytes(card))
    for name in sorted(tensors):
        dtype, shape, buffer = _tensor_buffer(tensors[name])
        digest.update(json.dumps([name, dtype, shape]).encode())
        digest.update(buffer)
    return digest.hexdigest()


def check_model_digest(card, tensors, *, source, verified_by_sha256=False):
    """Check a loaded model against the digest its card records; say how it was verified.

    Parameters
    ----------
    card : dict
        The model card as loaded (its ``content_sha256`` is the expected digest).
    tensors : mapping of str to torch.Tensor or numpy.ndarray
    source : str
        Where the model came from, for messages.
    verified_by_sha256 : bool, optional
        The whole file already matched a sha256 given from outside (registry or ``sha256=``).

    Returns
    -------
    str
        ``"sha256"`` (matched an outside checksum), ``"content"`` (matched its own content
        digest) or ``"none"`` (no checksum at all: an `UnverifiedWeightsWarning` was issued).

    Raises
    ------
    WeightsError
        If the card records a digest and the tensors or card do not match it.
    """
    expected = card.get("content_sha256")
    if expected is not None:
        actual = model_digest(card, tensors)
        if actual != expected:
            msg = (f"model {source!r}: the content checksum of its weights and model card is "
                   f"{actual}, but it records {expected!r}; refusing tampered or corrupted "
                   f"weights")
            raise WeightsError(msg)
    if verified_by_sha256:
        return "sha256"
    if expected is not None:
        return "content"
    warnings.warn(f"model {source!r} has no checksum (no content_sha256 in its card, and no "
                  f"sha256= or registry entry): its weights and card cannot be checked for "
                  f"corruption or tampering; save it again with this version to add one",
                  UnverifiedWeightsWarning, stacklevel=3)
    return "none"


def read_model_card(text, source):
    """Parse a JSON model card; `WeightsError` (never a raw JSONDecodeError) when malformed."""
    try:
        card = json.loads(text)
    except (ValueError, TypeError) as exc:
        msg = f"model card of {source!r} is not valid JSON: {exc}"
        raise WeightsError(msg) from exc
    if not isinstance(card, dict):
        msg = f"model card of {source!r} must be a JSON object, got {type(card).__name__}"
        raise WeightsError(msg)
    return card
