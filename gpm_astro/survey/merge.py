"""Merge a finished catalogue's partitions into one FITS or ECSV file."""

from pathlib import Path

from ..exceptions import ParameterError
from ..io import write_table
from .manifest import MANIFEST_FILE
from .parquet import read_catalogue

__all__ = ["merge_catalogue"]


def merge_catalogue(directory, target, *, overwrite=True):
    """Write every partition of a finished run as one catalogue file.

    Parameters
    ----------
    directory : str or path-like
        The run's output folder.
    target : str or path-like
        ``.fits`` or ``.ecsv`` (any format `gpm_astro.io.write_table` knows).
    overwrite : bool, optional
        Replace ``target`` if it exists.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ParameterError
        If the run is not finished (a partition missing from the manifest or on disk).
    """
    import json

    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        msg = f"no {MANIFEST_FILE} in {str(directory)!r}: not a catalogue run folder"
        raise ParameterError(msg)
    data = json.loads(manifest_path.read_text())
    catalogue = read_catalogue(directory)  # every partition finished, each recorded file once
    catalogue.meta["gpm_astro_run"] = {"manifest": str(manifest_path),
                                       "n_partitions": data["recipe"]["input"]["n_partitions"],
                                       "versions": data.get("versions", {})}
    write_table(catalogue, target, overwrite=overwrite)
    return Path(target)
