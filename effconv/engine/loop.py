"""The one training loop: model + data + recipe -> run directory. It knows nothing of any paper.

Per optimizer update: ``accum_steps`` micro-batches (the loss of each divided by the true size of its window,
so a short last window is not under-weighted), optional gradient clipping, the optimizer step, the EMA update
and the per-update schedule step. Per epoch: evaluation of the raw and the EMA weights, one summary row,
``last.pt`` (and ``best.pt``). ``last.pt`` is also written mid-epoch every ``checkpoint_interval_s`` and on
SIGTERM/SIGUSR1, always at an update boundary, with the position in the epoch: running the same command
again resumes exactly where it stopped (``resume=auto``).

Under DDP (torchrun, or a multi-task submitit job) every rank runs this loop on its shard of the data; rank 0
alone writes files. Each optimizer update also averages the BatchNorm running statistics over the ranks
(unless ``sync_bn``, whose statistics are global already), so every rank holds the same model and the same
EMA, and a checkpoint written by rank 0 resumes every rank exactly. Decisions that every rank must take at
the same update (stop on a signal, write a timed checkpoint, stop on a non-finite loss) are agreed through
collectives; each rank's RNG state is gathered into the checkpoint.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
import torch.nn as nn
from timm.utils import ModelEmaV3, dispatch_clip_grad, random_seed
from torch.nn.parallel import DistributedDataParallel

from effconv import models
from effconv.config import to_plain, validate
from effconv.engine import checkpoint as ckpt
from effconv.engine.datafiles import build_loaders
from effconv.engine.evaluation import evaluate
from effconv.engine.optim import build_optimizer, build_scheduler, current_lr, scale_lr
from effconv.engine.outputs import RunFiles, Sinks
from effconv.engine.results import build_results, print_result_table, run_dir_of
from effconv.engine.runtime import (
    Agreement,
    Runtime,
    all_reduce_sum,
    average_bn_statistics,
    barrier,
    gather_to_primary,
    setup,
)
from effconv.engine.sync_bn import to_sync_batchnorm
from effconv.engine.workarounds import avoid_cpu_channels_last_crash
from effconv.errors import NonFiniteLossError, UserError
from effconv.profile import count_cost

NAN_CHECK_EVERY = 50  # micro-batches between finiteness checks (each check synchronises a GPU)
FP16_NONFINITE_LIMIT = 10  # non-finite losses in a row that stop an fp16 run even with finite weights


class Interrupted(Exception):
    """SIGTERM/SIGUSR1 arrived; a checkpoint was written and the run can be resumed."""

    exit_code = 143


@dataclass
class Progress:
    """Everything besides weights and optimizer state that an exact resume needs."""

    epoch: int = 0  # the epoch in progress
    batch: int = 0  # batches of that epoch already trained
    global_step: int = 0  # optimizer updates done
    loss_sum: float = 0.0  # training loss of the epoch so far, summed over images (a device tensor mid-epoch)
    seen: int = 0  # images of the epoch so far
    train_time_s: float = 0.0  # wall time spent in training steps, whole run
    train_images: int = 0  # all ranks together
    best: dict = field(default_factory=dict)  # top1/top5/epoch of raw and EMA weights, and the primary metric
    last: dict = field(default_factory=dict)


class StopSignal:
    """SIGTERM/SIGUSR1 become a flag the loop acts on at the next update boundary: write ``last.pt``, stop.

    Inside a submitit job (``hydra/launcher=submitit_slurm`` / ``submitit_local``) submitit's own
    pre-emption/time-out signal (SIGUSR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` names another) is caught too.
    Submitit installed its handler before ours; after our checkpoint, ``hand_over`` calls it: it asks the
    launcher's ``checkpoint()`` for the resubmission (hydra-submitit-launcher resubmits the same job with the
    same overrides, hence the same run directory) and requeues the job, which resumes from ``last.pt``.
    """

    def __init__(self):
        self.received: int | None = None
        self.previous = {}

    @staticmethod
    def signals() -> tuple[int, ...]:
        names = ["SIGTERM", "SIGUSR1"]
        if os.environ.get("SUBMITIT_EXECUTOR"):
            names.append("SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
        return tuple(dict.fromkeys(getattr(signal, n) for n in names if hasattr(signal, n)))

    @property
    def name(self) -> str | None:
        return signal.Signals(self.received).name if self.received else None

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for s in self.signals():
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum

    def hand_over(self) -> None:
        """Pass the signal on to the handler installed before ours (submitit's requeue), if any."""
        previous = self.previous.get(self.received)
        if callable(previous):
            previous(self.received, None)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class Trainer:
    def __init__(self, cfg):
        validate(cfg)
        self.cfg, self.recipe = cfg, cfg.recipe
        self.rt: Runtime = setup(
            cfg.device, cfg.amp, cfg.seed, cfg.deterministic, cfg.channels_last, cfg.get("threads")
        )
        self.files = RunFiles(run_dir_of(cfg), self.rt.is_primary)
        self.progress = Progress()
        self.last_save = time.monotonic()
        self._nonfinite_run = 0  # non-finite losses in a row, under fp16 loss scaling

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
            model = to_sync_batchnorm(model, rt.device)
        self.model = model
        self.ema = ModelEmaV3(model, decay=recipe.ema_decay, use_warmup=recipe.ema_warmup) if recipe.ema else None

        self.loaders = build_loaders(
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
            # DDP copies rank 0's parameters and buffers into every rank here; afterwards the buffers are kept
            # equal by averaging BN statistics at each update, not by a broadcast before every forward
            forward = DistributedDataParallel(forward, device_ids=ids, **_NO_FORWARD_BUFFER_SYNC)
            if self.ema is not None and self.progress.global_step == 0:
                self.ema.set(self.model)  # the EMA was copied from this rank's own initialisation
        self.forward = forward
        self.agreement = Agreement(self.rt)

    # ------------------------------------------------------------------------------------------ checkpoints
    def state(self, ranks: list) -> dict:
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
            "updates_per_epoch": self.updates_per_epoch,
            "rng": ranks[0]["rng"],
            **({"ranks": ranks} if self.rt.distributed else {}),
            "config": to_plain(self.cfg),
        }

    def save(self, best: bool = False) -> None:
        # what differs between ranks, for an exact resume: RNG (dropout) and the epoch's loss sums so far
        p = self.progress
        p.loss_sum = float(p.loss_sum)  # read from the device once per checkpoint
        ranks = gather_to_primary(
            {"rng": ckpt.rng_state(self.rt.device), "loss_sum": p.loss_sum, "seen": p.seen}, self.rt
        )
        if self.rt.is_primary:
            state = self.state(ranks)
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
        self.progress = p = Progress(**state["progress"])
        self._restore_rank_state(state)
        updates_before = state.get("updates_per_epoch", self.updates_per_epoch)
        if state.get("world_size", 1) != self.rt.world_size or updates_before != self.updates_per_epoch:
            # another sharding or epoch length (allow_resume_change): a mid-epoch position means nothing now,
            # and the schedule, which is a function of the update count, must continue at this epoch's start
            if p.batch:
                self.log(f"the epoch length changed: epoch {p.epoch + 1} restarts from its first batch")
            p.batch, p.loss_sum, p.seen = 0, 0.0, 0
            p.global_step = p.epoch * self.updates_per_epoch
        self.log(
            f"resumed from {path}: epoch {self.progress.epoch + 1}, batch {self.progress.batch}, "
            f"update {self.progress.global_step}"
        )
        self.files.event(
            "resume", checkpoint=str(path), **{k: getattr(self.progress, k) for k in ("epoch", "batch", "global_step")}
        )

    def _restore_rank_state(self, state: dict) -> None:
        ranks = state.get("ranks")
        if ranks and len(ranks) == self.rt.world_size:
            mine = ranks[self.rt.rank]
            ckpt.set_rng_state(mine["rng"], self.rt.device)
            self.progress.loss_sum, self.progress.seen = mine["loss_sum"], mine["seen"]
        elif self.rt.is_primary:
            ckpt.set_rng_state(state["rng"], self.rt.device)
        else:  # ranks that did not exist when the checkpoint was written: fresh streams
            random_seed(self.cfg.seed + state.get("global_step", 0), self.rt.rank)

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
            pid=os.getpid(),
            host=socket.gethostname(),
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
        self.agreement.close()
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
            if self.scaler is None:
                loss_sum += loss.double() * len(y)
            else:  # a skipped fp16 update's non-finite loss would make the epoch's mean inf: count it as 0
                loss_sum += torch.nan_to_num(loss.double(), nan=0.0, posinf=0.0, neginf=0.0) * len(y)
            images += len(y)
            pending.append((b, loss))
            if update:
                if len(pending) >= NAN_CHECK_EVERY or b + 1 == n:
                    self._check_finite(pending, epoch)
                self._step()
                elapsed = time.perf_counter() - start
                # the running sum stays on the device: float() here would synchronise a GPU every update
                p.batch, p.loss_sum, p.seen = b + 1, loss_sum, p.seen + images
                p.train_time_s, p.train_images = p.train_time_s + elapsed, p.train_images + images * rt.world_size
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
        p.loss_sum = float(p.loss_sum)
        totals = torch.tensor([p.loss_sum, p.seen], dtype=torch.float64, device=rt.device)
        loss_sum, seen = all_reduce_sum(totals, rt).tolist()  # the whole global batch's loss
        return {"loss": loss_sum / max(seen, 1.0), "seen": int(seen)}

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
        if not self.cfg.sync_bn:
            average_bn_statistics(self.model, self.rt)  # no-op in a single process
        if self.ema is not None:
            self.ema.update(self.model, step=self.progress.global_step)
        if recipe.sched_on_updates:
            self.scheduler.step_update(self.progress.global_step)

    def _check_finite(self, pending: list, epoch: int) -> None:
        """Stop at the first non-finite loss of ``pending`` (every rank, when any rank saw one); under fp16 loss
        scaling only when it is more than the transient overflow GradScaler handles (``_first_stop``)."""
        if not pending:
            return
        losses = torch.stack([loss for _, loss in pending])
        finite = torch.isfinite(losses).tolist()  # the check's one host read
        first_bad = torch.tensor([self._first_stop([b for b, _ in pending], finite)])
        if self.rt.distributed:  # on the host-side group: no device tensor, no extra GPU synchronisation
            dist.all_reduce(first_bad, op=dist.ReduceOp.MIN, group=self.rt.control_group)
        b = int(first_bad)
        if b < self.batches_per_epoch:
            mine = [i for i, (batch, _) in enumerate(pending) if batch == b and not finite[i]]
            value = losses[mine[0]].item() if mine else "non-finite on another rank"
            step = epoch * self.batches_per_epoch + b
            self.files.event("nonfinite_loss", epoch=epoch, batch=b, step=step)
            raise NonFiniteLossError(
                f"loss became {value} at step {step} (epoch {epoch + 1}, batch {b}); "
                f"the last good checkpoint is kept in {self.files.checkpoints}: lower recipe.lr or check the data"
            )
        pending.clear()

    def _first_stop(self, batches: list[int], finite: list[bool]) -> int:
        """The batch at which the run stops (``batches_per_epoch``: none). Without loss scaling, the first
        non-finite loss. With fp16's GradScaler a non-finite loss is routine: the scaler skips that update and
        lowers its scale, so the run goes on unless the weights or BN statistics took the overflow in (checked
        only then) or ``FP16_NONFINITE_LIMIT`` losses in a row are non-finite."""
        bad = [b for b, ok in zip(batches, finite) if not ok]
        if self.scaler is None:
            return bad[0] if bad else self.batches_per_epoch
        for b, ok in zip(batches, finite):
            self._nonfinite_run = 0 if ok else self._nonfinite_run + 1
            if self._nonfinite_run >= FP16_NONFINITE_LIMIT:
                return b
        if not bad:
            return self.batches_per_epoch
        state = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        intact = bool(torch.stack([torch.isfinite(t).all() for t in state]).all())
        return self.batches_per_epoch if intact else bad[0]

    def _maybe_checkpoint(self, pending: list, epoch: int) -> None:
        interval = self.cfg.checkpoint_interval_s
        due = interval > 0 and time.monotonic() - self.last_save >= interval
        stop, due = self.agreement.poll(self.stop.received or 0, due)
        if not (due or stop) or self.progress.batch >= self.batches_per_epoch:
            return  # the end of the epoch writes its own checkpoint
        self._check_finite(pending, epoch)
        self.save()
        if stop:
            self.stop.received = stop  # ranks the signal did not reach act on it too
            self._interrupt(epoch)

    def _interrupt(self, epoch: int) -> None:
        p = self.progress
        self.files.event("interrupted", signal=self.stop.name, epoch=p.epoch, batch=p.batch, global_step=p.global_step)
        self.agreement.close()
        barrier(self.rt)  # rank 0's checkpoint is on disk before any rank leaves
        try:
            self.stop.hand_over()  # in a submitit job, rank 0 requeues it here (and exits)
        finally:
            barrier(self.rt)  # ranks leave together, after the requeue was asked for
        raise Interrupted(
            f"{self.stop.name}: checkpoint written at epoch {epoch + 1}, batch {p.batch}; "
            "run the same command to resume"
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
        # BN statistics are equal on every rank already (averaged at each update, or SyncBN's global ones)
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


# DDP keyword that stops the broadcast of buffers before every forward (renamed in recent torch)
_NO_FORWARD_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def train(cfg) -> dict:
    """Train ``cfg`` (a composed TrainConfig) into its run directory; returns results.json's content."""
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        sinks = getattr(trainer, "sinks", None)
        if sinks is not None:
            sinks.close()
