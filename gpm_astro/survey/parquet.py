"""One Parquet file per partition, written atomically, with units and descriptions.

Each file holds the catalogue rows of one partition with a fixed Arrow schema (so the files
form one dataset for pyarrow and ``dask.dataframe``). Masked values are Arrow nulls. Each
field carries ``unit`` and ``description`` in its metadata; the file's schema metadata holds
astropy's own YAML header (``table_meta_yaml``: units, descriptions and ``meta``, which
``Table.read(path, format="parquet")`` reads back) and ``gpm_astro`` (a JSON copy of ``meta``).

A file is written to a temporary name in the same folder and renamed into place, so a reader
(or a rerun after a crash) sees either the whole partition or nothing. Nothing in a file
depends on the clock, so recomputing a partition gives the same bytes.
"""

import json
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table

from ..io import atomic_file
from ..tables import _plain

__all__ = ["CATALOGUE_SCHEMA", "write_partition", "read_partition", "read_catalogue",
           "partition_files", "finished_partition_files"]

#: column -> Arrow type name of a catalogue partition, in file order
CATALOGUE_SCHEMA = {
    "archive_row": "int64",
    "ra": "float64",
    "dec": "float64",
    "release": "int32",
    "brickid": "int32",
    "objid": "int32",
    "z_phot_median": "float32",
    "mag_r": "float64",
    "Z_pred": "float64",
    "Z_pred_err": "float64",
    "Z_pred_flag": "string",
    "preprocess_flag": "string",
}


def _arrow_schema(table, columns):
    import pyarrow as pa

    fields = []
    for name, type_name in columns.items():
        column = table[name]
        metadata = {"description": column.description or ""}
        if column.unit is not None:
            metadata["unit"] = column.unit.to_string()
        fields.append(pa.field(name, getattr(pa, type_name)(), nullable=True,
                               metadata=metadata))
    return fields


def _astropy_header(table):
    """astropy's YAML header of ``table`` without masks (Arrow nulls carry them)."""
    from astropy.table import meta as table_meta

    plain = Table(meta=table.meta)
    for name in table.colnames:
        column = table[name]
        data = np.ma.getdata(column)
        plain[name] = data if data.dtype.kind != "U" else data.astype(object).astype(str)
        plain[name].unit = column.unit
        plain[name].description = column.description
    return "\n".join(table_meta.get_yaml_from_table(plain))


def _arrow_table(table, columns=CATALOGUE_SCHEMA):
    import pyarrow as pa

    fields = _arrow_schema(table, columns)
    arrays = []
    for field in fields:
        column = table[field.name]
        data = np.ma.getdata(column)
        mask = np.ma.getmaskarray(column) if isinstance(column, MaskedColumn) else None
        if mask is not None and not mask.any():
            mask = None
        if pa.types.is_string(field.type):
            values = np.asarray(data, dtype=str).tolist()
            arrays.append(pa.array(values, type=field.type, mask=mask))
        else:
            arrays.append(pa.array(np.asarray(data), mask=mask).cast(field.type))
    metadata = {"table_meta_yaml": _astropy_header(table),
                "gpm_astro": json.dumps(_plain(table.meta), sort_keys=True)}
    for field in fields:
        if pa.types.is_string(field.type):  # astropy restores the string width from this
            width = max((len(v) for v in np.asarray(table[field.name], dtype=str)), default=1)
            metadata[f"table::len::{field.name}"] = str(max(width, 1))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def write_partition(table, path, *, columns=CATALOGUE_SCHEMA):
    """Write one partition's catalogue rows to ``path`` atomically.

    Parameters
    ----------
    table : astropy.table.Table
        With every column of ``columns`` (masked values become nulls).
    path : str or path-like
        The final file name; the file appears there only once complete.
    columns : dict, optional
        Column -> Arrow type name; default `CATALOGUE_SCHEMA`.

    Returns
    -------
    pathlib.Path
    """
    import pyarrow.parquet as pq

    path = Path(path)
    arrow = _arrow_table(table, columns)
    with atomic_file(path) as tmp:
        pq.write_table(arrow, tmp, compression="zstd")
    return path


def _to_astropy(arrow):
    """An Arrow table -> astropy Table with nulls masked and units, descriptions, meta."""
    import pyarrow as pa

    table = Table()
    for field, column in zip(arrow.schema, arrow.columns):
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_string(field.type):
            data = np.asarray(column.fill_null("").to_pylist(), dtype=str)
        else:
            if nulls.any():  # filled first: an integer column with nulls would come as
                # float64 and lose the low bits of 64-bit values
                fill = np.nan if pa.types.is_floating(field.type) else 0
                column = column.fill_null(pa.scalar(fill).cast(field.type))
            data = column.to_numpy()
        metadata = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        table[field.name] = MaskedColumn(data, mask=nulls) if nulls.any() else data
        table[field.name].unit = metadata.get("unit") or None
        table[field.name].description = metadata.get("description") or None
    raw = arrow.schema.metadata or {}
    if b"gpm_astro" in raw:
        table.meta.update(json.loads(raw[b"gpm_astro"]))
    return table


