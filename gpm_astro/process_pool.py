"""Worker processes: the one way the package starts a process pool.

Pools use the ``forkserver`` start method: a plain ``fork`` copies locks that the parent's
threads hold at that moment (torch, OpenCV, an import in progress), and the child can then
deadlock on them.

Workers die with the process that made the pool: each watches it (a pidfd on Linux, else a
poll every half second) and exits when it is gone, so a parent killed by SIGKILL or the OOM
killer leaves no worker behind (multiprocessing's own pipes never tell them: every worker
holds a writing end of the task queue itself).
"""

import functools
import multiprocessing
import os
import select
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from .exceptions import ParameterError

__all__ = ["forkserver_pool", "resolve_n_jobs", "process_alive"]

#: Seconds between two checks of the parent where no pidfd can be opened.
PARENT_POLL_SECONDS = 0.5


def process_alive(pid):
    """True when a process with id ``pid`` exists (ours or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _exit_when_gone(pid):
    """In a worker: end this process as soon as process ``pid`` ends."""
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or the parent is gone already
        handle = None

    def watch():
        if handle is not None:
            select.select([handle], [], [])  # readable when the process has ended
        else:
            while process_alive(pid):
                time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="gpm_astro-parent-watch", daemon=True).start()


def _start_worker(parent_pid, initializer):
    _exit_when_gone(parent_pid)
    if initializer is not None:
        initializer()


def forkserver_pool(n_workers, *, initializer=None):
    """A `~concurrent.futures.ProcessPoolExecutor` of ``n_workers`` forkserver processes.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    initializer : callable, optional
        Run once in each worker when it starts (after the watch on this process is set up).

    Returns
    -------
    concurrent.futures.ProcessPoolExecutor
    """
    context = multiprocessing.get_context("forkserver")
    start = functools.partial(_start_worker, os.getpid(), initializer)
    return ProcessPoolExecutor(max_workers=n_workers, initializer=start, mp_context=context)


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
