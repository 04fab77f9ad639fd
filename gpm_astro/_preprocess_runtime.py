"""The process-level runtime of the parallel preprocessing (private).

A pool of worker processes kept for the session, batch buffers in memory-mapped files that
workers clean in place, and the glibc ``mallopt`` thresholds that let a batch's freed
temporaries be reused. `gpm_astro.preprocessing` drives it; nothing here knows about tables.
"""

import atexit
import functools
import os
import re
import shutil
import tempfile
import uuid
from collections import OrderedDict, deque
from contextlib import contextmanager

import numpy as np

from .process_pool import (forkserver_pool, remove_files_of_dead_processes,
                           require_child_processes)

_EXECUTORS = {}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


@functools.lru_cache(maxsize=None)
def _keep_freed_memory():
    """Let glibc's malloc keep a batch's freed temporaries for the next batch.

    By default glibc gives large freed blocks back to the kernel and the next batch faults
    them in again (~4,000 page faults, ~0.17 ms a cutout of system time with batches of 64).
    The thresholds set here, 32 MB for serving a request by ``mmap`` and 64 MB of free heap
    before trimming, are the largest values glibc's own adaptive thresholds reach. Done once
    per process; nothing happens where the C library is not glibc.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 * 2 ** 20)
                and mallopt(_M_TRIM_THRESHOLD, 64 * 2 ** 20))


@contextmanager
def _opencv_threads(count):
    """OpenCV on ``count`` threads for the block (None: unchanged): while workers run, this
    process's OpenCV calls must not take their cores."""
    if count is None:
        yield
        return
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _worker_setup():
    import cv2

    _keep_freed_memory()
    cv2.setNumThreads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def _executor(n_jobs):
    """A process pool kept for the session, so chunk after chunk does not pay its start."""
    pool = _EXECUTORS.get(n_jobs)
    if pool is None:
        require_child_processes("preprocessing with n_jobs > 1")
        pool = forkserver_pool(n_jobs, initializer=_worker_setup)
        _EXECUTORS[n_jobs] = pool
    return pool


@atexit.register
def _shutdown_executors(wait=False):
    """End the kept process pools (``wait``: until their processes have exited)."""
    for pool in _EXECUTORS.values():
        pool.shutdown(wait=wait, cancel_futures=True)
    _EXECUTORS.clear()


class _SharedSlots:
    """Reusable batch buffers in memory-mapped files that worker processes clean in place.

    The parent copies a batch into a free slot, a worker cleans it there, and the parent
    copies it back: only the names of the files, flags and per-row columns go through the
    pool's pipe (pickling the pixels kept two processes at ~1.1x of one), and the pages of a
    slot are reused batch after batch. The files lie in ``/dev/shm`` (RAM) when it has room,
    else in the temporary directory, and are deleted by `close`.
    """

    def __init__(self, count, batch_shape):
        self.shape = tuple(int(n) for n in batch_shape)
        size = int(np.prod(self.shape)) * 4
        directory = None
        if os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 2 * count * size:
            directory = "/dev/shm"
        self.paths, self.arrays = [], []
        remove_stale_buffers()
        # a name never used before, so that a worker's kept mapping of a deleted buffer file
        # can never be mistaken for a new file that happens to get the same random name; the
        # process id tells a later run whether the writer is gone (`remove_stale_buffers`)
        prefix = f"{BUFFER_PREFIX}{os.getpid()}_{uuid.uuid4().hex}_"
        try:
            for _ in range(count):
                handle, path = tempfile.mkstemp(prefix=prefix, suffix=".f4", dir=directory)
                os.close(handle)
                self.paths.append(path)
                self.arrays.append(_map_buffer(path, self.shape, "w+"))
        except BaseException:
            self.close()
            raise
        self.free = deque(range(count))

    def close(self):
        for path in self.paths:
            if os.path.exists(path):
                os.unlink(path)
        self.paths, self.arrays = [], []


#: Start of every batch buffer file's name: ``gpm_astro_batch_<pid>_<uuid>_<random>.f4``.
BUFFER_PREFIX = "gpm_astro_batch_"
_BUFFER_NAME = re.compile(rf"^{BUFFER_PREFIX}(\d+)_[0-9a-f]{{32}}_.*\.f4$")


def remove_stale_buffers(directories=None):
    """Delete the batch buffer files of processes that no longer run.

    A run killed while preprocessing (SIGKILL, the OOM killer) cannot delete its buffers, and
    in ``/dev/shm`` they hold RAM; the next run of `preprocess_cutouts` with ``n_jobs > 1``
    calls this first. Files of live processes (another run going on) are kept.

    Returns
    -------
    list of str
        The files removed.
    """
    if directories is None:
        directories = ["/dev/shm", tempfile.gettempdir()]
    removed = []
    for directory in directories:
        removed += remove_files_of_dead_processes(directory, _BUFFER_NAME)
    return removed


def _map_buffer(path, shape, mode):
    """A float32 array over a buffer file ("w+": create it, "r+": an existing one)."""
    return np.asarray(np.memmap(path, np.float32, mode, shape=shape))


# in a worker: the slot files it has mapped, most recent last (mapping a file afresh for every
# batch cost ~0.2 ms a cutout in page faults)
_WORKER_MAPPINGS = OrderedDict()


def _run_slot(path, shape, n_rows, steps, pixel_scale, bands, n_slots):
    """In a worker: clean the first ``n_rows`` cutouts of a slot file, in place."""
    key = (path, shape)
    if key in _WORKER_MAPPINGS:
        _WORKER_MAPPINGS.move_to_end(key)
    else:
        _WORKER_MAPPINGS[key] = _map_buffer(path, shape, "r+")
        while len(_WORKER_MAPPINGS) > n_slots:  # slots of an earlier run (files deleted)
            _WORKER_MAPPINGS.popitem(last=False)
    batch = _WORKER_MAPPINGS[key][:n_rows]
    from .preprocessing import run_steps

    _, flags, columns = run_steps(batch, steps, pixel_scale=pixel_scale, bands=bands,
                                  copy=False)
    return flags, columns


def _clean_copy(cutouts, steps, pixel_scale, bands):
    """In a worker: clean a copy of ``cutouts`` (imports and first calls of every step)."""
    from .preprocessing import run_steps

    run_steps(cutouts, steps, pixel_scale=pixel_scale, bands=bands, copy=False)
    return os.getpid()


def start_cleaning_processes(n_workers, steps, cutouts, pixel_scale, bands):
    """Start the kept pool of ``n_workers`` processes now, each cleaning ``cutouts`` (a small
    batch), so that the first real batch waits for no process start and no import. Returns
    the processes' ids."""
    pool = _executor(n_workers)
    futures = [pool.submit(_clean_copy, cutouts, steps, pixel_scale, bands)
               for _ in range(n_workers)]
    return {future.result() for future in futures}
