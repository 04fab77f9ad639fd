"""The run's manifest: what a catalogue run is made of and which partitions are finished.

``manifest.json`` in the output folder is rewritten atomically after every finished
partition. It records the recipe (input source and selection, partition plan, estimator,
weights and their checksum, preprocessing), the package and library versions, every session
that worked on the run (scheduler address, dashboard, workers, partitions computed) and, per
finished partition, its file, row count, SHA-256, flags by reason and read errors.

A partition counts as finished only when the manifest lists it *and* its file exists with the
recorded checksum; anything else is computed again. A rerun with a different recipe is
refused, so a catalogue never mixes two models or two selections.
"""

import datetime
import hashlib
import json
from pathlib import Path

from ..exceptions import ParameterError
from ..io import atomic_write_bytes
from ..tables import _plain, package_version

__all__ = ["MANIFEST_FILE", "MANIFEST_FORMAT", "Manifest", "file_sha256", "library_versions",
           "recipe_differences"]

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "gpm_astro.catalogue/1"


#: differences a refused rerun names (the rest are counted)
_SHOWN_DIFFERENCES = 4
_MISSING = object()


def _short(value):
    text = "(absent)" if value is _MISSING else json.dumps(value)
    return text if len(text) <= 70 else text[:67] + "..."


def recipe_differences(recorded, wanted, prefix=""):
    """Each setting in which two recipes differ, as ``"key.path: recorded -> wanted"``.

    Examples
    --------
    >>> recipe_differences({"input": {"partition_size": 50, "n_rows": 9}},
    ...                    {"input": {"partition_size": 60, "n_rows": 9}})
    ['input.partition_size: 50 in the folder, 60 now']
    """
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        found = []
        for key in sorted(set(recorded) | set(wanted), key=str):
            found += recipe_differences(recorded.get(key, _MISSING), wanted.get(key, _MISSING),
                                        f"{prefix}{key}.")
        return found
    if isinstance(recorded, list) and isinstance(wanted, list) and len(recorded) == len(wanted):
        found = []  # e.g. the archive files' checksums: name the file and the field
        for i, (old, new) in enumerate(zip(recorded, wanted)):
            found += recipe_differences(old, new, f"{prefix.rstrip('.')}[{i}].")
        return found
    if recorded == wanted:
        return []
    return [f"{prefix.rstrip('.') or 'recipe'}: {_short(recorded)} in the folder, "
            f"{_short(wanted)} now"]


def file_sha256(path):
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions():
    """Versions of the libraries whose behaviour a catalogue depends on."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"gpm-astro": package_version()}
    for name in ("numpy", "astropy", "h5py", "opencv-python-headless", "photutils", "torch",
                 "dask", "distributed", "pyarrow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """Read, check and update ``manifest.json`` of one output folder.

    Parameters
    ----------
    directory : pathlib.Path
        The run's output folder.
    recipe : dict
        Everything that determines the catalogue's content (JSON-able); a rerun must bring
        the same recipe.
    """

    def __init__(self, directory, recipe):
        self.directory = Path(directory)
        self.path = self.directory / MANIFEST_FILE
        self.recipe = _plain(recipe)
        self.data = None

    def open(self):
        """Load an existing manifest (checking the recipe) or start a new one.

        Raises
        ------
        ParameterError
            If the folder holds a manifest of another recipe, or an unreadable one.
        """
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                msg = (f"cannot read the manifest {str(self.path)!r}: {exc}; without it the "
                       f"folder's partitions cannot be checked: restore it, or restart "
                       f"(--restart, restart=True) to compute them again")
                raise ParameterError(msg) from exc
            if data.get("format") != MANIFEST_FORMAT:
                msg = (f"{str(self.path)!r} is not a {MANIFEST_FORMAT} manifest "
                       f"(format {data.get('format')!r})")
                raise ParameterError(msg)
            if data.get("recipe") != self.recipe:
                changed = recipe_differences(data.get("recipe"), self.recipe)
                shown = "; ".join(changed[:_SHOWN_DIFFERENCES])
                more = len(changed) - _SHOWN_DIFFERENCES
                msg = (f"{str(self.directory)!r} holds a catalogue made with other settings "
                       f"(different: {shown}{f'; and {more} more' if more > 0 else ''}); "
                       f"choose a new output folder, or restart to discard it (--restart, "
                       f"restart=True)")
                raise ParameterError(msg)
            self.data = data
        else:
            self.data = {"format": MANIFEST_FORMAT, "created": _now(), "recipe": self.recipe,
                         "versions": library_versions(), "sessions": [], "partitions": {}}
        return self

    def finished(self):
        """Indices of partitions whose file exists with the recorded checksum."""
        done = set()
        for key, record in self.data["partitions"].items():
            path = self.directory / record["file"]
            if path.is_file() and file_sha256(path) == record["sha256"]:
                done.add(int(key))
        return done

    def resumable(self, log=print):
        """The finished partitions a rerun keeps: those of `finished` without unreadable
        rows. A partition whose record lists ``read_errors`` is computed again (an I/O
        error may pass, a repaired file reads), never kept as flagged for good; ``log`` says
        which."""
        done = self.finished()
        unread = {i for i in done if self.data["partitions"][f"{i:06d}"].get("read_errors")}
        if unread:
            log(f"{len(unread):,d} finished partition(s) hold rows that could not be read: "
                f"computing them again ({sorted(unread)[:5]}{' ...' if len(unread) > 5 else ''})")
        return done - unread

    def start_session(self, **details):
        """Record a session (scheduler address, dashboard, workers) and return its record."""
        session = {"started": _now(), "versions": library_versions(), **_plain(details),
                   "computed": []}
        self.data["sessions"].append(session)
        self.save()
        return session

    def record(self, index, result):
        """Record a finished partition (the dict a partition task returns) and save."""
        self.data["partitions"][f"{index:06d}"] = _plain(result)
        self.data["sessions"][-1]["computed"].append(index)
        self.save()

    def record_merged(self, path):
        """Record a merged catalogue written from this run's partitions (see
        `gpm_astro.survey.engine.remove_merged`) and save."""
        merged = self.data.setdefault("merged", [])
        if str(path) not in merged:
            merged.append(str(path))
        self.save()

    def end_session(self, **details):
        self.data["sessions"][-1].update(ended=_now(), **_plain(details))
        self.save()

    def save(self):
        self.data["updated"] = _now()
        atomic_write_bytes(self.path, json.dumps(self.data, indent=1).encode())
