"""DDP on CPU with gloo, launched by torchrun: 2 processes x batch B equal 1 process x batch 2B.

One torchrun launch (tests/ddp_worker.py) trains every scenario; the single-process twins run here. Checked:
parameters after N updates of a BN-free model within 1e-5 (and its EMA, its summary rows), the metrics of a
BN model with SyncBN, dicenet_010 with SyncBN keeping every rank's DimConv statistics identical (its evaluation
equal to rank 0's checkpoint evaluated alone), identical model and EMA on every rank, files written by rank 0
only, a signal that reaches one rank stopping both at the same update and resuming bit for bit, and resume
with another world size (refused, then allowed by allow_resume_change=true).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tests.helper_models  # noqa: F401
from effconv.engine import checkpoint as ckpt
from effconv.engine.loop import train
from tests import ddp_worker as worker
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow
TORCHRUN_TIMEOUT_S = 900


def torchrun(*args: str, timeout: float = TORCHRUN_TIMEOUT_S, env_extra: dict | None = None):
    """``python -m torch.distributed.run --standalone --nproc_per_node=2 <args>`` from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    env.update(env_extra or {})
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    worker.world_change_checkpoint(root)  # 1 process, batch 8
    done = torchrun("tests/ddp_worker.py", str(root))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return root


def rank_states(directory: Path) -> list[dict]:
    return [torch.load(directory / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def rank_caught(directory: Path) -> list[dict]:
    return [json.loads((directory / f"rank{r}.json").read_text()) for r in (0, 1)]


def summary_rows(directory: Path) -> list[dict]:
    with open(directory / "summary.csv") as f:
        return list(csv.DictReader(f))


def single_process_twin(tmp_path: Path, name: str):
    cfg = worker.config(tmp_path, name, batch=2 * worker.PER_RANK_BATCH)
    results = train(cfg)
    return Path(cfg.output_root) / cfg.run_name, results


def ddp_run_dir(ddp: Path, name: str) -> Path:
    (run_dir,) = (ddp / name).iterdir()
    return run_dir


def assert_close_states(a: dict, b: dict, atol: float):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), atol=atol, rtol=0, msg=k)


def test_two_processes_equal_one_process_with_twice_the_batch(ddp, tmp_path):
    """BN-free MLP: 2 x 8 == 1 x 16 after 12 updates: weights and EMA within 1e-5, same loss and metrics."""
    single_dir, single = single_process_twin(tmp_path, "mlp")
    run_dir = ddp_run_dir(ddp, "mlp")
    ddp_results = json.loads((run_dir / "results.json").read_text())
    assert ddp_results["global_steps"] == single["global_steps"] == 12
    assert ddp_results["effective_batch"] == single["effective_batch"] == 16
    assert ddp_results["timing"]["world_size"] == 2 and ddp_results["lr"] == single["lr"]
    single_ckpt = ckpt.load(single_dir / "checkpoints" / "last.pt")
    ddp_ckpt = ckpt.load(run_dir / "checkpoints" / "last.pt")
    assert_close_states(ddp_ckpt["state_dict"], single_ckpt["state_dict"], atol=1e-5)
    assert_close_states(ddp_ckpt["state_dict_ema"], single_ckpt["state_dict_ema"], atol=1e-5)
    for ddp_row, row in zip(summary_rows(run_dir), summary_rows(single_dir), strict=True):
        for key in ("train_loss", "eval_loss"):
            assert abs(float(ddp_row[key]) - float(row[key])) < 1e-5, key
        assert ddp_row["eval_top1"] == row["eval_top1"]
    for key in ("top1", "top5", "last_ema_top1"):
        assert ddp_results[key] == single[key], key


def test_accumulation_under_ddp_equals_one_process(ddp, tmp_path):
    """Accumulation over 2 micro-batches with DDP's no_sync on the first: 4 updates of 32 images, as 1 process."""
    single_dir, single = single_process_twin(tmp_path, "mlp_accum")
    run_dir = ddp_run_dir(ddp, "mlp_accum")
    ddp_results = json.loads((run_dir / "results.json").read_text())
    assert ddp_results["global_steps"] == single["global_steps"] == 4 and ddp_results["effective_batch"] == 32
    single_state = ckpt.load(single_dir / "checkpoints" / "last.pt")["state_dict"]
    assert_close_states(ckpt.load(run_dir / "checkpoints" / "last.pt")["state_dict"], single_state, atol=1e-5)


def test_ranks_hold_identical_model_and_ema(ddp):
    for scenario in ("mlp", "bn_ema"):
        run_dir = ddp_run_dir(ddp, scenario)
        rank0, rank1 = rank_states(run_dir)
        for part in ("model", "ema"):
            for k, v in rank0[part].items():
                assert torch.equal(v, rank1[part][k]), (scenario, part, k)
        # rank 0 wrote the checkpoint: it holds the same EMA, BN statistics included
        saved = ckpt.load(run_dir / "checkpoints" / "last.pt")
        assert all(torch.equal(v, saved["state_dict_ema"][k]) for k, v in rank0["ema"].items())


