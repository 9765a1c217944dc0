"""The one training loop: model + data + recipe -> run directory. It knows nothing of any paper.

Per optimizer update: ``accum_steps`` micro-batches (the loss of each divided by the true size of its window,
so a short last window is not under-weighted), optional gradient clipping, the optimizer step, the EMA update
and the per-update schedule step. Per epoch: evaluation of the raw and the EMA weights, one summary row,
``last.pt`` (and ``best.pt``). ``last.pt`` is also written mid-epoch every ``checkpoint_interval_s`` and on
SIGTERM/SIGUSR1, always at an update boundary, with the position in the epoch: running the same command
again resumes exactly where it stopped (``resume=auto``).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from timm.utils import ModelEmaV3, dispatch_clip_grad, distribute_bn
from torch.nn.parallel import DistributedDataParallel

from effconv import data as data_lib
from effconv import models
from effconv.config import to_plain, validate
from effconv.engine import checkpoint as ckpt
from effconv.engine.evaluation import evaluate
from effconv.engine.optim import build_optimizer, build_scheduler, current_lr, scale_lr
from effconv.engine.outputs import RunFiles, Sinks
from effconv.engine.results import build_results, print_result_table, run_dir_of
from effconv.engine.runtime import Runtime, setup
from effconv.engine.workarounds import avoid_cpu_channels_last_crash
from effconv.errors import NonFiniteLossError, UserError
from effconv.profile import count_cost

NAN_CHECK_EVERY = 50  # micro-batches between finiteness checks (each check synchronises a GPU)


class Interrupted(Exception):
    """SIGTERM/SIGUSR1 arrived; a checkpoint was written and the run can be resumed."""

    exit_code = 143


@dataclass
class Progress:
    """Everything besides weights and optimizer state that an exact resume needs."""

    epoch: int = 0  # the epoch in progress
    batch: int = 0  # batches of that epoch already trained
    global_step: int = 0  # optimizer updates done
    loss_sum: float = 0.0  # training loss of the epoch so far, summed over images
    seen: int = 0  # images of the epoch so far
    train_time_s: float = 0.0  # wall time spent in training steps, whole run
    train_images: int = 0
    best: dict = field(default_factory=dict)  # top1/top5/epoch of raw and EMA weights, and the primary metric
    last: dict = field(default_factory=dict)


class StopSignal:
    """Turns SIGTERM/SIGUSR1 into a flag the loop checks at update boundaries."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class Trainer:
    def __init__(self, cfg):
        validate(cfg)
        self.cfg, self.recipe = cfg, cfg.recipe
        self.rt: Runtime = setup(cfg.device, cfg.amp, cfg.seed, cfg.deterministic, cfg.channels_last)
        self.files = RunFiles(run_dir_of(cfg), self.rt.is_primary)
        self.progress = Progress()
        self.last_save = time.monotonic()

    def log(self, message: str) -> None:
        if self.rt.is_primary:
            print(message, flush=True)

    # ----------------------------------------------------------------------------------------------- set-up
    def build(self) -> None:
        cfg, rt, recipe = self.cfg, self.rt, self.recipe
        model_cfg = to_plain(cfg.model)
        model = models.create(model_cfg, cfg.data.num_classes)
        if model_cfg.get("init_from"):
            ckpt.init_weights_from(model, model_cfg["init_from"], log=self.log)
        self.input_size = (3, cfg.data.img_size, cfg.data.img_size)
        self.cost = count_cost(model, self.input_size)
        model.to(rt.device, memory_format=rt.memory_format)
        avoid_cpu_channels_last_crash(model, rt.device, cfg.channels_last)
        if rt.distributed and cfg.sync_bn:
            from timm.layers import convert_sync_batchnorm

            model = convert_sync_batchnorm(model)
        self.model = model
        self.ema = ModelEmaV3(model, decay=recipe.ema_decay, use_warmup=recipe.ema_warmup) if recipe.ema else None

        self.loaders = data_lib.build(
            cfg.data,
            recipe.batch_size,
            recipe.eval_batch_size or 2 * recipe.batch_size,
            rt.device,
            cfg.seed,
            rt.rank,
            rt.world_size,
            rt.memory_format,
        )
        self.batches_per_epoch = min(len(self.loaders.train), cfg.limit_train_batches or len(self.loaders.train))
        self.updates_per_epoch = math.ceil(self.batches_per_epoch / recipe.accum_steps)
        self.lr = scale_lr(recipe, rt.world_size)
        self.optimizer = build_optimizer(model, recipe, self.lr.lr)
        self.scheduler = build_scheduler(self.optimizer, recipe, self.updates_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda") if rt.amp_dtype == torch.float16 else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def wrap(self) -> None:
        """The module the training forward runs through: compiled and/or DDP-wrapped bare model."""
        forward = torch.compile(self.model, mode=self.cfg.compile_mode) if self.cfg.compile else self.model
        if self.rt.distributed:
            ids = [self.rt.device.index] if self.rt.device.type == "cuda" else None
            forward = DistributedDataParallel(forward, device_ids=ids)
        self.forward = forward

    # ------------------------------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {
            "version": 1,
            "arch": self.cfg.model.name,
            "state_dict": self.model.state_dict(),
            "state_dict_ema": self.ema.module.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "amp_scaler": self.scaler.state_dict() if self.scaler else None,
            "epoch": self.progress.epoch,
            "batch": self.progress.batch,
            "global_step": self.progress.global_step,
            "progress": asdict(self.progress),
            "world_size": self.rt.world_size,
            "rng": ckpt.rng_state(),
            "config": to_plain(self.cfg),
        }

    def save(self, best: bool = False) -> None:
        if self.rt.is_primary:
            state = self.state()
            ckpt.save_atomic(state, self.files.checkpoints / ckpt.LAST, keep_previous=True)
            if best:
                ckpt.save_atomic(state, self.files.checkpoints / ckpt.BEST)
        self.last_save = time.monotonic()

    def resume(self) -> None:
        cfg = self.cfg
        if cfg.resume == "never":
            return
        if cfg.resume == "auto":
            found = ckpt.find_resumable(self.files.checkpoints, log=self.log)
            if found is None:
                return
            path, state = found
        else:
            path, state = cfg.resume, ckpt.load(cfg.resume)
        self._check_compatible(path, state)
        try:
            self.model.load_state_dict(state["state_dict"])
            if self.ema and state.get("state_dict_ema"):
                self.ema.module.load_state_dict(state["state_dict_ema"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as e:
            raise UserError(
                f"checkpoint {path} does not fit this model/optimizer ({str(e).splitlines()[0]}); "
                "use resume=never or another run_name"
            ) from None
        if self.scaler and state.get("amp_scaler"):
            self.scaler.load_state_dict(state["amp_scaler"])
        self.progress = Progress(**state["progress"])
        if state.get("world_size", 1) != self.rt.world_size and self.progress.batch:
            self.log("world size changed mid-epoch: the interrupted epoch restarts from its first batch")
            self.progress.batch, self.progress.loss_sum, self.progress.seen = 0, 0.0, 0
        ckpt.set_rng_state(state["rng"])
        self.log(
            f"resumed from {path}: epoch {self.progress.epoch + 1}, batch {self.progress.batch}, "
            f"update {self.progress.global_step}"
        )
        self.files.event(
            "resume", checkpoint=str(path), **{k: getattr(self.progress, k) for k in ("epoch", "batch", "global_step")}
        )

    def _check_compatible(self, path, state: dict) -> None:
        old = state.get("config", {})
        if old.get("model", {}).get("name") not in (None, self.cfg.model.name):
            raise UserError(
                f"checkpoint {path} is of model {old['model']['name']}, not {self.cfg.model.name}; "
                "use resume=never or another run_name"
            )
        if self.cfg.allow_resume_change:
            return
        old_recipe = old.get("recipe", {})
        old_batch = old_recipe.get("batch_size", 0) * old_recipe.get("accum_steps", 1) * state.get("world_size", 1)
        changes = [
            ("recipe.epochs", old_recipe.get("epochs"), self.recipe.epochs),
            (
                "effective batch (recipe.batch_size x recipe.accum_steps x processes)",
                old_batch,
                self.lr.effective_batch,
            ),
        ]
        for key, before, now in changes:
            if before is not None and before != now:
                raise UserError(
                    f"checkpoint {path} was trained with {key}={before}, this run asks for {now}: "
                    "pass allow_resume_change=true to continue with the new value, or set run_name"
                )

    # ---------------------------------------------------------------------------------------------- training
    def run(self) -> dict:
        self.build()
        self.resume()
        self.wrap()
        cfg, recipe, p = self.cfg, self.recipe, self.progress
        self.files.write_config(cfg)
        self.files.start_summary(p.epoch)
        self.sinks = Sinks(cfg.logger, self.files.dir, to_plain(cfg), self.rt.is_primary)
        self.log(f"run dir {self.files.dir}")
        self.log(
            f"{cfg.model.name}: {self.cost.params_m:.4f} M params, {self.cost.madds_m:.2f} M MAdds at "
            f"{self.input_size[1]}x{self.input_size[2]}; {self.lr.note}"
        )
        if recipe.accum_steps > 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
            self.log(
                f"note: BatchNorm statistics see micro-batches of {recipe.batch_size}, not the effective "
                f"batch of {self.lr.effective_batch}"
            )
        self.files.event(
            "start",
            model=cfg.model.name,
            params=self.cost.params,
            madds=self.cost.madds,
            lr=self.lr.lr,
            effective_batch=self.lr.effective_batch,
            world_size=self.rt.world_size,
            resumed_at=asdict(p) if p.global_step else None,
        )
        self._sync_schedule()
        with StopSignal() as self.stop:
            for epoch in range(p.epoch, recipe.epochs):
                epoch_stats = self.train_epoch(epoch)
                if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == recipe.epochs:
                    self.end_epoch(epoch, epoch_stats)
                else:
                    self._advance(epoch)
                    self.save()
        results = build_results(self)
        self.files.write_results(results)
        self.files.event("end", **{k: results[k] for k in ("top1", "best_top1", "last_top1")})
        if self.rt.is_primary:
            print_result_table(results)
        return results

    def _sync_schedule(self) -> None:
        if self.recipe.sched_on_updates:
            self.scheduler.step_update(self.progress.global_step)
        else:
            self.scheduler.step(self.progress.epoch)

    def _advance(self, epoch: int) -> None:
        p = self.progress
        p.epoch, p.batch, p.loss_sum, p.seen = epoch + 1, 0, 0.0, 0
        self.scheduler.step(epoch + 1)

    def train_epoch(self, epoch: int) -> dict:
        recipe, rt, p = self.recipe, self.rt, self.progress
        self.model.train()
        accum, n = recipe.accum_steps, self.batches_per_epoch
        loss_sum = torch.tensor(p.loss_sum, dtype=torch.float64, device=rt.device)
        pending: list[tuple[int, torch.Tensor]] = []
        bar = self._progress_bar(epoch, n, p.batch)
        start, images = time.perf_counter(), 0
        for b, (x, y) in enumerate(self.loaders.train.batches(epoch, start=p.batch), start=p.batch):
            if b >= n:
                break
            window_start = b - b % accum
            window = min(accum, n - window_start)  # the last window of an epoch may be short
            update = b == window_start + window - 1
            no_sync = rt.distributed and not update
            with self.forward.no_sync() if no_sync else contextlib.nullcontext():
                with rt.autocast():
                    loss = self.criterion(self.forward(x), y)
                scaled = loss / window
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss = loss.detach()
            loss_sum += loss.double() * len(y)
            images += len(y)
            pending.append((b, loss))
            if update:
                if len(pending) >= NAN_CHECK_EVERY or b + 1 == n:
                    self._check_finite(pending, epoch)
                self._step()
                elapsed = time.perf_counter() - start
                p.batch, p.loss_sum, p.seen = b + 1, float(loss_sum), p.seen + images
                p.train_time_s, p.train_images = p.train_time_s + elapsed, p.train_images + images
                start, images = time.perf_counter(), 0
                if bar is not None:
                    bar.update(window)
                    if p.global_step % 10 == 0 or b + 1 == n:
                        bar.set_postfix(
                            loss=f"{loss.item():.3f}",
                            lr=f"{current_lr(self.optimizer):.4g}",
                            img_s=f"{p.train_images / max(p.train_time_s, 1e-9):.0f}",
                        )
                self._maybe_checkpoint(pending, epoch)
        if bar is not None:
            bar.close()
        self._check_finite(pending, epoch)
        return {"loss": p.loss_sum / max(p.seen, 1), "seen": p.seen}

    def _step(self) -> None:
        recipe = self.recipe
        if recipe.clip_grad is not None:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            dispatch_clip_grad(self.model.parameters(), recipe.clip_grad, mode=recipe.clip_mode)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.global_step += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.progress.global_step)
        if recipe.sched_on_updates:
            self.scheduler.step_update(self.progress.global_step)

    def _check_finite(self, pending: list, epoch: int) -> None:
        if not pending:
            return
        losses = torch.stack([loss for _, loss in pending])
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            b = pending[int((~finite).nonzero()[0])][0]
            step = epoch * self.batches_per_epoch + b
            self.files.event("nonfinite_loss", epoch=epoch, batch=b, step=step)
            raise NonFiniteLossError(
                f"loss became {losses[~finite][0].item()} at step {step} (epoch {epoch + 1}, batch {b}); "
                f"the last good checkpoint is kept in {self.files.checkpoints}: lower recipe.lr or check the data"
            )
        pending.clear()

    def _maybe_checkpoint(self, pending: list, epoch: int) -> None:
        interval = self.cfg.checkpoint_interval_s
        due = interval > 0 and time.monotonic() - self.last_save >= interval
        if not (due or self.stop.received) or self.progress.batch >= self.batches_per_epoch:
            return
        self._check_finite(pending, epoch)
        self.save()
        if self.stop.received:
            self.files.event(
                "interrupted",
                signal=self.stop.received,
                **{k: getattr(self.progress, k) for k in ("epoch", "batch", "global_step")},
            )
            raise Interrupted(
                f"{self.stop.received}: checkpoint written at epoch {epoch + 1}, batch "
                f"{self.progress.batch}; run the same command to resume"
            )

    def _progress_bar(self, epoch: int, total: int, initial: int):
        if not (self.cfg.progress and self.rt.is_primary):
            return None
        from tqdm import tqdm

        return tqdm(
            total=total,
            initial=initial,
            desc=f"epoch {epoch + 1}/{self.recipe.epochs}",
            leave=False,
            dynamic_ncols=True,
            mininterval=1.0,
            disable=None,
        )

    # ------------------------------------------------------------------------------------------- evaluation
    def end_epoch(self, epoch: int, train_stats: dict) -> None:
        cfg, p = self.cfg, self.progress
        if self.rt.distributed and not cfg.sync_bn:
            distribute_bn(self.model, self.rt.world_size, reduce=True)
            if self.ema is not None:
                distribute_bn(self.ema.module, self.rt.world_size, reduce=True)
        raw = evaluate(self.model, self.loaders.eval, self.rt, cfg.limit_eval_batches)
        ema = evaluate(self.ema.module, self.loaders.eval, self.rt, cfg.limit_eval_batches) if self.ema else None
        primary = ema["top1"] if ema else raw["top1"]
        improved = primary > p.best.get("top1", -1.0)
        p.last = {"epoch": epoch + 1, "top1": raw["top1"], "top5": raw["top5"], "loss": raw["loss"]}
        if ema:
            p.last.update(ema_top1=ema["top1"], ema_top5=ema["top5"], ema_loss=ema["loss"])
        for prefix, metrics in (("raw", raw), ("ema", ema)):
            if metrics and metrics["top1"] > p.best.get(f"{prefix}_top1", -1.0):
                p.best.update(
                    {f"{prefix}_top1": metrics["top1"], f"{prefix}_top5": metrics["top5"], f"{prefix}_epoch": epoch + 1}
                )
        if improved:
            p.best.update(top1=primary, top5=(ema or raw)["top5"], epoch=epoch + 1)
        lr = current_lr(self.optimizer)
        evaluation = {"loss": raw["loss"], "top1": raw["top1"], "top5": raw["top5"]}
        if ema:
            evaluation.update(ema_loss=ema["loss"], ema_top1=ema["top1"], ema_top5=ema["top5"])
        self.files.summary_row(epoch + 1, {"loss": train_stats["loss"]}, evaluation, lr)
        epoch_time = p.train_time_s / (epoch + 1)
        self.files.event(
            "epoch",
            epoch=epoch + 1,
            global_step=p.global_step,
            lr=lr,
            train_loss=train_stats["loss"],
            **{f"eval_{k}": v for k, v in evaluation.items()},
            train_images_per_s=p.train_images / max(p.train_time_s, 1e-9),
        )
        self.sinks.log(
            {"train/loss": train_stats["loss"], "lr": lr, **{f"val/{k}": v for k, v in evaluation.items()}},
            step=p.global_step,
        )
        self.log(
            f"epoch {epoch + 1}/{self.recipe.epochs}: train loss {train_stats['loss']:.4f}  top-1 "
            f"{raw['top1']:.2f}  top-5 {raw['top5']:.2f}"
            + (f"  EMA top-1 {ema['top1']:.2f}" if ema else "")
            + f"  lr {lr:.4g}  ({epoch_time:.1f} s/epoch avg)"
        )
        self._advance(epoch)
        self.save(best=improved)


def train(cfg) -> dict:
    """Train ``cfg`` (a composed TrainConfig) into its run directory; returns results.json's content."""
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        sinks = getattr(trainer, "sinks", None)
        if sinks is not None:
            sinks.close()
