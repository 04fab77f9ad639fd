"""The ``files`` data source: a label table and an image catalogue (with cutouts) on disk."""

import numpy as np

from gpm_astro.base import PipelineSource, PipelineTables
from gpm_astro.exceptions import ParameterError, SchemaError

__all__ = ["TableFiles"]

_TABLES = ("images", "labels", "truth")


class TableFiles(PipelineSource):
    """Data source ``files``: tables you made, in any format `gpm_astro.io.read_table` reads.

    Parameters
    ----------
    labels : str or path-like
        The spectroscopic label table (MPA-JHU column names).
    images : str or path-like
        The image catalogue, with a ``cutout`` column (n, 3, 152, 152) of g, r, z nanomaggies.
    truth : str or path-like, optional
        A truth table, one row per image row (e.g. ``Z_best`` for a noise floor).

    Examples
    --------
    >>> from gpm_astro.plugins import get_source
    >>> get_source("files")(labels="labels.fits", images="images.fits").check_params()
    """

    name = "files"
    provides = ("labels", "catalog", "cutouts")

    def __init__(self, *, labels=None, images=None, truth=None):
        self.labels = labels
        self.images = images
        self.truth = truth

    def check_params(self):
        """Both ``labels`` and ``images`` must be given."""
        if not (self.labels and self.images):
            msg = (f"data source 'files' needs source.labels and source.images, got "
                   f"labels={self.labels!r}, images={self.images!r}")
            raise ParameterError(msg)

    def query(self, *, table="images"):
        """Read ``table``: ``"images"``, ``"labels"`` or ``"truth"`` (None when not given)."""
        from gpm_astro.io import read_table

        if table not in _TABLES:
            msg = f"table must be one of {_TABLES}, got {table!r}"
            raise ParameterError(msg)
        self.check_params()
        path = getattr(self, table)
        return read_table(path) if path else None

    def pipeline_tables(self):
        """Read the files; the image catalogue's cutouts are kept for `pipeline_cutouts`.

        Raises
        ------
        SchemaError
            If the image catalogue has no ``cutout`` column.
        """
        labels, images, truth = (self.query(table=t) for t in ("labels", "images", "truth"))
        if "cutout" not in images.colnames:
            msg = (f"the image catalogue needs a 'cutout' column (n, 3, 152, 152) of g, r, z "
                   f"nanomaggies; columns present: {images.colnames}")
            raise SchemaError(msg)
        self._cutouts = np.asarray(images["cutout"], dtype=np.float32)
        catalogue = images.copy(copy_data=False)
        catalogue.remove_column("cutout")
        return PipelineTables(labels=labels, images=catalogue, truth=truth)

    def pipeline_cutouts(self, images, truth=None):
        """The cutouts of ``images`` rows, by their ``image_row``."""
        if getattr(self, "_cutouts", None) is None:
            self.pipeline_tables()
        return self._cutouts[np.asarray(images["image_row"], dtype=np.int64)]
