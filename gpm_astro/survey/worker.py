"""The Dask worker plugin that holds the estimator: loaded once per worker, never shipped.

`EstimatorPlugin` carries only the estimator's name, the weights' name or path, the fit
table's path and keyword parameters. When a worker joins the cluster (also a worker started
again after a crash), Dask runs `EstimatorPlugin.setup` there, which loads the weights (or
fits a seconds-long estimator on the fit table) into the worker's memory. Partition tasks
then find it with `worker_estimator`.

An estimator is not thread-safe (GPM-ResNet switches its DropBlock layers on for the Monte
Carlo passes and seeds torch's global generator), so a worker running several tasks at once
predicts with one of them at a time (`EstimatorPlugin.lock`); their reading and preprocessing
still run side by side.
"""

import sys
import threading
import warnings

import numpy as np
from distributed import WorkerPlugin, get_worker

from ..exceptions import GPMAstroError, GPMAstroWarning
from ..process_pool import can_start_processes

__all__ = ["PLUGIN_NAME", "EstimatorPlugin", "worker_estimator", "load_estimator"]

PLUGIN_NAME = "gpm-astro-estimator"


def load_estimator(model):
    """Resolve the estimator described by ``model`` (a dict from the run's recipe).

    Parameters
    ----------
    model : dict
        ``estimator`` (registered name), ``weights`` (name or path, or None), ``fit_table``
        (path or None), ``fit_target`` and ``params`` (constructor keywords).

    Returns
    -------
    gpm_astro.base.Estimator
    """
    from ..estimation import resolve_estimator
    from ..io import read_table

    fit_table = read_table(model["fit_table"]) if model.get("fit_table") else None
    return resolve_estimator(model["estimator"], weights=model.get("weights"),
                             fit_table=fit_table, fit_target=model.get("fit_target"),
                             **model.get("params", {}))


class EstimatorPlugin(WorkerPlugin):
    """Load the catalogue's estimator on every worker, once.

    Parameters
    ----------
    model : dict
        See `load_estimator`.
    torch_threads : int, optional
        Threads torch uses in this worker (default 1: one worker per core). The same on every
        worker, so a prediction never depends on which worker made it. OpenCV (the
        preprocessing) gets as many, so that a worker of one core does not spread onto the
        others' cores (the cleaned cutouts do not depend on it).
    cleaning : dict, optional
        ``preprocess`` (configuration) and ``processes``: where the worker may start
        processes, start that many cleaning processes for the tasks' prefetch now and let each
        clean one synthetic cutout, so that the first partition waits for no process start
        and no import (about 2 s); if that fails, a `GPMAstroWarning` says why and each task
        starts it itself. None: start none here.
    """

    name = PLUGIN_NAME

    def __init__(self, model, *, torch_threads=1, cleaning=None):
        self.model = model
        self.torch_threads = torch_threads
        self.cleaning = cleaning
        self.cleaning_pids = set()
        self.estimator = None
        self.error = None
        self.lock = None

    def __getstate__(self):  # the lock and the loaded model stay on their worker
        return {"model": self.model, "torch_threads": self.torch_threads,
                "cleaning": self.cleaning}

    def __setstate__(self, state):
        self.__init__(state["model"], torch_threads=state["torch_threads"],
                      cleaning=state.get("cleaning"))

    def setup(self, worker):
        self.lock = threading.Lock()
        try:
            self.estimator = load_estimator(self.model)
        except GPMAstroError as exc:  # reported by each task, with the message
            self.error = f"{type(exc).__name__}: {exc}"
            return
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(self.torch_threads))
        import cv2

        cv2.setNumThreads(int(self.torch_threads))
        if self.cleaning and can_start_processes():
            try:
                self.cleaning_pids = _start_cleaning(**self.cleaning)
            except Exception as exc:  # a head start only: the tasks start their own and
                # report what fails there; a broken pool must not be kept for them
                from .._preprocess_runtime import _shutdown_executors

                _shutdown_executors(wait=False)
                warnings.warn(f"the cleaning process was not started ahead of the tasks "
                              f"({type(exc).__name__}: {exc}); each task starts it",
                              GPMAstroWarning, stacklevel=2)

    def teardown(self, worker):
        """End the process that cleaned this worker's next chunks, before the worker exits
        (a worker waits for its child processes when it closes)."""
        from .._preprocess_runtime import _shutdown_executors

        _shutdown_executors(wait=True)


def _start_cleaning(preprocess, processes):
    """Start the processes that a task's prefetch hands its chunks to (see `task._cleaned`),
    each cleaning one synthetic galaxy of the survey's cutout size; returns their process ids."""
    from .._preprocess_runtime import start_cleaning_processes
    from ..preprocessing import resolve_steps
    from ..testing import make_estimator_table

    galaxy = make_estimator_table(1, seed=0)
    return start_cleaning_processes(int(processes), resolve_steps(config=preprocess),
                                    np.asarray(galaxy["cutout"]), galaxy.meta["pixel_scale"],
                                    galaxy.meta["bands"])


def worker_estimator():
    """The estimator loaded on this worker by `EstimatorPlugin`, and the lock to predict with.

    Returns
    -------
    (gpm_astro.base.Estimator, threading.Lock)

    Raises
    ------
    GPMAstroError
        If the plugin is not registered on this worker, or loading the model failed there.
    """
    plugin = get_worker().plugins.get(PLUGIN_NAME)
    if plugin is None:
        msg = f"the worker has no {PLUGIN_NAME!r} plugin; register EstimatorPlugin first"
        raise GPMAstroError(msg)
    if plugin.estimator is None:
        msg = f"the estimator could not be loaded on this worker: {plugin.error}"
        raise GPMAstroError(msg)
    return plugin.estimator, plugin.lock
