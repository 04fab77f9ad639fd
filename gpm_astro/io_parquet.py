"""Parquet read-back repair: the shape of multi-dimensional columns.

astropy writes a column of shape (n, 3, 152, 152) to Parquet as a flat list of 69,312 values
per row and records the shape only in its YAML header (``subtype: float32[3,152,152]``); its
reader gives the column back as (n, 69312). `restore_array_shapes` reads that header and gives
each such column its shape again, so a table of cutouts survives `gpm_astro.io.write_table`
and `gpm_astro.io.read_table` in Parquet as in every other format.
"""

import re

import numpy as np

__all__ = ["restore_array_shapes"]

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
