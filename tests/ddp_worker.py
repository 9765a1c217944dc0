"""Trainings under DDP for tests/test_distributed.py: ``torchrun --nproc_per_node=2 tests/ddp_worker.py <dir>``.

Each scenario trains on CPU with gloo, into ``<dir>/<scenario>``; every rank also saves its own model and EMA
state (``rank<r>.pt``) and what it caught (``rank<r>.json``), so the test can compare ranks with each other
and with single-process runs of the same global batch.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch

import tests.helper_models  # noqa: F401  (registers test_tiny_mlp)
from effconv.engine.loop import Interrupted, Trainer
from effconv.errors import UserError
from tests.conftest import compose, quick_overrides

MLP = ["model=timm", "model.name=test_tiny_mlp", "data.train_transform=none"]
CONSTANT_LR = ["recipe.sched=step", "recipe.decay_epochs=1000", "recipe.decay_rate=1.0"]
PER_RANK_BATCH = 8

# scenario -> overrides shared by the 2-process run (batch 8 per rank) and its 1-process twin (batch 16)
EQUIVALENT = {
    "mlp": [
        *MLP,
        *CONSTANT_LR,
        "recipe.epochs=2",
        "limit_train_batches=6",
        "recipe.weight_decay=1e-3",
        "recipe.ema=true",
        "recipe.ema_decay=0.9",
    ],
    # 2 ranks x 8 x 2 micro-batches (no_sync on the first) == 1 x 16 x 2
    "mlp_accum": [*MLP, *CONSTANT_LR, "recipe.epochs=1", "limit_train_batches=8", "recipe.accum_steps=2"],
    "bn_sync": [*MLP, "+model.norm=true", "recipe.epochs=2", "limit_train_batches=6", "sync_bn=true"],
}
# scenarios trained only under DDP
DDP_ONLY = {
    "bn_ema": [
        "model=resnet20_cifar",
        "recipe.epochs=1",
        "limit_train_batches=3",
        "limit_eval_batches=1",
        "recipe.ema=true",
    ],
    "straight": [*MLP, "recipe.epochs=2", "limit_train_batches=5", "model.drop_rate=0.2", "recipe.ema=true"],
    # SyncBN in DiCE units (issue 17): train.py model=dicenet_010 data=digits recipe=quick sync_bn=true, shortened
    "dice_sync": ["model=dicenet_010", "sync_bn=true", "recipe.epochs=1", "limit_train_batches=3"],
}
SIGNAL_AT_UPDATE = 3  # rank 1 alone receives SIGUSR1 after this update of the "resumed" run
WORLD_CHANGE = [*MLP, "recipe.epochs=2", "limit_train_batches=4", "limit_eval_batches=1", "run_name=world_change"]


def config(root: Path, name: str, *extra: str, batch: int = PER_RANK_BATCH):
    overrides = {**EQUIVALENT, **DDP_ONLY, "resumed": DDP_ONLY["straight"]}.get(name, [])
    return compose(*quick_overrides(root / name, *overrides, f"recipe.batch_size={batch}", *extra))


def run(cfg) -> Trainer:
    trainer = Trainer(cfg)
    try:
        trainer.run()
    finally:
        trainer.close()
    return trainer


def save_rank_state(trainer: Trainer, directory: Path, caught: dict | None = None) -> None:
    rank = trainer.rt.rank
    state = {"model": trainer.model.state_dict(), "ema": trainer.ema.module.state_dict() if trainer.ema else None}
    torch.save(state, directory / f"rank{rank}.pt")
    (directory / f"rank{rank}.json").write_text(json.dumps(caught or {}))


def signal_after(update: int, rank: int | None = None):
    """From now on a run sends SIGUSR1 to this process right after optimizer update ``update`` (on ``rank``
    only, if given); returns the undo."""
    original = Trainer._after_update

    def step(self):
        original(self)
        if self.state.global_step == update and rank in (None, self.rt.rank):
            os.kill(os.getpid(), signal.SIGUSR1)

    Trainer._after_update = step

    def undo():
        Trainer._after_update = original

    return undo


def interrupted(cfg) -> str:
    try:
        run(cfg)
    except Interrupted as e:
        return str(e)
    raise AssertionError("the run was not interrupted")


def world_change_checkpoint(root: Path) -> None:
    """One process (run by the test): a checkpoint of epoch 2, batch 1 (update 5) to resume with two."""
    undo = signal_after(5)
    try:
        interrupted(config(root, "world_change", *WORLD_CHANGE))
    finally:
        undo()


def main(root: Path) -> None:
    torch.set_num_threads(1)
    for name in [*EQUIVALENT, *DDP_ONLY]:
        trainer = run(config(root, name))
        save_rank_state(trainer, trainer.files.dir)

    # SIGUSR1 reaches rank 1 only: both ranks must stop at the same update, then resume exactly
    undo = signal_after(SIGNAL_AT_UPDATE, rank=1)
    try:
        caught = {"interrupted": interrupted(config(root, "resumed"))}
    finally:
        undo()
    trainer = run(config(root, "resumed"))
    save_rank_state(trainer, trainer.files.dir, caught)

    # the 1-process checkpoint of world_change_checkpoint resumed by 2 processes: refused, then allowed
    caught = {}
    try:
        run(config(root, "world_change", *WORLD_CHANGE))
    except UserError as e:
        caught["refused"] = str(e)
    trainer = run(config(root, "world_change", *WORLD_CHANGE, "allow_resume_change=true"))
    save_rank_state(trainer, trainer.files.dir, caught)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
