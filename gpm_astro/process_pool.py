"""Worker processes: the one way the package starts a process pool.

Pools use the ``forkserver`` start method: a plain ``fork`` copies locks that the parent's
threads hold at that moment (torch, OpenCV, an import in progress), and the child can then
deadlock on them.
"""

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from .exceptions import ParameterError

__all__ = ["forkserver_pool", "resolve_n_jobs"]


def forkserver_pool(n_workers, *, initializer=None):
    """A `~concurrent.futures.ProcessPoolExecutor` of ``n_workers`` forkserver processes.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    initializer : callable, optional
        Run once in each worker when it starts.

    Returns
    -------
    concurrent.futures.ProcessPoolExecutor
    """
    context = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(max_workers=n_workers, initializer=initializer,
                               mp_context=context)


def resolve_n_jobs(value):
    """Worker processes: a positive integer, or -1 / "all" for every core.

    Examples
    --------
    >>> resolve_n_jobs(3)
    3
    """
    if value in (-1, "all"):
        return os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"n_jobs must be a positive integer, -1 or 'all', got {value!r}"
        raise ParameterError(msg)
    return value
