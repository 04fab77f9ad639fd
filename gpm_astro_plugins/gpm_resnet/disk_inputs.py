"""Training GPM-ResNet from a cleaned sample on disk, batch by batch (out of core).

The paper trains on 25,000 of 195,023 labelled cutouts (277 kB each: 7 GB and 54 GB). Held in
memory they would not fit most machines, so `ArchiveInputs` is a torch ``Dataset`` over rows of
an archive-layout HDF5 folder (what `gpm_astro.survey.run_preprocess` writes for the labelled
galaxies): indexed by an increasing array of rows (one training batch) it reads those cutouts
from disk and returns the network input. `ArchiveFittingMixin.fit_archive` trains exactly as
`fit` does on a table (same rows, same batches, same result), with ``num_workers`` processes of
a torch ``DataLoader`` reading the next batches while the network trains.
"""

import numpy as np
import torch

from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.tables import boolean_column, missing_mask, optional_column

from .model import InputTransform

__all__ = ["ArchiveInputs", "ArchiveFittingMixin"]


class ArchiveInputs(torch.utils.data.Dataset):
    """Network inputs of some rows of an archive folder, read from disk on demand.

    Parameters
    ----------
    path : str
        Archive file or folder (``images_npix152_*.h5``; read through the
        ``legacysurvey_archive`` data source).
    rows : array-like of int
        Increasing archive rows; position ``i`` of the dataset is ``rows[i]``.
    transform : InputTransform
        Cutouts (nanomaggies) to network input.

    Notes
    -----
    ``dataset[index]`` takes an int, a slice or an increasing integer array and returns a
    float32 array (n, channels, size, size); only those rows are read. Nothing is opened until
    then, so the dataset can be sent to ``DataLoader`` worker processes.
    """

    def __init__(self, path, rows, transform):
        self.path = str(path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.transform = transform
        self._source = None

    def __len__(self):
        return len(self.rows)

    def __getstate__(self):
        return {"path": self.path, "rows": self.rows, "transform": self.transform,
                "_source": None}

    def _reader(self):
        if self._source is None:
            from gpm_astro.plugins import get_source

            self._source = get_source("legacysurvey_archive")(path=self.path)
        return self._source

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        positions = (np.arange(len(self.rows))[index] if isinstance(index, slice)
                     else np.asarray(index, dtype=np.int64))
        if len(positions) == 0:
            size = self.transform.config.input_size or self.transform.config.cutout_size
            return np.empty((0, len(self.transform.config.bands), size, size), np.float32)
        rows = self.rows[positions]
        cutouts = self._reader().query(rows=rows, columns=[], cutouts=True)["cutout"]
        return self.transform(np.asarray(cutouts)).numpy()


class ArchiveFittingMixin:
    """`fit_archive`: `fit` on a cleaned labelled sample stored in the archive layout."""

    def fit_archive(self, path, *, target=None, validation=None, num_workers=2):
        """Train on cleaned, labelled cutouts in an archive folder, reading them from disk.

        Parameters
        ----------
        path : str or path-like
            Archive file or folder holding ``images`` (cleaned cutouts), the ``target`` column
            and, usually, ``preprocess_ok`` (as `gpm_astro.survey.run_preprocess` writes).
            Only the catalogue columns are read in full; cutouts are read batch by batch.
        target : str, optional
            Column of true values (default as in `fit`).
        validation : str or path-like, optional
            Another such folder for validation; default: ``validation_fraction`` of the usable
            rows, drawn by ``seed`` exactly as `fit` draws them.
        num_workers : int, optional
            ``DataLoader`` processes reading training batches ahead (0: none, the batches
            are read in this process).

        Returns
        -------
        self

        Raises
        ------
        SchemaError
            The folder lacks the target column or holds cutouts of another shape.
        ParameterError
            Too few usable rows, or a bad hyper-parameter.
        """
        from gpm_astro.plugins import get_source

        target = self.default_target if target is None else target
        self._check_params()
        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) \
                or num_workers < 0:
            msg = f"num_workers must be an integer >= 0 (0: no reading process), got " \
                  f"{num_workers!r}"
            raise ParameterError(msg)
        config = self._resolved_config()
        source = get_source("legacysurvey_archive")
        table = source(path=str(path)).query(cutouts=False)
        bands = str(table.meta.get("bands", "grz"))
        size = int(source(path=str(path)).query(rows=[0], columns=[])["cutout"].shape[-1])
        config = config.replace(cutout_size=size)
        transform = InputTransform(config, bands)
        rows, skipped = _usable_archive_rows(table, target)
        if validation is None:
            order = np.random.default_rng(self.seed).permutation(len(rows))
            n_val = max(2, int(round(self.validation_fraction * len(rows))))
            val_rows, train_rows = np.sort(rows[order[:n_val]]), np.sort(rows[order[n_val:]])
            val_path, val_table, val_skipped = str(path), table, None
        else:
            val_path = str(validation)
            val_table = source(path=val_path).query(cutouts=False)
            train_rows = rows
            val_rows, val_skipped = _usable_archive_rows(val_table, target)
        if len(train_rows) < 2 or len(val_rows) < 2:
            msg = (f"need at least 2 usable training and 2 validation rows, got "
                   f"{len(train_rows)} and {len(val_rows)} (skipped: {skipped})")
            raise ParameterError(msg)
        train_y = np.asarray(np.ma.getdata(table[target][train_rows]), dtype=np.float64)
        val_y = np.asarray(np.ma.getdata(val_table[target][val_rows]), dtype=np.float64)
        summary = {"n_rows": len(table), "skipped": skipped, "validation_skipped": val_skipped,
                   "bands": bands, "cutout_size": size, "read_from": str(path)}
        # the validation rows calibrate the errors and the seeing correction, as in `fit`
        val_seeing = self._seeing(val_table, val_rows, bands)
        return self._fit_inputs(ArchiveInputs(path, table["archive_row"][train_rows], transform),
                                train_y,
                                ArchiveInputs(val_path, val_table["archive_row"][val_rows],
                                              transform),
                                val_y, config=config, target=target, summary=summary,
                                num_workers=num_workers,
                                calibration_set=(None, None, None, val_seeing),
                                validation_seeing=val_seeing)


def _usable_archive_rows(table, target):
    """Positions of rows with ``preprocess_ok`` (when present) and a target value."""
    if target not in table.colnames:
        msg = f"the archive holds no target column {target!r}; columns: {table.colnames}"
        raise SchemaError(msg)
    use = np.ones(len(table), dtype=bool)
    skipped = {"preprocess": 0, "missing_target": 0}
    ok_name = optional_column(table, "preprocess_ok", "fit_archive")  # ignoring case
    if ok_name is not None:
        ok = boolean_column(table[ok_name], "fit_archive")
        skipped["preprocess"] = int((~ok).sum())
        use &= ok
    no_target = missing_mask(table[target])
    skipped["missing_target"] = int((use & no_target).sum())
    use &= ~no_target
    return np.flatnonzero(use), skipped
