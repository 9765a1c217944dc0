"""The benchmark harness measures GPUs as it measures the CPU: like with like (issue 17, finding 10)."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import torch

import benchmarks.__main__ as bench_main
from benchmarks import bench_loop, harness
from benchmarks.harness import Context

CPU = torch.device("cpu")


def test_bare_step_runs_in_the_loops_precision(tmp_path):
    """amp=bf16 (amp=auto's choice on a GPU): the bare reference step must run under the same autocast."""
    trainer = bench_loop.trainer_for("resnet20_cifar", Context(CPU, quick=True), str(tmp_path), "amp=bf16")
    dtypes = []
    trainer.model.get_classifier().register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    bench_loop.loop_steps(trainer, steps=1)()
    bench_loop.bare_steps(trainer, steps=1)()
    assert dtypes == [torch.bfloat16, torch.bfloat16]


def test_every_module_starts_from_the_training_flags(monkeypatch, tmp_path):
    """A module that builds a Trainer turns cudnn.benchmark (and possibly determinism) on process-wide; the
    next module must not inherit it, and the process gets its flags back at the end."""
    seen = {}

    def changes_flags(ctx):
        torch.backends.cudnn.benchmark = True
        torch.use_deterministic_algorithms(True)
        return []

    def records_flags(ctx):
        seen.update(
            benchmark=torch.backends.cudnn.benchmark, deterministic=torch.are_deterministic_algorithms_enabled()
        )
        return []

    for name, run in (("bench_zz_first", changes_flags), ("bench_zz_second", records_flags)):
        monkeypatch.setitem(sys.modules, f"benchmarks.{name}", types.SimpleNamespace(run=run))
    monkeypatch.setattr(
        bench_main.pkgutil,
        "iter_modules",
        lambda path: [SimpleNamespace(name=n) for n in ("bench_zz_first", "bench_zz_second")],
    )
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert bench_main.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    assert seen == {"benchmark": False, "deterministic": False}  # what runtime.setup leaves on a CPU
    assert torch.backends.cudnn.benchmark is False and not torch.are_deterministic_algorithms_enabled()


def test_a_sample_synchronises_around_its_calls_not_after_each(monkeypatch):
    syncs, calls = [], []
    monkeypatch.setattr(harness, "sync", lambda device: syncs.append(1))
    per_call = harness._sample(lambda: calls.append(1), CPU, min_time_s=0.01)
    assert len(calls) > 100 and len(syncs) <= 10 and per_call < 1e-3


def test_gpu_rows_take_gpu_sized_batches():
    gpu, cpu, quick = Context(torch.device("cuda"), quick=True), Context(CPU, quick=False), Context(CPU, quick=True)
    assert [bench_loop.batch_for("dicenet_100", c) for c in (gpu, cpu, quick)] == [128, 4, 4]
    assert [c.batch(16, 256, quick=8) for c in (gpu, cpu, quick)] == [256, 16, 8]
