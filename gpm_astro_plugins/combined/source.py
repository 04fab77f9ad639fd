"""Data source ``combined``: a pipeline run on the real sky, from any registered sources.

The pipeline's ``sky`` stage wants three things: a label table, an image catalogue, and the
cutouts of that catalogue's rows. On the real sky they come from different services, so
`CombinedSky` takes each from a registered data source named in the configuration:

========== =================================================================================
part       sources
========== =================================================================================
labels     ``sdss_mpajhu`` (SkyServer), ``files`` (a table file), ``mock``, or any source
           whose ``query()`` returns MPA-JHU columns (or a ``file = PATH`` to read)
images     ``legacysurvey_archive`` (catalogue columns of the HDF5 archive, then cutouts by
           ``archive_row``); ``legacysurvey_cutouts`` (cutouts from the viewer's service for
           the rows of a ``catalog`` source, e.g. ``datalab_tap``); ``files``; ``mock``
========== =================================================================================

A configuration (``gpm-astro run real.toml``)::

    [source]
    name = "combined"
    [source.params.labels]
    source = "sdss_mpajhu"
    params = {plates_per_chunk = 200}
    [source.params.images]
    source = "legacysurvey_cutouts"
    params = {layer = "ls-dr9"}
    catalog = {source = "datalab_tap", params = {types = ["EXP"], cone = [185.0, 15.0, 1.0]}}

The source keeps only names and parameters, so it can be sent to the pipeline's worker
processes; the services are asked only when the stage runs.
"""

import numpy as np

from gpm_astro.base import PipelineSource, PipelineTables
from gpm_astro.exceptions import ParameterError, SchemaError
from gpm_astro.survey_constants import CUTOUT_SHAPE

__all__ = ["CombinedSky"]

_PART_KEYS = {"labels": ("source", "params", "query", "file"),
              "images": ("source", "params", "query", "file", "catalog")}
#: image sources that serve cutouts by archive row, and those that fetch them by position
_BY_ROW = ("legacysurvey_archive",)
_BY_POSITION = ("legacysurvey_cutouts",)


def _part(spec, what):
    if not isinstance(spec, dict):
        msg = f"source.params.{what} must be a mapping, got {spec!r}"
        raise ParameterError(msg)
    unknown = sorted(set(spec) - set(_PART_KEYS[what]))
    if unknown:
        msg = (f"unknown key(s) {unknown} in source.params.{what}; valid keys: "
               f"{list(_PART_KEYS[what])}")
        raise ParameterError(msg)
    if ("source" in spec) == ("file" in spec):
        msg = f"source.params.{what} needs exactly one of 'source' or 'file', got {spec!r}"
        raise ParameterError(msg)
    return spec


def _make(spec):
    from gpm_astro.plugins import get_source

    return get_source(spec["source"])(**dict(spec.get("params") or {}))


class CombinedSky(PipelineSource):
    """Labels from one registered data source, the image catalogue and cutouts from another.

    Parameters
    ----------
    labels : dict
        ``source`` (a registered name) with its ``params`` and ``query`` keywords, or ``file``
        (a table file).
    images : dict
        ``source`` with ``params`` and ``query`` keywords, or ``file`` (a table with a
        ``cutout`` column). For ``legacysurvey_cutouts``, ``catalog`` names the source of the
        positions (``{source, params, query}``, e.g. ``datalab_tap``).

    Examples
    --------
    >>> CombinedSky(labels={"file": "labels.fits"},
    ...             images={"source": "legacysurvey_archive",
    ...                     "params": {"path": "images/"}}).check_params()
    """

    name = "combined"
    provides = ("labels", "catalog", "cutouts")

    def __init__(self, *, labels=None, images=None):
        self.labels = labels
        self.images = images

    def check_params(self):
        """Check the two parts' keys and that the named sources exist."""
        from gpm_astro.plugins import get_source

        for what in ("labels", "images"):
            spec = _part(getattr(self, what), what)
            if "source" in spec:
                get_source(spec["source"])
        images = self.images
        if images.get("source") in _BY_POSITION and "catalog" not in images:
            msg = (f"images from {images['source']!r} need a 'catalog' (the source of the "
                   f"positions, e.g. {{source = 'datalab_tap', params = {{...}}}})")
            raise ParameterError(msg)
        if "catalog" in images:
            _part(images["catalog"], "labels")  # same keys: source, params, query
            get_source(images["catalog"]["source"])

    def query(self, *, table="images"):
        """The label table (``table="labels"``) or the image catalogue (``"images"``)."""
        tables = self.pipeline_tables()
        if table not in ("labels", "images"):
            msg = f"table must be 'labels' or 'images', got {table!r}"
            raise ParameterError(msg)
        return getattr(tables, table)

    # ------------------------------------------------------------------ the two parts
    def _read(self, spec, what):
        from gpm_astro.io import read_table

        if "file" in spec:
            return read_table(spec["file"])
        source = _make(spec)
        if isinstance(source, PipelineSource) and not spec.get("query"):
            return getattr(source.pipeline_tables(), what)
        return source.query(**dict(spec.get("query") or {}))

    def _image_catalogue(self):
        spec = self.images
        if spec.get("source") in _BY_ROW:
            query = {**dict(spec.get("query") or {}), "cutouts": False}
            return _make(spec).query(**query)
        if spec.get("source") in _BY_POSITION:
            return self._read(spec["catalog"], "images")
        table = self._read(spec, "images")
        if "cutout" in table.colnames:
            table = table.copy(copy_data=False)
            table.remove_column("cutout")
        return table

    def pipeline_tables(self):
        """Ask the label source and the image source for their tables."""
        self.check_params()
        return PipelineTables(labels=self._read(self.labels, "labels"),
                              images=self._image_catalogue(), truth=None)

    def pipeline_cutouts(self, images, truth=None):
        """Cutouts of ``images`` rows: read by ``archive_row``, fetched by position, or taken
        from the image source's own `pipeline_cutouts` or ``cutout`` column."""
        spec = self.images
        if spec.get("source") in _BY_ROW:
            rows = np.asarray(images["archive_row"], dtype=np.int64)
            order = np.argsort(rows, kind="stable")
            read = _make(spec).query(rows=rows[order], columns=[], cutouts=True)
            cutouts = np.empty((len(rows),) + CUTOUT_SHAPE, np.float32)
            cutouts[order] = np.asarray(read["cutout"], dtype=np.float32)
            return cutouts
        if spec.get("source") in _BY_POSITION:
            fetched = _make(spec).query(images, ra_column="ra", dec_column="dec")
            cutouts = np.asarray(np.ma.filled(fetched["cutout"], np.nan), dtype=np.float32)
            return cutouts  # a failed fetch is all NaN: preprocessing flags it invalid_pixels
        source = None if "file" in spec else _make(spec)
        if isinstance(source, PipelineSource):
            return source.pipeline_cutouts(images, truth)
        table = self._read(spec, "images")
        if "cutout" not in table.colnames:
            msg = (f"image source {spec!r} gives no cutouts; use legacysurvey_archive, "
                   f"legacysurvey_cutouts with a catalog, a table with a cutout column, or mock")
            raise SchemaError(msg)
        return np.asarray(table["cutout"], np.float32)[np.asarray(images["image_row"])]
