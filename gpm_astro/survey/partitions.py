"""Partitions: the row ranges of an image source that the engine schedules one task each.

A run's partitions are a pure function of the selected input rows and the partition size, so
a rerun of the same command plans exactly the same partitions and can skip those whose output
is already on disk. The plan's fingerprint (a SHA-256 of the row numbers and the size) is kept
in the manifest; a rerun with another selection is refused rather than mixed in.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

from ..exceptions import ParameterError
from ..tables import require_positive_int

__all__ = ["Partition", "plan_partitions", "plan_fingerprint", "select_input_rows"]


@dataclass(frozen=True)
class Partition:
    """One task's share of the input: ``rows`` (increasing input row numbers).

    Attributes
    ----------
    index : int
        Position in the plan, from 0; names the output file (``part-000012.parquet``).
    rows : numpy.ndarray of int64
        The input rows (numbered by the source, e.g. ``archive_row``) this partition covers.
    """

    index: int
    rows: np.ndarray

    @property
    def name(self):
        """The partition's file stem, e.g. ``part-000012``."""
        return f"part-{self.index:06d}"

    @property
    def n_rows(self):
        return int(len(self.rows))

    def describe(self):
        """A JSON-able summary: index, row count, first and last input row."""
        return {"index": self.index, "n_rows": self.n_rows,
                "first_row": int(self.rows[0]) if self.n_rows else None,
                "last_row": int(self.rows[-1]) if self.n_rows else None}


def select_input_rows(source, *, source_type=None):
    """Ask a data source which of its rows to catalogue.

    Parameters
    ----------
    source : gpm_astro.base.DataSource
        A source with ``select_rows(source_type=..., rows=...)`` returning increasing row
        numbers (``legacysurvey_archive`` and sources built on it).
    source_type : str or sequence of str, optional
        Tractor types to keep (``"EXP"`` for the paper's catalogue); None keeps every row.

    Returns
    -------
    numpy.ndarray of int64
        Increasing input row numbers.

    Raises
    ------
    ParameterError
        If the source cannot select rows.
    """
    select = getattr(source, "select_rows", None)
    if not callable(select):
        msg = (f"data source {type(source).__name__} has no select_rows method, so the "
               f"catalogue engine cannot split it into partitions; write its cutouts in the "
               f"archive layout first (legacysurvey_archive reads them)")
        raise ParameterError(msg)
    rows = select(source_type=source_type, rows=slice(None))
    return np.asarray(rows, dtype=np.int64)


def plan_partitions(rows, partition_size):
    """Cut increasing input rows into consecutive partitions of ``partition_size`` rows.

    Parameters
    ----------
    rows : array-like of int
        Increasing input row numbers (from `select_input_rows`).
    partition_size : int
        Rows per partition (the last one may be shorter).

    Returns
    -------
    list of Partition

    Raises
    ------
    ParameterError
        If ``partition_size`` is not a positive integer or ``rows`` is not increasing.

    Examples
    --------
    >>> [p.n_rows for p in plan_partitions(range(10), 4)]
    [4, 4, 2]
    >>> plan_partitions([3, 5, 9], 2)[1].describe()
    {'index': 1, 'n_rows': 1, 'first_row': 9, 'last_row': 9}
    """
    size = require_positive_int(partition_size, "partition_size")
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or np.any(np.diff(rows) <= 0):
        msg = f"input rows must be strictly increasing, got {rows[:10]!r}..."
        raise ParameterError(msg)
    return [Partition(index, rows[start:start + size])
            for index, start in enumerate(range(0, len(rows), size))]


def plan_fingerprint(rows, partition_size):
    """SHA-256 of the input rows and the partition size: equal plans have equal prints."""
    digest = hashlib.sha256()
    digest.update(np.asarray(rows, dtype="<i8").tobytes())
    digest.update(f"|{int(partition_size)}".encode())
    return digest.hexdigest()
