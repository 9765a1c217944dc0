"""Sweeps through Hydra's submitit launcher, run locally (``launcher=submitit_local``: the code path of
``launcher=slurm`` without a cluster), and ``effconv/conf/launcher/slurm.yaml`` rendered into sbatch flags.

A 2-job sweep, each job 2 tasks = 2 DDP ranks (submitit's distributed environment, as on a SLURM node).
Pre-emption: submitit's signal (SIGUSR2) reaches rank 0 of one job mid-epoch. Both ranks stop at the same
update, rank 0 writes last.pt and hands the signal to submitit's handler, which gets the resubmission from
the launcher's ``checkpoint()`` and requeues; the requeued job runs the same overrides, hence the same run
directory, resumes there and ends bit for bit as the other, uninterrupted job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from effconv.config import compose as compose_any
from effconv.engine import checkpoint as ckpt
from tests.conftest import REPO
from tests.robustness.helpers import assert_same_run, events

pytestmark = pytest.mark.slow

RUN = [
    "model=resnet20_cifar",
    "recipe.epochs=2",
    "recipe.warmup_epochs=0",
    "recipe.batch_size=8",
    "limit_train_batches=5",
    "limit_eval_batches=1",
    "checkpoint_interval_s=1e-9",
    "hydra.launcher.tasks_per_node=2",  # each job: 2 tasks = 2 DDP ranks, as on a SLURM node
]
# two jobs that differ only in a name (logger.project): the same training, in two run directories
JOBS = "logger.project=preempted,straight"


def wait_for(condition, process, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert process.poll() is None, "the sweep ended early"
        time.sleep(0.02)
    raise AssertionError("timed out")


def step_of(path) -> int:
    try:
        return ckpt.load(path)["global_step"]
    except Exception:  # not written yet, or being replaced
        return -1


def test_local_sweep_requeues_a_preempted_ddp_job_which_resumes(tmp_path):
    root = tmp_path / "sweep"
    command = [sys.executable, "train.py", "-m", "launcher=submitit_local", *RUN, JOBS, f"output_root={root}"]
    command.append("progress=false")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sweep = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job = wait_for(lambda: next(root.glob("*logger.project=preempted*"), None), sweep)
        wait_for(lambda: step_of(job / "checkpoints" / "last.pt") >= 2, sweep)
        pid = events(job, "start")[0]["pid"]  # rank 0's process
        os.kill(pid, signal.SIGUSR2)  # what SLURM sends signal_delay_s before the time limit
        output, _ = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, output[-3000:]
    interrupted = events(job, "interrupted")
    assert [e["signal"] for e in interrupted] == ["SIGUSR2"]
    assert [e["global_step"] for e in events(job, "resume")] == [interrupted[0]["global_step"]]
    starts = events(job, "start")
    assert [s["world_size"] for s in starts] == [2, 2] and starts[1]["pid"] != pid  # requeued: new processes
    straight = next(root.glob("*logger.project=straight*"))
    assert not events(straight, "interrupted")
    assert_same_run(straight, job)


def test_slurm_launcher_config_maps_to_sbatch_flags(tmp_path, monkeypatch):
    """effconv/conf/launcher/slurm.yaml handed to submitit as the plugin does (BaseQueueConf keys as they are, the
    others prefixed with ``slurm_``): one task per GPU, the pre-emption signal, requeue allowed."""
    import submitit
    from hydra.core.hydra_config import HydraConfig

    compose_any(["launcher=slurm", f"output_root={tmp_path}"], "config")
    node = HydraConfig.get().launcher
    assert node._target_.endswith("submitit_launcher.SlurmLauncher")
    generic = ["timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes"]
    slurm = ["signal_delay_s", "partition", "additional_parameters", "array_parallelism", "setup"]
    params = {key: node[key] for key in generic} | {f"slurm_{key}": node[key] for key in slurm}
    assert node.max_num_timeout > 0 and node.tasks_per_node == node.gpus_per_node
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\n")  # submitit only checks that SLURM is installed
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    executor = submitit.AutoExecutor(tmp_path / "submitit", cluster="slurm", slurm_max_num_timeout=node.max_num_timeout)
    executor.update_parameters(**{k: _plain(v) for k, v in params.items() if v is not None})
    script = executor._executor._make_submission_file_text("python -u -m submitit.core._submit", "uid")
    for flag in (
        f"#SBATCH --gpus-per-node={node.gpus_per_node}",
        f"#SBATCH --ntasks-per-node={node.gpus_per_node}",
        f"#SBATCH --signal=USR2@{node.signal_delay_s}",
        "#SBATCH --requeue",
    ):
        assert flag in script, (flag, script)


def _plain(value):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