def read_partition(path):
    """Read one partition file into an astropy Table (nulls masked)."""
    import pyarrow.parquet as pq

    return _to_astropy(pq.read_table(path))


def _partition_index(path):
    stem = Path(path).stem.removeprefix("part-")
    return (int(stem), "") if stem.isdigit() else (-1, stem)


def partition_files(directory):
    """The partition files under ``directory/partitions``, in partition order (by index, also
    past ``part-999999``). Files of any run are listed, recorded in its manifest or not; to
    read a run's catalogue, use `read_catalogue`."""
    return sorted((Path(directory) / "partitions").glob("part-*.parquet"),
                  key=_partition_index)


def finished_partition_files(directory, *, partial=False):
    """The files of a catalogue run's finished partitions, in partition order.

    A partition counts when the run's manifest records it and its file has the recorded
    checksum (`gpm_astro.survey.manifest.Manifest.finished`); files the manifest does not
    record (left by another plan, a crash, a copy) are not the run's.

    Parameters
    ----------
    directory : str or path-like
        The run's output folder.
    partial : bool, optional
        Accept a run some of whose partitions are not finished (a `GPMAstroWarning` names
        them) instead of raising.

    Returns
    -------
    (list of pathlib.Path, list of int, int)
        The finished partitions' files, the indices of the missing partitions, and the rows
        the manifest records for the finished ones.

    Raises
    ------
    ParameterError
        No readable manifest, no finished partition, or (unless ``partial``) a partition
        not finished.
    """
    import warnings

    from ..exceptions import GPMAstroWarning, ParameterError
    from .manifest import MANIFEST_FILE, Manifest

    directory = Path(directory)
    path = directory / MANIFEST_FILE
    try:
        data = json.loads(path.read_text())
        expected = int(data["recipe"]["input"]["n_partitions"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = (f"cannot read the manifest {str(path)!r} ({type(exc).__name__}: {exc}): not a "
               f"catalogue run folder, so which partition files are the run's is unknown")
        raise ParameterError(msg) from None
    if data["recipe"].get("kind", "catalogue") != "catalogue":
        msg = (f"{str(directory)!r} holds a {data['recipe']['kind']!r} run, not a catalogue "
               f"(read it with its data source)")
        raise ParameterError(msg)
    manifest = Manifest(directory, data["recipe"]).open()
    finished = manifest.finished()
    missing = sorted(set(range(expected)) - finished)
    if missing:
        what = (f"{len(missing)} of {expected} partitions missing (first: {missing[:5]})")
        if not partial or len(missing) == expected:
            msg = (f"the run in {str(directory)!r} is not finished: {what}; run it again "
                   f"first (read_catalogue(..., partial=True) reads the finished ones)")
            raise ParameterError(msg)
        warnings.warn(f"reading the unfinished run in {str(directory)!r}: {what}",
                      GPMAstroWarning, stacklevel=3)
    records = [manifest.data["partitions"][f"{index:06d}"] for index in sorted(finished)]
    return ([directory / r["file"] for r in records], missing,
            sum(int(r["n_rows"]) for r in records))


def read_catalogue(directory, *, columns=None, partial=False):
    """Read a whole catalogue written by `gpm_astro.survey.run_catalogue` as one Table.

    Only the partitions the run's manifest records as finished (their files with the recorded
    checksums) are read, so a file left in ``partitions/`` by another plan or a crash is not.

    Parameters
    ----------
    directory : str or path-like
        The run's output folder (the one holding ``manifest.json`` and ``partitions/``).
    columns : sequence of str, optional
        Read only these columns.
    partial : bool, optional
        Read an unfinished run's finished partitions (with a `GPMAstroWarning`;
        ``meta["missing_partitions"]`` lists the others) instead of raising.

    Returns
    -------
    astropy.table.Table
        Rows in partition order (input row order), masked where a value is null; ``meta``
        from the first partition, without its ``partition`` entry.

    Raises
    ------
    ParameterError
        No manifest in ``directory``, or a partition not finished (unless ``partial``).
    """
    import pyarrow.parquet as pq

    from ..exceptions import ParameterError

    files, missing, recorded = finished_partition_files(directory, partial=partial)
    dataset = pq.ParquetDataset([str(f) for f in files])
    arrow = dataset.read(columns=None if columns is None else list(columns))
    if arrow.num_rows != recorded:
        msg = (f"read {arrow.num_rows} rows from the {len(files)} finished partition files "
               f"of {str(directory)!r}, but its manifest records {recorded}")
        raise ParameterError(msg)
    first = pq.read_schema(files[0])
    table = _to_astropy(arrow.replace_schema_metadata(first.metadata))
    table.meta.pop("partition", None)  # one partition's numbers, not the catalogue's
    if missing:
        table.meta["missing_partitions"] = missing
    return table
