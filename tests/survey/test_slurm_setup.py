"""The SLURM GPU set-up of docs/survey_scale.rst gives the job script it promises."""

import pytest


def test_the_documented_slurm_gpu_workers_ask_for_one_gpu_each():
    slurm = pytest.importorskip("dask_jobqueue.slurm")
    job = slurm.SLURMJob(scheduler="tcp://127.0.0.1:8786", name="gpu-worker", queue="gpu",
                         account="myproject", cores=16, processes=1, memory="64GB",
                         walltime="06:00:00", job_extra_directives=["--gres=gpu:1"],
                         worker_extra_args=["--resources", "GPU=1"],
                         job_script_prologue=["export DASK_DISTRIBUTED__WORKER__DAEMON=False"])
    script = job.job_script()
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --cpus-per-task=16" in script
    # the worker advertises the GPU, so the engine's partition tasks ask for it (one at a time)
    assert "--resources GPU=1" in script
    assert "DASK_DISTRIBUTED__WORKER__DAEMON=False" in script  # preprocessing may fork
