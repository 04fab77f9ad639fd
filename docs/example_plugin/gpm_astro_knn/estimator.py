"""`NearestNeighbourZ`: metallicity from colours by k nearest neighbours (numpy only)."""

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table

from gpm_astro.base import Estimator
from gpm_astro.exceptions import GPMAstroError, ParameterError, SchemaError
from gpm_astro.tables import missing_mask, require_columns, require_table

FLUX_COLUMNS = ("flux_g", "flux_r", "flux_z")


def colours(table):
    """Return (g - r, r - z) and a flag per row ("ok" or "invalid_flux").

    Magnitudes are m = 22.5 - 2.5 log10(flux / nanomaggy); a masked, missing or non-positive
    flux cannot give a colour.
    """
    require_columns(table, FLUX_COLUMNS, what="nearest_neighbour_z")
    fluxes = []
    bad = np.zeros(len(table), dtype=bool)
    for name in FLUX_COLUMNS:
        column = table[name]
        values = np.ma.getdata(np.ma.asanyarray(column)).astype(np.float64)
        if column.unit is not None:
            values = (values * column.unit).to_value(u.nanomaggy)
        with np.errstate(invalid="ignore"):
            bad |= missing_mask(column) | ~(values > 0)
        fluxes.append(np.where(bad, 1.0, values))
    g, r, z = (22.5 - 2.5 * np.log10(f) for f in fluxes)
    features = np.column_stack([g - r, r - z])
    flags = np.where(bad, "invalid_flux", "ok")
    return features, flags


class NearestNeighbourZ(Estimator):
    """Predict Z as the mean Z of the ``k`` training galaxies nearest in colour.

    Parameters
    ----------
    k : int, optional
        Number of neighbours averaged. The error column is their standard deviation.
    chunk_size : int, optional
        Rows compared with the training set at once (bounds memory to chunk_size x n_train).

    Examples
    --------
    >>> from astropy.table import Table
    >>> train = Table({"flux_g": [1.0, 2.0, 4.0], "flux_r": [2.0, 2.0, 2.0],
    ...                "flux_z": [3.0, 2.0, 1.0], "oh_p50": [9.1, 8.9, 8.6]})
    >>> knn = NearestNeighbourZ(k=1).fit(train)
    >>> knn.predict(train[:2])["Z_pred"].tolist()
    [9.1, 8.9]
    """

    name = "nearest_neighbour_z"
    required_columns = FLUX_COLUMNS

    def __init__(self, *, k=5, chunk_size=512):
        self.k = k
        self.chunk_size = chunk_size

    def _check_params(self):
        for name in ("k", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                msg = f"{name} must be a positive integer, got {value!r}"
                raise ParameterError(msg)

    def fit(self, table, *, target="oh_p50", validation=None):
        """Store the colours and metallicities of the usable training rows (a nearest-neighbour
        lookup learns nothing from validation rows: ``uses_validation`` stays False). Returns
        self."""
        self._check_params()
        require_table(table)
        require_columns(table, (target,), what="nearest_neighbour_z fit")
        features, flags = colours(table)
        usable = (flags == "ok") & ~missing_mask(table[target])
        if usable.sum() < self.k:
            msg = (f"nearest_neighbour_z needs at least k={self.k} training rows with valid "
                   f"fluxes and {target}, got {int(usable.sum())}")
            raise SchemaError(msg)
        self.colours_ = features[usable]
        self.targets_ = np.asarray(np.ma.getdata(table[target]), dtype=np.float64)[usable]
        return self

    def predict(self, table):
        """Return Z_pred, Z_pred_err (dex) and Z_pred_flag, one row per input row, in order."""
        require_table(table)
        if not hasattr(self, "colours_"):
            msg = "this NearestNeighbourZ is not fitted: call fit(training_table) first"
            raise GPMAstroError(msg)
        features, flags = colours(table)
        prediction = np.zeros(len(table))
        spread = np.zeros(len(table))
        rows = np.flatnonzero(flags == "ok")
        for start in range(0, len(rows), self.chunk_size):
            chunk = rows[start:start + self.chunk_size]
            distance = ((features[chunk, None, :] - self.colours_[None]) ** 2).sum(axis=2)
            nearest = np.argsort(distance, axis=1, kind="stable")[:, :self.k]
            neighbour_z = self.targets_[nearest]
            prediction[chunk] = neighbour_z.mean(axis=1)
            spread[chunk] = neighbour_z.std(axis=1)
        missing = flags != "ok"
        return Table({
            "Z_pred": MaskedColumn(prediction, mask=missing, unit=u.dex),
            "Z_pred_err": MaskedColumn(spread, mask=missing, unit=u.dex),
            "Z_pred_flag": flags.astype("<U12"),
        })
