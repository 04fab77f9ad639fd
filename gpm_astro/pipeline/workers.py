"""Worker processes of the pipeline's stages."""

import os

from ..exceptions import ParameterError


def _n_jobs(value):
    """Worker processes: a positive integer, or -1 / "all" for every core."""
    if value in (-1, "all"):
        return os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"n_jobs must be a positive integer, -1 or 'all', got {value!r}"
        raise ParameterError(msg)
    return value