def test_syncbn_matches_one_process(ddp, tmp_path):
    """A BN network with SyncBN, 2 x 8: the batch statistics of 1 x 16, so the same weights, BN statistics and
    metrics (within 1e-5). On CPU the SyncBN path is effconv.engine.sync_bn's (torch's is GPU-only)."""
    single_dir, single = single_process_twin(tmp_path, "bn_sync")
    run_dir = ddp_run_dir(ddp, "bn_sync")
    ddp_results = json.loads((run_dir / "results.json").read_text())
    single_state = ckpt.load(single_dir / "checkpoints" / "last.pt")["state_dict"]
    ddp_state = ckpt.load(run_dir / "checkpoints" / "last.pt")["state_dict"]
    assert "features.2.running_var" in ddp_state and ddp_results["global_steps"] == 12
    assert_close_states(ddp_state, single_state, atol=1e-5)
    assert ddp_results["top1"] == single["top1"] and ddp_results["top5"] == single["top5"]
    assert abs(ddp_results["last_loss"] - single["last_loss"]) < 1e-5


def test_syncbn_in_dice_units_keeps_ranks_equal(ddp, tmp_path):
    """dicenet_010 with sync_bn=true: every DimConv's BN statistics identical on both ranks (the plane path no
    longer bypasses the converted norms), and the run's evaluation equals rank 0's checkpoint evaluated alone."""
    run_dir = ddp_run_dir(ddp, "dice_sync")
    rank0, rank1 = rank_states(run_dir)
    dimconv_stats = [k for k in rank0["model"] if ".spatial.norm.running_" in k]
    assert len(dimconv_stats) == 2 * 16  # mean and variance of dicenet_010's 16 DimConvs
    for k in dimconv_stats:  # they were updated (from mean 0, variance 1)
        v = rank0["model"][k]
        assert not torch.equal(v, torch.ones_like(v) if k.endswith("var") else torch.zeros_like(v)), k
    for k, v in rank0["model"].items():
        assert torch.equal(v, rank1["model"][k]), k
    results = json.loads((run_dir / "results.json").read_text())
    out = tmp_path / "eval.json"
    done = run_cli(
        "evaluate.py",
        f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}",
        "device=cpu",
        "throughput_batches=[]",
        f"output={out}",
        env={"CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    alone = json.loads(out.read_text())
    assert (alone["top1"], alone["top5"]) == (results["last_top1"], results["last_top5"])
    assert abs(alone["loss"] - results["last_loss"]) < 1e-4


def test_only_rank_zero_writes(ddp):
    for scenario in ("mlp", "mlp_accum", "bn_sync", "bn_ema", "straight", "dice_sync"):
        run_dir = ddp_run_dir(ddp, scenario)
        events = [json.loads(line)["type"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        epochs = json.loads((run_dir / "results.json").read_text())["epochs"]
        assert events == ["start", *["epoch"] * epochs, "end"], scenario
        assert len(summary_rows(run_dir)) == epochs
        assert {p.name for p in run_dir.iterdir()} == {
            "config.yaml", "metrics.jsonl", "summary.csv", "results.json", "checkpoints", "rank0.pt", "rank1.pt",
            "rank0.json", "rank1.json",
        }  # fmt: skip


def test_signal_on_one_rank_stops_both_and_resumes_exactly(ddp):
    straight, resumed = ddp_run_dir(ddp, "straight"), ddp_run_dir(ddp, "resumed")
    caught = rank_caught(resumed)
    # the flag posted after update 3 is acted on at update 4, by both ranks
    assert [c["interrupted"] for c in caught] == [
        "SIGUSR1: checkpoint written at epoch 1, batch 4; run the same command to resume"
    ] * 2  # noqa: E501
    events = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    interrupted = [e for e in events if e["type"] == "interrupted"]
    assert [(e["signal"], e["global_step"]) for e in interrupted] == [("SIGUSR1", 4)]
    assert [e["global_step"] for e in events if e["type"] == "resume"] == [4]
    a, b = (ckpt.load(d / "checkpoints" / "last.pt") for d in (straight, resumed))
    for part in ("state_dict", "state_dict_ema"):
        assert all(torch.equal(v, b[part][k]) for k, v in a[part].items()), part
    assert len(a["ranks"]) == 2
    assert (straight / "summary.csv").read_text() == (resumed / "summary.csv").read_text()


def test_resume_with_another_world_size(ddp):
    """A 1-process checkpoint at epoch 2, batch 1 resumed by 2 processes: refused (the effective batch doubles),
    then allowed: epoch 2 restarts from its first batch, the schedule continues from update 4."""
    run_dir = ddp / "world_change" / "world_change"
    refused = [c["refused"] for c in rank_caught(run_dir)]
    assert refused[0] == refused[1]
    assert refused[0] == (
        f"checkpoint {run_dir / 'checkpoints' / 'last.pt'} was trained with effective batch (recipe.batch_size x "
        "recipe.accum_steps x processes)=8, this run asks for 16: pass allow_resume_change=true to continue with "
        "the new value, or set run_name"
    )
    assert [e["global_step"] for e in events(run_dir, "resume")] == [4]  # update 5 dropped with its epoch
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["epochs_done"], results["global_steps"], results["timing"]["world_size"]) == (2, 8, 2)
    # and back to one process for a third epoch
    cfg = worker.config(ddp, "world_change", *worker.WORLD_CHANGE, "recipe.epochs=3", "allow_resume_change=true")
    results = train(cfg)
    assert (results["epochs_done"], results["global_steps"], results["timing"]["world_size"]) == (3, 12, 1)


def events(run_dir: Path, kind: str) -> list[dict]:
    found = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e for e in found if e["type"] == kind]
