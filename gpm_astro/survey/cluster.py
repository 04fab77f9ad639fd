"""Where the work runs: a local Dask cluster sized to the machine, or an existing scheduler."""

import contextlib
import os

__all__ = ["LOCAL_WORKER_CONFIG", "open_client", "local_cores", "gpu_resources",
           "workers_have_spare_cores", "oversubscription_note"]


def local_cores():
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def oversubscription_note(client, scheduler, n_workers, threads_per_worker):
    """A line to log when the local cluster to start runs more task threads than this
    machine has cores (``--workers 64`` on a laptop), else None: they only take turns on the
    cores, while each worker process holds its own model and chunks in memory."""
    if client is not None or scheduler is not None or n_workers is None:
        return None
    cores = local_cores()
    if n_workers * threads_per_worker <= cores:
        return None
    return (f"note: {n_workers} local worker(s) x {threads_per_worker} thread(s) on {cores} "
            f"core(s): the extra ones only take turns on the cores, and each worker holds its "
            f"own model and cutout chunks in memory (about 0.7 GB with the lite network); "
            f"--workers {cores} or fewer runs as fast")


#: Dask settings of the workers the engine starts itself: not daemonic, so that a worker may
#: start the process that cleans a task's next chunk; without Dask's statistical profiler,
#: which samples every thread's stack 100 times a second and slowed a catalogue task with its
#: prefetch by 6-8 % (the lite network's inference is mostly Python between small torch calls)
LOCAL_WORKER_CONFIG = {"distributed.worker.daemon": False,
                       "distributed.worker.profile.enabled": False}


def _connect(scheduler, log):
    """A `distributed.Client` of the running scheduler at ``scheduler`` (an address, or a
    scheduler file ending in ``.json``), or `ParameterError` naming it when unreachable."""
    from distributed import Client

    from ..exceptions import ParameterError

    if str(scheduler).endswith(".json"):
        if not os.path.exists(scheduler):  # Dask waits for it without a word, for ever
            log(f"waiting for the scheduler file {str(scheduler)!r} to appear (a scheduler "
                f"started with --scheduler-file writes it; check the path; Ctrl-C stops)")
        kwargs = {"scheduler_file": scheduler}
    else:
        kwargs = {"address": scheduler}
    try:
        return Client(**kwargs)
    except OSError as exc:  # a wrong address, a scheduler not (yet) running, a firewall
        msg = f"cannot reach the Dask scheduler at {str(scheduler)!r}: {exc}"
        raise ParameterError(msg) from exc


@contextlib.contextmanager
def open_client(*, client=None, scheduler=None, n_workers=None, threads_per_worker=1,
                processes=True, dashboard_address=":8787", log=print):
    """Yield a `distributed.Client`: the one given, one connected to ``scheduler``, or one on
    a new `distributed.LocalCluster` (closed on exit).

    Parameters
    ----------
    client : distributed.Client, optional
        Used as is and left open.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``, or a scheduler file path ending
        in ``.json``), e.g. one that ``dask-jobqueue`` or ``dask scheduler`` started.
    n_workers : int, optional
        Local workers; default one per core.
    threads_per_worker : int, optional
        Tasks a local worker runs at a time.
    processes : bool, optional
        Local workers as processes (default) or as threads of this process. Local workers get
        `LOCAL_WORKER_CONFIG`: their processes are not daemonic, so that they may start
        processes of their own, and Dask's statistical profiler is off (the dashboard's
        profile page stays empty).
    dashboard_address : str, optional
        Where the local dashboard listens (``":0"``: any free port).
    log : callable, optional
        Receives a message while a scheduler file does not exist yet.

    Raises
    ------
    ParameterError
        A ``scheduler`` that cannot be reached (named in the message).
    """
    from distributed import Client, LocalCluster

    if client is not None:
        yield client
        return
    if scheduler is not None:
        with _connect(scheduler, log) as remote:
            yield remote
        return
    import dask

    n_workers = local_cores() if n_workers is None else n_workers
    # the nannies read these settings whenever they start or restart a worker
    with dask.config.set(LOCAL_WORKER_CONFIG), \
            LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                         processes=processes, dashboard_address=dashboard_address) as cluster, \
            Client(cluster) as local:
        yield local


def gpu_resources(client):
    """``{"GPU": 1}`` when the cluster's workers advertise a ``GPU`` resource, else None.

    Workers started with ``--resources GPU=1`` (one per GPU) then run one partition task at a
    time each, and the estimator on them predicts on their GPU.
    """
    workers = client.scheduler_info().get("workers", {})
    if any("GPU" in (w.get("resources") or {}) for w in workers.values()):
        return {"GPU": 1}
    return None


def workers_have_spare_cores(client):
    """Whether every worker's machine has more cores than the task threads of its workers.

    Asked of the workers present once there is at least one (it waits for the first, as a
    batch-queue cluster's may come later). Where it holds, a task's prefetch thread (reading
    and cleaning the next chunk) runs on a core no task uses; where every core runs a task, it
    would only take turns with them (measured: about 6 % slower on one core).

    Returns
    -------
    bool
    """
    client.wait_for_workers(1)
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    cores = client.run(local_cores)
    threads = {}
    for worker in workers.values():
        threads[worker["host"]] = threads.get(worker["host"], 0) + worker["nthreads"]
    return all(address in cores and cores[address] > threads[worker["host"]]
               for address, worker in workers.items())
