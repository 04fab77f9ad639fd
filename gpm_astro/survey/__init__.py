"""At survey scale: the application catalogue of millions of galaxies on Dask.

`run_catalogue` splits the selected rows of an image source into partitions, runs one Dask
task per partition (the same `preprocess_cutouts`, `predict_metallicity` and `make_catalogue`
a user calls on a small table), writes one Parquet file per partition atomically and records
it in ``manifest.json``; a rerun computes only what is missing. `read_catalogue` and
`merge_catalogue` read the result back. `run_preprocess` cleans the labelled sample the same
way into an archive folder that GPM-ResNet trains from batch by batch. See
docs/survey_scale.rst.
"""

from .engine import CatalogueRunError, format_summary, run_catalogue
from .merge import merge_catalogue
from .parquet import CATALOGUE_SCHEMA, read_catalogue, read_partition
from .partitions import Partition, plan_partitions
from .preprocess_run import run_preprocess

__all__ = ["run_catalogue", "run_preprocess", "read_catalogue", "read_partition", "merge_catalogue",
           "plan_partitions", "Partition", "CATALOGUE_SCHEMA", "CatalogueRunError",
           "format_summary"]
