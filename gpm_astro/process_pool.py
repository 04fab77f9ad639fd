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

__all__ = ["forkserver_pool", "dead_worker_error", "resolve_n_jobs", "process_alive",
           "remove_files_of_dead_processes", "can_start_processes", "require_child_processes"]

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



def remove_files_of_dead_processes(directory, pattern):
    """Delete the files in ``directory`` written by processes that no longer run.

    Parameters
    ----------
    directory : str or path-like
        Folder to scan (not recursively); an unreadable or missing one removes nothing.
    pattern : re.Pattern
        Matches the names of the files to consider; its first group is the writer's process id.

    Returns
    -------
    list of str
        The files removed. A file another process removed first, or that may not be removed,
        is left alone.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or process_alive(int(match.group(1))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:  # another process cleaned it first, or no permission: not ours to force
            pass
    return removed


def _why_no_child_processes():
    """Why this process may not start the package's worker processes, or None when it may."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return ("needs worker processes started by multiprocessing's forkserver, which this "
                "platform does not have; use one process")
    if multiprocessing.current_process().daemon:
        return ("needs child processes, but this process is daemonic and may not start any "
                "(a Dask worker: start the workers with the Dask setting "
                "distributed.worker.daemon = False, e.g. DASK_DISTRIBUTED__WORKER__DAEMON=False "
                "in their environment, or use one process)")
    return None


def can_start_processes():
    """Whether this process may start the package's worker processes: it is not daemonic
    (multiprocessing forbids a daemonic process children; a Dask worker is daemonic unless
    ``distributed.worker.daemon`` is False) and the platform has the ``forkserver`` start
    method (not Windows)."""
    return _why_no_child_processes() is None


def require_child_processes(purpose):
    """Raise `~gpm_astro.exceptions.ParameterError` naming ``purpose`` where this process may
    not start the package's worker processes (`can_start_processes`)."""
    reason = _why_no_child_processes()
    if reason is not None:
        raise ParameterError(f"{purpose} {reason}")


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


def dead_worker_error(what, exc):
    """The package error for a pool whose worker process died (``exc``, a
    ``BrokenProcessPool``): names the usual cause, a script whose call is not under
    ``if __name__ == "__main__":`` (forkserver workers import the main module again)."""
    from .exceptions import GPMAstroError

    msg = (f"{what}: a worker process died ({exc}). In a script, worker processes import the "
           f"script again, so the call must sit under `if __name__ == \"__main__\":`; "
           f"otherwise the machine may be out of memory. n_jobs=1 uses no worker process")
    return GPMAstroError(msg)


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
