"""Interruptions: the client killed with SIGKILL, then rerun; a worker killed mid-task."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gpm_astro.plugins import get_source
from gpm_astro.survey import read_catalogue, run_catalogue
from gpm_astro.survey.cluster import local_cores

from .conftest import CHUNK_SIZE, PARTITION_SIZE, run_options

STALLING_SOURCE = Path(__file__).with_name("stalling_source.py")


def _partitions(out):
    path = out / "manifest.json"
    return json.loads(path.read_text())["partitions"] if path.is_file() else {}


def _wait_for(condition, what, timeout=180):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_client_killed_then_rerun_gives_the_identical_catalogue(reference_run, mock_archive,
                                                                tiny_model, dask_client,
                                                                tmp_path):
    reference, reference_summary = reference_run
    out = tmp_path / "run"
    command = [sys.executable, "-m", "gpm_astro", "catalogue", "--images", str(mock_archive),
               "--weights", str(tiny_model), "--out", str(out),
               "--partition-size", str(PARTITION_SIZE), "--chunk-size", str(CHUNK_SIZE),
               "--workers", "1", "--threads", "--dashboard-address", ":0", "--no-progress"]
    client = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _partitions(out) or client.poll() is not None,
                  "a first finished partition")
    finally:
        client.send_signal(signal.SIGKILL)
        _, stderr = client.communicate()
    assert client.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert b"dashboard: http" in stderr
    finished_before = set(_partitions(out))
    n_partitions = reference_summary["n_partitions"]
    assert 1 <= len(finished_before) < n_partitions

    summary = run_catalogue(mock_archive, out, weights=tiny_model, client=dask_client,
                            **run_options())
    manifest = json.loads((out / "manifest.json").read_text())
    computed = {f"{i:06d}" for i in manifest["sessions"][-1]["computed"]}
    assert computed == {f"{i:06d}" for i in range(n_partitions)} - finished_before
    assert summary["n_rows"] == reference_summary["n_rows"]
    reference_manifest = json.loads((reference / "manifest.json").read_text())
    assert ({k: p["sha256"] for k, p in manifest["partitions"].items()}
            == {k: p["sha256"] for k, p in reference_manifest["partitions"].items()})
    resumed, uninterrupted = read_catalogue(out), read_catalogue(reference)
    assert resumed["archive_row"].tolist() == uninterrupted["archive_row"].tolist()
    assert np.ma.getdata(resumed["Z_pred"]).tobytes() == \
        np.ma.getdata(uninterrupted["Z_pred"]).tobytes()


def test_worker_killed_mid_task_is_retried_by_dask(reference_run, mock_archive, tiny_model,
                                                   tmp_path, fresh_plugins):
    import dask
    from distributed import Client, LocalCluster

    from .stalling_source import register

    register()
    reference, _ = reference_run
    markers = tmp_path / "markers"
    markers.mkdir()
    rows = get_source("legacysurvey_archive")(path=mock_archive).select_rows(source_type="EXP")
    stall_row = int(rows[PARTITION_SIZE * 2 + 1])  # inside the third partition

    def kill_the_stalled_worker():
        first = markers / "attempt-1"
        _wait_for(first.exists, "a task to stall")
        time.sleep(0.05)  # the pid is written
        os.kill(int(first.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_the_stalled_worker, daemon=True)
    out = tmp_path / "run"
    # forked workers start with this process's imports (torch, astropy): seconds, not tens
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                         dashboard_address=":0", preload=[str(STALLING_SOURCE)]) as cluster, \
            Client(cluster) as client:
        killer.start()
        summary = run_catalogue(mock_archive, out, weights=tiny_model, client=client,
                                source="stalling_archive",
                                source_params={"stall_row": stall_row,
                                               "marker_dir": str(markers)},
                                **run_options())
        killer.join(timeout=5)
    killed_pid = int((markers / "attempt-1").read_text())
    retry_pid = int((markers / "attempt-2").read_text())
    assert killed_pid != retry_pid  # the task ran again, in the worker the nanny restarted
    record = _partitions(out)["000002"]
    assert record["first_row"] <= stall_row <= record["last_row"] and record["pid"] == retry_pid
    assert summary["n_failed"] == 0
    # one worker of one thread: its tasks prefetch wherever the machine has a second core
    assert summary["prefetch"] == (local_cores() > 1)
    catalogue, uninterrupted = read_catalogue(out), read_catalogue(reference)
    assert catalogue["archive_row"].tolist() == uninterrupted["archive_row"].tolist()
    assert np.ma.getdata(catalogue["Z_pred"]).tobytes() == \
        np.ma.getdata(uninterrupted["Z_pred"]).tobytes()
