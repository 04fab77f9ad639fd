"""SIGKILL at every long stage: no partial file, shared-memory buffer or process outlives the
next run (issue 15, "Interruptions").

Each test starts the command line in a child process, kills only that process with SIGKILL once
it is doing the stage's work (as the OOM killer would, leaving its children alone), then runs
the same command to the end and checks what is left: hidden partial files under the output
folder, batch buffers of the killed process in /dev/shm or the temporary folder, and any
process the killed one had started.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gpm_astro.io import write_table
from gpm_astro.testing import make_estimator_table

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="reads /proc and /dev/shm"),
              pytest.mark.slow]

PARTIAL = re.compile(r"^\..+\.\d+\.[a-z0-9_]{8}(\..*)?$")


def _children():
    """Map of parent pid -> child pids, from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _descendants(pid):
    children, found, todo = _children(), [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _alive(pids):
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _buffers_of(pid):
    folders = [Path("/dev/shm"), Path(tempfile.gettempdir())]
    return [p for folder in folders if folder.is_dir()
            for p in folder.glob(f"gpm_astro_batch_{pid}_*")]


def _partials(folder):
    return [p for p in Path(folder).rglob(".*") if PARTIAL.match(p.name)]


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _plant_stale_partial(target):
    """What a run killed while writing ``target`` leaves: a hidden partial of a dead process."""
    stale = target.parent / f".{target.name}.{_dead_pid()}.abcd1234.part"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a file")
    return stale


def _cli(args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return [sys.executable, "-m", "gpm_astro", *args], env


def _kill_when(args, ready, *, timeout=90):
    """Start the command, SIGKILL it once ``ready()`` holds; return (pid, its descendants)."""
    command, env = _cli(args)
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not ready(child.pid):
            assert child.poll() is None, f"ended before it could be killed: " \
                                         f"{child.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the stage never started"
            time.sleep(0.02)
        started = _descendants(child.pid)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return child.pid, started


def _rerun(args):
    command, env = _cli(args)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _nothing_outlives(pid, started, folder):
    deadline = time.monotonic() + 15
    while _alive(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftover = _alive(started)
    for process in leftover:  # do not leave them to the next test
        os.kill(process, signal.SIGKILL)
    assert leftover == [], "processes outlived their killed parent"
    assert _buffers_of(pid) == []
    assert _partials(folder) == []


def _preprocess_started(pid):
    return bool(_buffers_of(pid)) and len(_descendants(pid)) >= 2


def test_sigkill_preprocess_with_jobs(tmp_path):
    table = make_estimator_table(40, seed=1, cutout_size=152)
    write_table(table, tmp_path / "in.h5")
    stale = _plant_stale_partial(tmp_path / "out.h5")
    args = ["preprocess", str(tmp_path / "in.h5"), str(tmp_path / "out.h5"), "--jobs", "2",
            "--batch-size", "4", "--quiet"]
    pid, started = _kill_when(args, _preprocess_started)
    assert any(_alive(started)) or _buffers_of(pid)  # what the fixes must clean
    _rerun(args)
    assert not stale.exists()
    _nothing_outlives(pid, started, tmp_path)


def test_sigkill_train(tmp_path):
    table = make_estimator_table(24, seed=1, cutout_size=32)
    write_table(table, tmp_path / "train.h5")
    checkpoint = tmp_path / "ckpt" / "member0" / "checkpoint.pt"
    stale = _plant_stale_partial(checkpoint)
    args = ["train", str(tmp_path / "train.h5"), "--out", str(tmp_path / "model"),
            "--epochs", "2", "--batch-size", "16", "--mc-passes", "1", "--device", "cpu",
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--quiet"]
    pid, started = _kill_when(args, lambda _: checkpoint.exists())
    _rerun(args + ["--resume"])
    assert not stale.exists()
    assert (tmp_path / "model" / "model.safetensors").is_file()
    _nothing_outlives(pid, started, tmp_path)


def test_sigkill_predict(tmp_path, saved_model):
    table = make_estimator_table(24, seed=2, cutout_size=16)
    write_table(table, tmp_path / "in.h5")
    stale = _plant_stale_partial(tmp_path / "out.h5")
    args = ["predict", str(tmp_path / "in.h5"), str(tmp_path / "out.h5"),
            "--weights", str(saved_model), "--batch-size", "8"]
    # the progress bar on standard error shows that prediction is under way; 500 Monte-Carlo
    # passes a galaxy keep it there long enough to be killed on a loaded machine
    command, env = _cli(args + ["--param", "mc_passes=500"])
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    seen = b""
    while b"predict gpm_resnet" not in seen:
        chunk = os.read(child.stderr.fileno(), 256)
        assert chunk, f"ended before predicting: {seen.decode()[-2000:]}"
        seen += chunk
    started = _descendants(child.pid)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    _rerun(args + ["--no-progress"])  # one pass a galaxy, as the model was saved
    assert not stale.exists()
    _nothing_outlives(child.pid, started, tmp_path)


def test_sigkill_pipeline_run(tmp_path):
    from pipeline_fakes import write_fake_sky

    source = write_fake_sky(tmp_path, n_images=40, n_labelled=30)
    config = {"source": source, "preprocess": {"n_jobs": 2, "batch_size": 4},
              "estimators": {"mzr": {"estimator": "mass_metallicity"}},
              "application": {"estimator": "mzr"}, "sample": {"n_bins": 5}}
    (tmp_path / "run.json").write_text(json.dumps(config))
    args = ["run", str(tmp_path / "run.json"), "--out", str(tmp_path / "out"),
            "--until", "preprocess", "--quiet"]
    pid, started = _kill_when(args, _preprocess_started)
    _rerun(args)
    assert (tmp_path / "out" / "pipeline_state.json").is_file()
    _nothing_outlives(pid, started, tmp_path)
