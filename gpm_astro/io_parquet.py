"""Parquet read-back repairs: the shape of multi-dimensional columns, and null values.

astropy writes a column of shape (n, 3, 152, 152) to Parquet as a flat list of 69,312 values
per row and records the shape only in its YAML header (``subtype: float32[3,152,152]``); its
reader gives the column back as (n, 69312). `restore_array_shapes` reads that header and gives
each such column its shape again, so a table of cutouts survives `gpm_astro.io.write_table`
and `gpm_astro.io.read_table` in Parquet as in every other format.

astropy's reader also turns nulls (what a catalogue partition holds where a value is missing)
into NaN without a mask, and an integer column with nulls into float64, which loses the low
bits of 64-bit identifiers; `restore_nulls` reads those columns again with pyarrow and gives
them back as masked columns of their own type.
"""

import re

import numpy as np

__all__ = ["restore_array_shapes", "restore_nulls"]

_SHAPE = re.compile(r"\[(\d+(?:,\d+)*)\]$")


def _recorded_shapes(path):
    """Column name -> per-row shape, from the astropy header of a Parquet file (empty when
    the file has none, e.g. one written by pandas)."""
    import pyarrow.parquet as pq
    from astropy.table.meta import get_header_from_yaml

    metadata = pq.read_schema(path).metadata or {}
    text = metadata.get(b"table_meta_yaml")
    if text is None:
        return {}
    header = get_header_from_yaml(text.decode("utf-8").splitlines())
    shapes = {}
    for entry in header.get("datatype", []):
        found = _SHAPE.search(str(entry.get("subtype", "")))
        if found:
            shapes[entry["name"]] = tuple(int(n) for n in found.group(1).split(","))
    return shapes


def restore_array_shapes(table, path):
    """In place: give each column that astropy flattened in the Parquet file ``path`` the
    per-row shape its header records (only where the sizes agree)."""
    for name, shape in _recorded_shapes(path).items():
        if name not in table.colnames:
            continue
        column = table[name]
        if column.shape[1:] != shape and int(np.prod(column.shape[1:])) == int(np.prod(shape)):
            table[name] = column.reshape((len(column),) + shape)


def _columns_with_nulls(parquet):
    """Names of the columns whose row-group statistics count nulls, or do not say."""
    metadata = parquet.metadata
    names = set()
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            stats = chunk.statistics
            if stats is None or not stats.has_null_count or stats.null_count > 0:
                names.add(chunk.path_in_schema.split(".")[0])
    return sorted(names)


def restore_nulls(table, path):
    """In place: each flat column with nulls in the Parquet file ``path`` becomes a masked
    column of the file's type (integers stay integers), keeping unit and description."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import MaskedColumn

    parquet = pq.ParquetFile(path)
    names = [n for n in _columns_with_nulls(parquet) if n in table.colnames]
    if not names:
        return
    arrow = parquet.read(columns=names)
    for field, column in zip(arrow.schema, arrow.columns):
        kind = field.type
        if column.null_count == 0 or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                          or pa.types.is_boolean(kind)
                                          or pa.types.is_string(kind)):
            continue
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_string(kind):
            data = np.asarray(column.fill_null("").to_pylist(), dtype=str)
        else:
            fill = np.nan if pa.types.is_floating(kind) else 0
            data = column.fill_null(pa.scalar(fill).cast(kind)).to_numpy(zero_copy_only=False)
        old = table[field.name]
        table[field.name] = MaskedColumn(data, mask=nulls, unit=old.unit,
                                         description=old.description, format=old.format,
                                         meta=old.meta)
