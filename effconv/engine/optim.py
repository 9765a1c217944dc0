"""Optimizer, learning-rate schedule and the linear scaling rule, through timm's factories.

Naming follows timm: ``momentum`` is classic momentum SGD, ``sgd``/``nesterov`` are Nesterov SGD,
``rmsproptf`` is TensorFlow-style RMSprop (MnasNet/MixNet recipes), ``adamw`` is AdamW.
The schedule is stepped on optimizer updates (``updates_per_epoch`` = ceil(batches / accumulation)), so
gradient accumulation does not stretch it, and it is stateless: a resumed run recomputes it from the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm.optim
from timm.scheduler import create_scheduler_v2

from effconv.errors import UserError, unknown_choice


@dataclass
class ScaledLr:
    lr: float
    effective_batch: int
    note: str


def scale_lr(recipe, world_size: int) -> ScaledLr:
    """Recipes give the rate per ``lr_ref_batch`` images; scale it linearly to the effective batch."""
    batch = recipe.batch_size * recipe.accum_steps * world_size
    if recipe.lr_ref_batch is None:
        return ScaledLr(recipe.lr, batch, f"lr {recipe.lr:g} (as given) at effective batch {batch}")
    lr = recipe.lr * batch / recipe.lr_ref_batch
    parts = f"{recipe.batch_size} x {recipe.accum_steps} accumulation x {world_size} process(es)"
    return ScaledLr(
        lr, batch, f"lr {recipe.lr:g} per {recipe.lr_ref_batch} images -> {lr:.6g} at effective batch {batch} ({parts})"
    )


def build_optimizer(model, recipe, lr: float):
    if recipe.opt not in timm.optim.list_optimizers():
        raise unknown_choice("optimizer", recipe.opt, timm.optim.list_optimizers(), " (recipe.opt)")
    extra = {}
    if recipe.opt_eps is not None:
        extra["eps"] = recipe.opt_eps
    if recipe.opt_betas is not None:
        extra["betas"] = tuple(recipe.opt_betas)
    return timm.optim.create_optimizer_v2(
        model,
        opt=recipe.opt,
        lr=lr,
        weight_decay=recipe.weight_decay,
        momentum=recipe.momentum,
        filter_bias_and_bn=recipe.wd_exclude_bn_bias,
        **extra,
    )


def build_scheduler(optimizer, recipe, updates_per_epoch: int):
    try:
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=recipe.sched,
            num_epochs=recipe.epochs,
            decay_epochs=recipe.decay_epochs,
            decay_milestones=list(recipe.decay_milestones) or (30, 60, 90),
            decay_rate=recipe.decay_rate,
            min_lr=recipe.min_lr,
            warmup_lr=recipe.warmup_lr,
            warmup_epochs=recipe.warmup_epochs,
            warmup_prefix=False,
            cooldown_epochs=0,
            step_on_epochs=not recipe.sched_on_updates,
            updates_per_epoch=updates_per_epoch,
        )
    except (AssertionError, ValueError) as e:
        raise UserError(f"recipe.sched={recipe.sched}: {e or 'unknown schedule'}") from None
    if scheduler is None:
        raise UserError(f"recipe.sched={recipe.sched} is not a timm schedule; use cosine, step, multistep, poly, tanh")
    return scheduler


def current_lr(optimizer) -> float:
    return optimizer.param_groups[0]["lr"]
