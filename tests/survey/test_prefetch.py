"""The task's prefetch: the next chunk is read and cleaned in a background thread (the cleaning
itself in a child process where the worker may start one) while the current one is predicted;
same bytes, one chunk ahead at most, errors raised, nothing left."""

import multiprocessing
import threading

import numpy as np
import pytest

from gpm_astro.plugins import get_estimator, get_source
from gpm_astro.survey import task

from .conftest import CHUNK_SIZE

N_ROWS = 4 * CHUNK_SIZE  # six chunks: three of the ramp, then full ones


@pytest.fixture(scope="module")
def tiny_estimator(tiny_model):
    return get_estimator("gpm_resnet").load(tiny_model, progress=False)


def _spec(archive, out, prefetch):
    (out / "partitions").mkdir(parents=True, exist_ok=True)
    return {"source": "legacysurvey_archive", "source_params": {"path": str(archive)},
            "chunk_size": CHUNK_SIZE, "preprocess": "default", "preprocess_jobs": 1,
            "cutouts": True, "out": str(out), "prefetch": prefetch}


def _rows(archive):
    rows = get_source("legacysurvey_archive")(path=archive).select_rows(source_type="EXP")
    return rows[:N_ROWS]


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("gpm-astro-prefetch")]


@pytest.mark.parametrize("child_process", [True, False], ids=["child_process", "daemonic"])
def test_prefetch_gives_the_same_bytes_and_stays_one_chunk_ahead(child_process, mock_archive,
                                                                  tiny_estimator, tmp_path,
                                                                  monkeypatch):
    import gpm_astro.preprocessing as preprocessing

    rows = _rows(mock_archive)
    plain = task.process_partition(0, rows, _spec(mock_archive, tmp_path / "plain", False),
                                   estimator=tiny_estimator)
    events = []
    prepare, predict, run_steps = task._prepared_chunk, task._predicted, preprocessing.run_steps

    def recorded_prepare(*args):
        events.append(("prepare", threading.current_thread().name))
        return prepare(*args)

    def recorded_run_steps(*args, **kwargs):  # cleaning in this process
        events.append(("clean here", threading.current_thread().name))
        return run_steps(*args, **kwargs)

    def recorded_predict(table, estimator, lock):
        events.append(("predict", threading.current_thread().name))
        return predict(table, estimator, lock)

    monkeypatch.setattr(task, "_prepared_chunk", recorded_prepare)
    monkeypatch.setattr(task, "_predicted", recorded_predict)
    monkeypatch.setattr(preprocessing, "run_steps", recorded_run_steps)
    monkeypatch.setattr(task, "can_start_processes", lambda: child_process)
    ahead = task.process_partition(0, rows, _spec(mock_archive, tmp_path / "ahead", True),
                                   estimator=tiny_estimator)
    assert ahead["sha256"] == plain["sha256"] and ahead["flags"] == plain["flags"]
    n_chunks = len(task._chunks(rows, CHUNK_SIZE))
    kinds = [kind for kind, _ in events]
    assert kinds.count("prepare") == n_chunks
    # a child process cleans every batch; a daemonic worker's prefetch thread cleans itself
    assert kinds.count("clean here") == (0 if child_process else n_chunks)
    assert all(name.startswith("gpm-astro-prefetch") for kind, name in events
               if kind in ("prepare", "clean here"))
    assert all(name == threading.current_thread().name for kind, name in events
               if kind == "predict")
    for k, index in enumerate(i for i, (kind, _) in enumerate(events) if kind == "predict"):
        started = [kind for kind, _ in events[:index]].count("prepare")
        assert started <= k + 2  # chunk k and at most the next one
    assert not _prefetch_threads()


@pytest.mark.parametrize("failing", ["prepare", "predict"])
def test_an_error_on_either_side_of_the_prefetch_is_raised_and_leaves_nothing(
        failing, mock_archive, tiny_estimator, tmp_path, monkeypatch):
    calls = []
    prepare = task._prepared_chunk

    def second_prepare_fails(*args):
        calls.append("prepare")
        if calls.count("prepare") == 2:
            raise RuntimeError("the prefetch thread failed on chunk 2")
        return prepare(*args)

    def first_predict_fails(*args):
        raise RuntimeError("predicting chunk 1 failed")

    if failing == "prepare":
        monkeypatch.setattr(task, "_prepared_chunk", second_prepare_fails)
    else:
        monkeypatch.setattr(task, "_predicted", first_predict_fails)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="chunk 2" if failing == "prepare" else "chunk 1"):
        task.process_partition(0, _rows(mock_archive), _spec(mock_archive, out, True),
                               estimator=tiny_estimator)
    assert list((out / "partitions").iterdir()) == []
    assert not _prefetch_threads()


def test_auto_prefetch_only_where_workers_leave_a_core_free(dask_client, mock_archive,
                                                              tiny_model, tmp_path):
    from gpm_astro.exceptions import ParameterError
    from gpm_astro.survey import run_catalogue
    from gpm_astro.survey.cluster import local_cores, workers_have_spare_cores

    # the shared cluster: one worker with two task threads on this machine
    assert workers_have_spare_cores(dask_client) == (local_cores() > 2)
    with pytest.raises(ParameterError, match="prefetch must be"):
        run_catalogue(mock_archive, tmp_path / "bad", weights=tiny_model, client=dask_client,
                      prefetch="yes", progress=False, log=lambda message: None)


