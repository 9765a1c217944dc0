"""Checkpoint RNG states on GPUs, with a mocked torch.cuda (issue 17, finding 8).

A rank saves the CUDA generator of its own GPU and restores it onto its own GPU, whatever the GPUs visible
when it resumes (torchrun shows a node's GPUs to every rank, SLURM one per task); a CPU run never touches CUDA.
"""

from __future__ import annotations

import pytest
import torch

from effconv.engine import checkpoint as ckpt


class FakeCuda:
    """The CUDA generators of ``count`` visible GPUs; GPU i's state is a tensor filled with 10 + i."""

    def __init__(self, monkeypatch, count: int):
        self.restored = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda d="cuda": self.state(torch.device(d).index or 0))
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [self.state(i) for i in range(count)])
        monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d="cuda": self.restored.append((s, str(d))))
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: self.restored.append((states, "all")))

    @staticmethod
    def state(index: int) -> torch.Tensor:
        return torch.full((16,), 10 + index, dtype=torch.uint8)


def test_rank_resumes_its_own_gpu_stream_under_another_visibility(monkeypatch):
    FakeCuda(monkeypatch, count=4)  # torchrun: rank 1 of a node sees its 4 GPUs and trains on cuda:1
    saved = ckpt.rng_state(torch.device("cuda:1"))
    assert [t.tolist() for t in saved["cuda"]] == [FakeCuda.state(1).tolist()]
    resumed = FakeCuda(monkeypatch, count=1)  # SLURM, one GPU per task: the same rank sees it as cuda:0
    ckpt.set_rng_state(saved, torch.device("cuda:0"))
    assert [(s.tolist(), d) for s, d in resumed.restored] == [(FakeCuda.state(1).tolist(), "cuda:0")]


def test_checkpoints_of_every_visible_gpu_restore_the_entry_of_this_gpu(monkeypatch):
    fake = FakeCuda(monkeypatch, count=2)
    old_format = {**ckpt.rng_state(), "cuda": [FakeCuda.state(0), FakeCuda.state(1)]}
    ckpt.set_rng_state(old_format, torch.device("cuda:1"))
    assert [(s.tolist(), d) for s, d in fake.restored] == [(FakeCuda.state(1).tolist(), "cuda:1")]


def test_cpu_runs_leave_cuda_alone(monkeypatch):
    FakeCuda(monkeypatch, count=2)  # a GPU host, device=cpu

    def touched(*args, **kwargs):
        raise AssertionError("a CPU run touched CUDA's generators (it would initialise CUDA)")

    for name in ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all"):
        monkeypatch.setattr(torch.cuda, name, touched)
    state = ckpt.rng_state(torch.device("cpu"))
    assert state["cuda"] == []
    ckpt.set_rng_state(state, torch.device("cpu"))


@pytest.mark.parametrize("device", [None, torch.device("cpu")])
def test_cpu_states_round_trip(device):
    state = ckpt.rng_state(device)
    expected = torch.rand(3)
    torch.rand(5)
    ckpt.set_rng_state(state, device)
    assert torch.equal(torch.rand(3), expected)
