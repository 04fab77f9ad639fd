"""The ``mock`` data source: the mock sky behind the `gpm_astro.base.DataSource` interface."""

from gpm_astro.base import PipelineSource, PipelineTables
from gpm_astro.exceptions import ParameterError

from .sky import MockSky

__all__ = ["MockSource"]

_TABLES = ("images", "labels", "truth")


class MockSource(MockSky, PipelineSource):
    """Data source ``mock``: labels, image catalogue with cutouts, and truth of a `MockSky`.

    Takes exactly `MockSky`'s parameters. ``query(table=...)`` returns one of the three tables
    (the sky is generated once and kept); ``iter_query(table="images", chunk_size=...)`` draws
    the cutouts chunk by chunk, with bounded memory. As a `~gpm_astro.base.PipelineSource` it
    feeds a run: the catalogues first, then the cutouts of any chunk of rows.

    Examples
    --------
    >>> from gpm_astro.plugins import get_source
    >>> source = get_source("mock")(n_galaxies=8, seed=4)
    >>> len(source.query(table="images"))
    8
    >>> [len(t) for t in source.iter_query(table="images", chunk_size=5)]
    [5, 3]
    """

    name = "mock"
    provides = ("labels", "catalog", "cutouts")

    def query(self, *, table="images"):
        """Return ``table``: ``"images"`` (with cutouts), ``"labels"`` or ``"truth"``.

        Raises
        ------
        ParameterError
            If ``table`` is not one of those names.
        """
        _check_table(table)
        if getattr(self, "_data", None) is None or self._data_params != self.get_params():
            self._data = self.generate()
            self._data_params = self.get_params()
        return getattr(self._data, table)

    def iter_query(self, *, chunk_size=10_000, table="images"):
        """Yield ``table`` in Tables of at most ``chunk_size`` rows.

        Images are drawn chunk by chunk; labels and truth are small and sliced.
        """
        _check_table(table)
        if table == "images":
            for chunk in self.iter_generate(chunk_size):
                yield chunk.images
            return
        labels, _, truth = self.catalog()
        whole = labels if table == "labels" else truth
        for start in range(0, len(whole), chunk_size):
            yield whole[start:start + chunk_size]


    def check_params(self):
        """Check the parameters (counts, rates, seed) without drawing anything."""
        self._validate()

    def pipeline_tables(self):
        """The label table, the image catalogue (no cutouts) and the truth."""
        labels, images, truth = self.catalog()
        return PipelineTables(labels=labels, images=images, truth=truth)

    def pipeline_cutouts(self, images, truth=None):
        """Draw the cutouts of ``images`` rows from their ``truth`` rows."""
        if truth is None:
            msg = "the mock sky draws a cutout from its truth row; pass the matching truth rows"
            raise ParameterError(msg)
        return self.render(images, truth)


def _check_table(table):
    if table not in _TABLES:
        msg = f"table must be one of {_TABLES}, got {table!r}"
        raise ParameterError(msg)