def test_preprocessing_processes_in_a_daemonic_worker_is_a_clear_error(mock_archive,
                                                                      tiny_estimator, tmp_path,
                                                                      monkeypatch):
    from gpm_astro import _preprocess_runtime
    from gpm_astro.exceptions import ParameterError

    class Daemonic:
        daemon = True

    monkeypatch.setattr(multiprocessing, "current_process", Daemonic)
    monkeypatch.setattr(_preprocess_runtime, "_EXECUTORS", {})  # no pool kept from before
    spec = dict(_spec(mock_archive, tmp_path, False), preprocess_jobs=2)
    with pytest.raises(ParameterError, match="distributed.worker.daemon = False"):
        task.process_partition(0, _rows(mock_archive), spec, estimator=tiny_estimator)
    assert task.can_start_processes() is False


def test_the_local_cluster_workers_may_start_processes_and_run_no_profiler(tmp_path):
    import time

    from gpm_astro.survey.cluster import open_client

    def daemonic_and_profile_samples(dask_worker):
        return multiprocessing.current_process().daemon, dask_worker.profile_recent["count"]

    with open_client(n_workers=1, dashboard_address=":0") as client:
        client.submit(time.sleep, 0.3, pure=False).result()  # ~30 samples with a profiler
        assert list(client.run(daemonic_and_profile_samples).values()) == [(False, 0)]


def _worker_cleaning_processes(dask_worker):
    """On a worker: (processes the plugin started, all alive, they are the kept pool's)."""
    from gpm_astro import _preprocess_runtime
    from gpm_astro.process_pool import process_alive
    from gpm_astro.survey.worker import PLUGIN_NAME

    pids = dask_worker.plugins[PLUGIN_NAME].cleaning_pids
    pool = _preprocess_runtime._EXECUTORS.get(1)
    kept = set(pool._processes) if pool is not None else set()
    return len(pids), all(process_alive(pid) for pid in pids), pids == kept


@pytest.mark.parametrize("daemonic", [False, True], ids=["local_worker", "daemonic_worker"])
def test_the_worker_plugin_starts_the_cleaning_process_before_any_task(daemonic, tiny_model):
    import dask
    from distributed import Client, LocalCluster

    from gpm_astro.survey.worker import EstimatorPlugin

    model = {"estimator": "gpm_resnet", "weights": str(tiny_model), "fit_table": None,
             "fit_target": None, "params": {}}
    plugin = EstimatorPlugin(model, cleaning={"preprocess": "default", "processes": 1})
    with dask.config.set({"distributed.worker.daemon": daemonic}), \
            LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.register_plugin(plugin)
        started = list(client.run(_worker_cleaning_processes).values())
    # a daemonic worker may start none: its prefetch cleans in the task's thread
    assert started == ([(0, True, True)] if daemonic else [(1, True, True)])


def test_a_failed_head_start_of_the_cleaning_process_warns_and_keeps_no_pool(tiny_model,
                                                                            monkeypatch):
    from gpm_astro import _preprocess_runtime
    from gpm_astro.exceptions import GPMAstroWarning
    from gpm_astro.survey import worker

    broken = []

    class BrokenPool:
        def shutdown(self, **kwargs):
            broken.append(kwargs)

    def fails(preprocess, processes):
        _preprocess_runtime._EXECUTORS[processes] = BrokenPool()
        raise OSError("no room in /dev/shm")

    monkeypatch.setattr(_preprocess_runtime, "_EXECUTORS", {})
    monkeypatch.setattr(worker, "_start_cleaning", fails)
    monkeypatch.setattr(worker, "can_start_processes", lambda: True)
    model = {"estimator": "gpm_resnet", "weights": str(tiny_model), "fit_table": None,
             "fit_target": None, "params": {}}
    plugin = worker.EstimatorPlugin(model, cleaning={"preprocess": "default", "processes": 1})
    with pytest.warns(GPMAstroWarning, match="OSError: no room in /dev/shm"):
        plugin.setup(None)
    assert plugin.estimator is not None and plugin.cleaning_pids == set()
    assert broken and not _preprocess_runtime._EXECUTORS  # the tasks will start a new pool


def test_without_forkserver_the_prefetch_cleans_in_its_thread(monkeypatch):
    from gpm_astro import process_pool
    from gpm_astro.exceptions import ParameterError

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert task.can_start_processes() is False  # so the task's thread cleans (Windows)
    with pytest.raises(ParameterError, match="forkserver"):
        process_pool.require_child_processes("preprocessing with n_jobs > 1")


@pytest.mark.parametrize("n_rows", [0, 1, 5, 28, 31, 60, 100, 1000])
def test_chunks_ramp_up_then_keep_chunk_size_and_cover_every_row_once(n_rows):
    rows = np.arange(10, 10 + n_rows)
    sizes = [len(chunk) for chunk in task._chunks(rows, 32)]
    assert np.array_equal(np.concatenate([rows[:0], *task._chunks(rows, 32)]), rows)
    assert sum(sizes) == n_rows and all(sizes)
    full = [4, 8, 16] + [32] * 40
    assert sizes[:-1] == full[:max(len(sizes) - 1, 0)]  # only the last chunk may be cut short
    assert all(later <= 2 * earlier for earlier, later in zip(sizes, sizes[1:]))
    assert [len(chunk) for chunk in task._chunks(rows, 1)] == [1] * n_rows
