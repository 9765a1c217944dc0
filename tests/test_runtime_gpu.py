"""The runtime's GPU decisions, checked on the CPU against a mocked ``torch.cuda`` (issue 17, findings 3 and 9).

``fake_gpus`` shows the process two GPUs: cuda:0 with compute capability ``capabilities[0]``, cuda:1 with
``capabilities[1]``; the current device stays cuda:0, and torch.cuda.is_bf16_supported answers True (as it
does on a V100 or T4, counting emulation).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from effconv.engine import runtime


@pytest.fixture
def fake_gpus(monkeypatch):
    calls = {"set_device": []}

    def install(*capabilities: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        monkeypatch.setattr(torch.version, "hip", None)

        def properties(device):
            index = torch.device(device).index if not isinstance(device, int) else device
            return SimpleNamespace(major=capabilities[index or 0], minor=0, name=f"fake {index}")

        monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
        monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls["set_device"].append(torch.device(d)))
        return calls

    return install


def test_auto_amp_is_bf16_only_where_the_runs_gpu_has_it_natively(fake_gpus):
    fake_gpus(8, 7)  # an A100 as cuda:0 (the current device), a V100 as cuda:1
    assert runtime.resolve_amp("auto", torch.device("cuda:0")) == torch.bfloat16
    assert runtime.resolve_amp("auto", torch.device("cuda:1")) is None  # emulated bf16: fp32 instead
    assert runtime.resolve_amp("bf16", torch.device("cuda:1")) == torch.bfloat16  # asked for explicitly


def test_auto_amp_on_a_t4_only_machine(fake_gpus):
    fake_gpus(7)
    assert runtime.resolve_amp("auto", torch.device("cuda:0")) is None


def test_a_single_process_on_another_gpu_makes_it_current(fake_gpus, monkeypatch):
    calls = fake_gpus(8, 8)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # restored after
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(name, raising=False)
    rt = runtime.setup(device="cuda:1", amp="auto", threads=None)
    assert rt.device == torch.device("cuda:1") and rt.world_size == 1
    assert calls["set_device"] == [torch.device("cuda:1")]


def test_the_process_group_is_destroyed_at_exit(monkeypatch):
    """torchrun's variables, gloo faked: setup creates the group and leaves its destruction to exit time."""
    state = {"initialized": False, "destroyed": 0}
    exit_calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(runtime.dist, "is_initialized", lambda: state["initialized"])
    monkeypatch.setattr(runtime.dist, "init_process_group", lambda backend: state.update(initialized=True))
    monkeypatch.setattr(runtime.dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(runtime.dist, "destroy_process_group", lambda: state.update(destroyed=state["destroyed"] + 1))
    monkeypatch.setattr(runtime.atexit, "register", exit_calls.append)
    rt = runtime.setup(device="cpu", amp="none", threads=None)
    assert rt.world_size == 2 and state["initialized"] and state["destroyed"] == 0
    for call in exit_calls:
        call()
    assert state["destroyed"] == 1


def test_bn_statistics_are_averaged_with_one_foreach_copy(monkeypatch):
    """Two ranks' BN statistics averaged: one all-reduce, then one _foreach_copy_, no copy kernel per buffer."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.BatchNorm1d(5), torch.nn.BatchNorm2d(4))
    for bn in model:
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other_rank = {k: torch.randn_like(v) for k, v in before.items() if "running_" in k}
    names = [k for k in before if "running_" in k]

    def all_reduce(flat, op=None):  # rank 1 contributes other_rank's values
        flat += torch.cat([other_rank[k].reshape(-1) for k in names])

    copies, foreach = [], []
    real_copy, real_foreach = torch.Tensor.copy_, torch._foreach_copy_
    monkeypatch.setattr(runtime.dist, "all_reduce", all_reduce)
    monkeypatch.setattr(torch.Tensor, "copy_", lambda t, *a, **k: copies.append(1) or real_copy(t, *a, **k))
    monkeypatch.setattr(torch, "_foreach_copy_", lambda *a, **k: foreach.append(1) or real_foreach(*a, **k))
    runtime.average_bn_statistics(model, runtime.Runtime(torch.device("cpu"), world_size=2))
    monkeypatch.undo()
    assert copies == [] and foreach == [1]
    for k in names:
        torch.testing.assert_close(model.state_dict()[k], (before[k] + other_rank[k]) / 2)
