"""A run's checkpoint content, and resuming from it: which checkpoint, whether it fits this run, restoring it.

Beside ``checkpoint.py`` (the files: atomic writes, validated loads, fall-back to an older file), this is what
goes into them: weights (raw and EMA), optimizer and loss-scaler state, the ``TrainState``, every rank's RNG
state and epoch loss sums (under DDP), the epoch length and the config. A resume refuses a checkpoint of
another model, or one trained with other ``recipe.epochs`` or another effective batch (the schedule would
silently change) unless ``allow_resume_change=true``.
"""

from __future__ import annotations

from pathlib import Path

from timm.utils import random_seed

from effconv.config import to_plain
from effconv.engine import checkpoint as ckpt
from effconv.engine.runtime import Runtime
from effconv.engine.state import TrainState
from effconv.errors import UserError


def checkpoint_content(
    cfg, state: TrainState, model, ema, optimizer, scaler, runtime: Runtime, updates_per_epoch: int, ranks: list
) -> dict:
    """The checkpoint of a run at ``state``; ``ranks``: every rank's RNG state and epoch loss sums, in order."""
    return {
        "version": 1,
        "arch": cfg.model.name,
        "state_dict": model.state_dict(),
        "state_dict_ema": ema.module.state_dict() if ema else None,
        "optimizer": optimizer.state_dict(),
        "amp_scaler": scaler.state_dict() if scaler else None,
        **state.to_checkpoint(),
        "world_size": runtime.world_size,
        "updates_per_epoch": updates_per_epoch,
        "rng": ranks[0]["rng"],
        **({"ranks": ranks} if runtime.distributed else {}),
        "config": to_plain(cfg),
    }


def find(cfg, checkpoint_dir: Path, log=print) -> tuple[Path, dict] | None:
    """The checkpoint ``cfg.resume`` asks for: the run's own (auto), none (never), or a given file."""
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        return ckpt.find_resumable(checkpoint_dir, log=log)
    return Path(cfg.resume), ckpt.load(cfg.resume)


def check_compatible(path, saved: dict, cfg, effective_batch: int) -> None:
    old = saved.get("config", {})
    if old.get("model", {}).get("name") not in (None, cfg.model.name):
        raise UserError(
            f"checkpoint {path} is of model {old['model']['name']}, not {cfg.model.name}; "
            "use resume=never or another run_name"
        )
    if cfg.allow_resume_change:
        return
    old_recipe = old.get("recipe", {})
    old_batch = old_recipe.get("batch_size", 0) * old_recipe.get("accum_steps", 1) * saved.get("world_size", 1)
    changes = [
        ("recipe.epochs", old_recipe.get("epochs"), cfg.recipe.epochs),
        ("effective batch (recipe.batch_size x recipe.accum_steps x processes)", old_batch, effective_batch),
    ]
    for key, before, now in changes:
        if before is not None and before != now:
            raise UserError(
                f"checkpoint {path} was trained with {key}={before}, this run asks for {now}: "
                "pass allow_resume_change=true to continue with the new value, or set run_name"
            )


def restore(path, saved: dict, model, ema, optimizer, scaler, runtime: Runtime, seed: int, updates_per_epoch: int, log):
    """Load ``saved`` into the run's objects; returns the TrainState to continue from."""
    try:
        model.load_state_dict(saved["state_dict"])
        if ema and saved.get("state_dict_ema"):
            ema.module.load_state_dict(saved["state_dict_ema"])
        optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError) as e:
        raise UserError(
            f"checkpoint {path} does not fit this model/optimizer ({str(e).splitlines()[0]}); "
            "use resume=never or another run_name"
        ) from None
    if scaler and saved.get("amp_scaler"):
        scaler.load_state_dict(saved["amp_scaler"])
    state = TrainState.from_checkpoint(saved)
    _restore_rank_state(saved, state, runtime, seed)
    updates_before = saved.get("updates_per_epoch", updates_per_epoch)
    if saved.get("world_size", 1) != runtime.world_size or updates_before != updates_per_epoch:
        # another sharding or epoch length (allow_resume_change): a mid-epoch position means nothing now,
        # and the schedule, which is a function of the update count, must continue at this epoch's start
        if state.batch:
            log(f"the epoch length changed: epoch {state.epoch + 1} restarts from its first batch")
        state.start_epoch(state.epoch)
        state.global_step = state.epoch * updates_per_epoch
    log(f"resumed from {path}: epoch {state.epoch + 1}, batch {state.batch}, update {state.global_step}")
    return state


def _restore_rank_state(saved: dict, state: TrainState, runtime: Runtime, seed: int) -> None:
    ranks = saved.get("ranks")
    if ranks and len(ranks) == runtime.world_size:
        mine = ranks[runtime.rank]
        ckpt.set_rng_state(mine["rng"], runtime.device)
        state.loss_sum, state.seen = mine["loss_sum"], mine["seen"]
    elif runtime.is_primary:
        ckpt.set_rng_state(saved["rng"], runtime.device)
    else:  # ranks that did not exist when the checkpoint was written: fresh streams
        random_seed(seed + saved.get("global_step", 0), runtime.rank)
