"""Thread count per process: processes that share the cores must not each start a full thread team."""

import pytest

from effconv.engine.runtime import cpu_threads


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_alone_keeps_torch_default(clean_env):
    assert cpu_threads(None) is None


def test_local_submitit_job_gets_one_thread(clean_env):
    clean_env.setenv("SUBMITIT_EXECUTOR", "local")
    assert cpu_threads(None) == 1


def test_slurm_task_gets_its_cpus(clean_env):
    clean_env.setenv("SUBMITIT_EXECUTOR", "slurm")
    clean_env.setenv("SLURM_CPUS_PER_TASK", "10")
    assert cpu_threads(None) == 10


def test_omp_num_threads_and_explicit_value_win(clean_env):
    clean_env.setenv("SUBMITIT_EXECUTOR", "local")
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(None) is None  # torch already follows OMP_NUM_THREADS (torchrun sets it to 1)
    assert cpu_threads(4) == 4
