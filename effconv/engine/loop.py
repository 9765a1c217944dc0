"""The one training loop: model + data + recipe -> run directory. It knows nothing of any paper.

Per optimizer update: ``accum_steps`` micro-batches (the loss of each divided by the true size of its window,
so a short last window is not under-weighted), optional gradient clipping, the optimizer step (through timm's
``NativeScaler`` under fp16), the EMA update and the per-update schedule step. Per epoch: evaluation of the raw
and the EMA weights, one epoch record (summary row, event, console, loggers), ``last.pt`` (and ``best.pt``).
``last.pt`` is also written mid-epoch every ``checkpoint_interval_s`` and on SIGTERM/SIGUSR1 (signals.py),
always at an update boundary, with the position in the epoch: running the same command again resumes exactly
where it stopped (``resume=auto``; resume.py), and a finished run is not trained again.

Under DDP (torchrun, or a multi-task submitit job) every rank runs this loop on its shard of the data; rank 0
alone writes files. Each optimizer update also averages the BatchNorm running statistics over the ranks
(unless ``sync_bn``, whose statistics are global already), so every rank holds the same model and the same
EMA, and a checkpoint written by rank 0 resumes every rank exactly. Decisions that every rank must take at
the same update (stop on a signal, write a timed checkpoint, stop on a non-finite loss) are agreed through
collectives; each rank's RNG state is gathered into the checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from dataclasses import asdict

import torch
import torch.nn as nn
from timm.utils import ModelEmaV3, NativeScaler, dispatch_clip_grad

from effconv.config import to_plain, validate
from effconv.engine import checkpoint as ckpt
from effconv.engine import resume
from effconv.engine.build import build_model
from effconv.engine.datafiles import build_loaders
from effconv.engine.evaluation import evaluate
from effconv.engine.finite import LossWatch
from effconv.engine.optim import build_optimizer, build_scheduler, current_lr, scale_lr
from effconv.engine.outputs import RunFiles, Sinks, console_line, epoch_record, progress_bar, run_dir_of
from effconv.engine.results import build_results, print_result_table
from effconv.engine.runtime import Agreement, all_reduce_sum, average_bn_statistics, gather_to_primary, setup, wrap_ddp
from effconv.engine.signals import Interrupted, StopSignal, stop_and_hand_over
from effconv.engine.state import TrainState
from effconv.engine.status import finished_results
from effconv.engine.sync_bn import to_sync_batchnorm

__all__ = ["Interrupted", "Trainer", "train"]


class Trainer:
    """Everything a run needs, built and restored in ``__init__``; ``run()`` trains it to the end."""

    def __init__(self, cfg):
        validate(cfg)
        self.cfg, self.recipe, recipe = cfg, cfg.recipe, cfg.recipe
        self.rt = rt = setup(cfg.device, cfg.amp, cfg.seed, cfg.deterministic, cfg.channels_last, cfg.get("threads"))
        self.files = RunFiles(run_dir_of(cfg), rt.is_primary)
        built = build_model(cfg, rt, log=self.log)
        self.model, self.cost, self.input_size = built.model, built.cost, built.input_size
        if rt.distributed and cfg.sync_bn:
            self.model = to_sync_batchnorm(self.model, rt.device)
        self.ema = ModelEmaV3(self.model, decay=recipe.ema_decay, use_warmup=recipe.ema_warmup) if recipe.ema else None
        eval_batch = recipe.eval_batch_size or 2 * recipe.batch_size
        self.loaders = build_loaders(
            cfg.data, recipe.batch_size, eval_batch, rt.device, cfg.seed, rt.rank, rt.world_size, rt.memory_format
        )
        self.batches_per_epoch = min(len(self.loaders.train), cfg.limit_train_batches or len(self.loaders.train))
        self.updates_per_epoch = math.ceil(self.batches_per_epoch / recipe.accum_steps)
        self.lr = scale_lr(recipe, rt.world_size)
        self.optimizer = build_optimizer(self.model, recipe, self.lr.lr)
        self.scheduler = build_scheduler(self.optimizer, recipe, self.updates_per_epoch)
        self.scaler = NativeScaler(rt.device.type) if rt.amp_dtype == torch.float16 else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.state = self._resume()
        self.forward = self._wrap()
        self.agreement = Agreement(rt)
        self.stop = StopSignal()
        self.last_save = time.monotonic()
        self.losses = LossWatch(self.model, rt, self.files, loss_scaling=self.scaler is not None)
        self.sinks = Sinks(cfg.logger, self.files.dir, to_plain(cfg), rt.is_primary)  # last: may open a wandb run

    def log(self, message: str) -> None:
        if self.rt.is_primary:
            print(message, flush=True)

    def close(self) -> None:
        self.sinks.close()

    # ----------------------------------------------------------------------------------------------- set-up
    def _resume(self) -> TrainState:
        found = resume.find(self.cfg, self.files.checkpoints, log=self.log)
        if found is None:
            return TrainState()
        path, saved = found
        resume.check_compatible(path, saved, self.cfg, self.lr.effective_batch)
        parts = (self.model, self.ema, self.optimizer, self.scaler, self.rt, self.cfg.seed, self.updates_per_epoch)
        state = resume.restore(path, saved, *parts, log=self.log)
        self.files.event(
            "resume", checkpoint=str(path), epoch=state.epoch, batch=state.batch, global_step=state.global_step
        )
        return state

    def _wrap(self) -> nn.Module:
        """The module the training forward runs through: compiled and/or DDP-wrapped bare model."""
        forward = torch.compile(self.model, mode=self.cfg.compile_mode) if self.cfg.compile else self.model
        if self.rt.distributed:
            forward = wrap_ddp(forward, self.rt)  # copies rank 0's parameters and buffers into every rank
            if self.ema is not None and self.state.global_step == 0:
                self.ema.set(self.model)  # the EMA was copied from this rank's own initialisation
        return forward

    def save(self, best: bool = False) -> None:
        # what differs between ranks, for an exact resume: RNG (dropout) and the epoch's loss sums so far
        s = self.state
        s.loss_sum = float(s.loss_sum)  # read from the device once per checkpoint
        ranks = gather_to_primary(
            {"rng": ckpt.rng_state(self.rt.device), "loss_sum": s.loss_sum, "seen": s.seen}, self.rt
        )
        if self.rt.is_primary:
            parts = (self.model, self.ema, self.optimizer, self.scaler, self.rt, self.updates_per_epoch, ranks)
            content = resume.checkpoint_content(self.cfg, s, *parts)
            ckpt.save_atomic(content, self.files.checkpoints / ckpt.LAST, keep_previous=True)
            if best:
                ckpt.save_atomic(content, self.files.checkpoints / ckpt.BEST)
        self.last_save = time.monotonic()

    # ---------------------------------------------------------------------------------------------- training
    def run(self) -> dict:
        cfg, recipe, s = self.cfg, self.recipe, self.state
        self.files.clear_failure()
        self.files.write_config(cfg)
        self.files.start_summary(s.epoch)
        self._announce()
        self._sync_schedule()
        with self.stop:
            for epoch in range(s.epoch, recipe.epochs):
                train_loss = self.train_epoch(epoch)
                if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == recipe.epochs:
                    self.end_epoch(epoch, train_loss)
                else:
                    self._advance(epoch)
                    self.save()
        self.agreement.close()
        results = build_results(cfg, s, self.cost, self.input_size, self.lr, self.ema is not None, self.rt)
        self.files.write_results(results)
        self.files.event("end", **{k: results[k] for k in ("top1", "best_top1", "last_top1")})
        if self.rt.is_primary:
            print_result_table(results)
        return results

    def _announce(self) -> None:
        cfg, s = self.cfg, self.state
        self.log(f"run dir {self.files.dir}")
        self.log(
            f"{cfg.model.name}: {self.cost.params_m:.4f} M params, {self.cost.madds_m:.2f} M MAdds at "
            f"{self.input_size[1]}x{self.input_size[2]}; {self.lr.note}"
        )
        bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        if self.recipe.accum_steps > 1 and bn:
            self.log(
                f"note: BatchNorm statistics see micro-batches of {self.recipe.batch_size}, not the effective "
                f"batch of {self.lr.effective_batch}"
            )
        where = {"pid": os.getpid(), "host": socket.gethostname(), "world_size": self.rt.world_size}
        what = {"model": cfg.model.name, "params": self.cost.params, "madds": self.cost.madds, "lr": self.lr.lr}
        resumed_at = asdict(s) if s.global_step else None
        self.files.event("start", **where, **what, effective_batch=self.lr.effective_batch, resumed_at=resumed_at)

    def _sync_schedule(self) -> None:
        if self.recipe.sched_on_updates:
            self.scheduler.step_update(self.state.global_step)
        else:
            self.scheduler.step(self.state.epoch)

    def _advance(self, epoch: int) -> None:
        self.state.start_epoch(epoch + 1)
        self.scheduler.step(epoch + 1)

    def train_epoch(self, epoch: int) -> float:
        """Train the rest of ``epoch``; its mean training loss over every rank's images."""
        recipe, rt, s = self.recipe, self.rt, self.state
        self.model.train()
        accum, n = recipe.accum_steps, self.batches_per_epoch
        loss_sum = torch.tensor(s.loss_sum, dtype=torch.float64, device=rt.device)
        bar = progress_bar(f"epoch {epoch + 1}/{recipe.epochs}", n, s.batch) if self._shows_progress else None
        start, images = time.perf_counter(), 0
        for b, (x, y) in enumerate(self.loaders.train.batches(epoch, start=s.batch), start=s.batch):
            if b >= n:
                break
            window_start = b - b % accum
            window = min(accum, n - window_start)  # the last window of an epoch may be short
            update = b == window_start + window - 1
            with self.forward.no_sync() if rt.distributed and not update else contextlib.nullcontext():
                with rt.autocast():
                    loss = self.criterion(self.forward(x), y)
                detached = loss.detach()
                if self.scaler is None:
                    loss_sum += detached.double() * len(y)
                else:  # a skipped fp16 update's non-finite loss would make the epoch's mean inf: count it as 0
                    loss_sum += torch.nan_to_num(detached.double(), nan=0.0, posinf=0.0, neginf=0.0) * len(y)
                images += len(y)
                self.losses.add(b, detached)
                if update and (self.losses.due or b + 1 == n):
                    self.losses.check(epoch, n)  # before the optimizer step of this update
                self._backward(loss / window, update)
            if update:
                self._after_update()
                elapsed = time.perf_counter() - start
                # the running sum stays on the device: float() here would synchronise a GPU every update
                s.batch, s.loss_sum, s.seen = b + 1, loss_sum, s.seen + images
                s.train_time_s, s.train_images = s.train_time_s + elapsed, s.train_images + images * rt.world_size
                start, images = time.perf_counter(), 0
                if bar is not None:
                    bar.update(window)
                    if s.global_step % 10 == 0 or b + 1 == n:
                        lr = current_lr(self.optimizer)
                        bar.set_postfix(loss=f"{detached.item():.3f}", lr=f"{lr:.4g}", img_s=f"{s.images_per_s:.0f}")
                self._maybe_checkpoint(epoch)
        if bar is not None:
            bar.close()
        self.losses.check(epoch, n)
        s.loss_sum = float(s.loss_sum)
        totals = torch.tensor([s.loss_sum, s.seen], dtype=torch.float64, device=rt.device)
        loss_sum, seen = all_reduce_sum(totals, rt).tolist()  # the whole global batch's loss
        return loss_sum / max(seen, 1.0)

    def _backward(self, loss: torch.Tensor, update: bool) -> None:
        """Backward; on the last micro-batch of a window also the (clipped) optimizer step. Under fp16, timm's
        NativeScaler scales the loss, unscales before clipping and skips a step with non-finite gradients."""
        recipe = self.recipe
        if self.scaler is not None:
            params = self.model.parameters()
            self.scaler(loss, self.optimizer, recipe.clip_grad, recipe.clip_mode, params, need_update=update)
            return
        loss.backward()
        if update:
            if recipe.clip_grad is not None:
                dispatch_clip_grad(self.model.parameters(), recipe.clip_grad, mode=recipe.clip_mode)
            self.optimizer.step()

    def _after_update(self) -> None:
        """What follows every optimizer step: gradients cleared, the update counted, BN statistics agreed over
        the ranks, the EMA and the per-update schedule moved."""
        self.optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1
        if not self.cfg.sync_bn:
            average_bn_statistics(self.model, self.rt)  # no-op in a single process
        if self.ema is not None:
            self.ema.update(self.model, step=self.state.global_step)
        if self.recipe.sched_on_updates:
            self.scheduler.step_update(self.state.global_step)

    def _maybe_checkpoint(self, epoch: int) -> None:
        interval = self.cfg.checkpoint_interval_s
        due = interval > 0 and time.monotonic() - self.last_save >= interval
        stop, due = self.agreement.poll(self.stop.received or 0, due)
        if not (due or stop) or self.state.batch >= self.batches_per_epoch:
            return  # the end of the epoch writes its own checkpoint
        self.losses.check(epoch, self.batches_per_epoch)
        self.save()
        if stop:
            self.stop.received = stop  # ranks the signal did not reach act on it too
            s = self.state
            self.files.event(
                "interrupted", signal=self.stop.name, epoch=s.epoch, batch=s.batch, global_step=s.global_step
            )
            message = f"{self.stop.name}: checkpoint written at epoch {epoch + 1}, batch {s.batch}; "
            stop_and_hand_over(self.stop, self.rt, self.agreement, message + "run the same command to resume")

    @property
    def _shows_progress(self) -> bool:
        return self.cfg.progress and self.rt.is_primary

    # ------------------------------------------------------------------------------------------- evaluation
    def end_epoch(self, epoch: int, train_loss: float) -> None:
        cfg, s = self.cfg, self.state
        # BN statistics are equal on every rank already (averaged at each update, or SyncBN's global ones)
        raw = evaluate(self.model, self.loaders.eval, self.rt, cfg.limit_eval_batches)
        ema = evaluate(self.ema.module, self.loaders.eval, self.rt, cfg.limit_eval_batches) if self.ema else None
        improved = s.record_evaluation(epoch + 1, raw, ema)
        timing = {"train_images_per_s": s.images_per_s, "epoch_time_s": s.train_time_s / (epoch + 1)}
        record = epoch_record(epoch + 1, s.global_step, current_lr(self.optimizer), train_loss, raw, ema, **timing)
        self.files.epoch(record)
        self.sinks.log(record)
        self.log(console_line(record, self.recipe.epochs))
        self._advance(epoch)
        self.save(best=improved)


def train(cfg) -> dict:
    """Train ``cfg`` (a composed TrainConfig) into its run directory; returns results.json's content.

    A run that already finished with the same config is not trained again: its results.json is returned."""
    finished = finished_results(cfg)
    if finished is not None:
        if os.environ.get("RANK", "0") == "0":
            print(f"{run_dir_of(cfg)} finished already; resume=never would train it again", flush=True)
            print_result_table(finished)
        return finished
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        trainer.close()
