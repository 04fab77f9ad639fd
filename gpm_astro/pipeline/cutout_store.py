"""HDF5 cutout stores written atomically, and the table files the stages exchange."""

import os
from pathlib import Path

import numpy as np

from ..exceptions import ParameterError
from ..io import new_file_mode, partial_file

def write_cutouts(path, cutouts, *, compress=False):
    """Write an (n, 3, H, W) float32 array to an HDF5 file (dataset ``images``), atomically.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from gpm_astro.pipeline import read_cutouts, write_cutouts
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.h5"
    >>> write_cutouts(path, np.ones((4, 3, 8, 8)))
    >>> read_cutouts(path, [2, 0]).shape
    (2, 3, 8, 8)
    """
    cutouts = np.asarray(cutouts, dtype=np.float32)
    with CutoutWriter(path, len(cutouts), cutouts.shape[1:], compress=compress) as out:
        out.write(0, cutouts)


def read_cutouts(path, rows=None):
    """Read cutouts from a file written by `write_cutouts`; ``rows`` selects (any order).

    The file is opened without HDF5 file locking, so a store that a forked worker process
    still holds open can be read.
    """
    import h5py

    with h5py.File(path, "r", locking=False) as handle:
        images = handle["images"]
        if rows is None:
            return images[...]
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros((0,) + images.shape[1:], dtype=np.float32)
        unique, inverse = np.unique(rows, return_inverse=True)
        if unique[0] < 0 or unique[-1] >= len(images):
            msg = f"cutout rows must lie in [0, {len(images)}), got {unique[0]}..{unique[-1]}"
            raise ParameterError(msg)
        data = np.empty((len(unique),) + images.shape[1:], dtype=np.float32)
        # read runs of consecutive rows as slices (h5py's point selection is slow)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        for run_start, run_stop in zip(np.r_[0, breaks], np.r_[breaks, len(unique)]):
            first = unique[run_start]
            data[run_start:run_stop] = images[first:first + run_stop - run_start]
        return data[inverse.ravel()]


class CutoutWriter:
    """Fill an HDF5 cutout store (dataset ``images``) piece by piece; it appears atomically.

    Use as a context manager: the file takes its final name only when the block ends without
    an error, so an interrupted run never leaves a half-written store under the final name.

    Parameters
    ----------
    path : path-like
        The final file.
    n_rows : int
        Number of cutouts.
    shape : tuple of int
        Shape of one cutout, e.g. (3, 152, 152).
    compress : bool, optional
        LZF compression (worth it for masked cutouts, which are mostly zeros).
    """

    def __init__(self, path, n_rows, shape, *, compress=False):
        self.path = Path(path)
        self.n_rows = int(n_rows)
        self.shape = tuple(shape)
        self.compress = compress

    def __enter__(self):
        import h5py

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = partial_file(self.path)  # a stale one of a killed run is removed
        os.close(fd)
        self._file = h5py.File(self._tmp, "w")
        chunks = (1,) + self.shape if self.n_rows else None
        self.images = self._file.create_dataset(
            "images", shape=(self.n_rows,) + self.shape, dtype=np.float32, chunks=chunks,
            compression="lzf" if self.compress and self.n_rows else None)
        return self

    def write(self, start, cutouts):
        """Store ``cutouts`` at rows ``start, start + 1, ...``."""
        cutouts = np.asarray(cutouts, dtype=np.float32)
        self.images[start:start + len(cutouts)] = cutouts

    def __exit__(self, kind, value, traceback):
        self._file.close()
        if kind is None:
            os.chmod(self._tmp, new_file_mode())
            os.replace(self._tmp, self.path)
        elif os.path.exists(self._tmp):
            os.unlink(self._tmp)
        return False


def with_cutout_store(table, store, rows_column):
    """Record in ``table.meta`` where its cutouts are: the store's path relative to the table's
    folder and the column of store rows. `gpm_astro.io.read_table` with ``attach_cutouts=True``
    (as every command reads its input) then gives the table its ``cutout`` column back, so a
    stage can be rerun on an intermediate table alone. Returns ``table``."""
    table.meta["cutout_store"] = store
    table.meta["cutout_rows"] = rows_column
    return table


def _write_table(table, path):
    from ..io import write_table

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, path, overwrite=True)


def _read_table(path):
    from ..io import read_table

    return read_table(path)

