"""The training state besides weights and optimizer: where the run is, what it has seen, its best and last
evaluations. It is what an exact resume restores (with the RNG states) and what results.json reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TrainState:
    epoch: int = 0  # the epoch in progress
    batch: int = 0  # batches of that epoch already trained
    global_step: int = 0  # optimizer updates done
    loss_sum: float = 0.0  # this rank's training loss of the epoch so far, summed (a device tensor mid-epoch)
    seen: int = 0  # images of the epoch so far (this rank's)
    train_time_s: float = 0.0  # wall time spent in training steps, whole run
    train_images: int = 0  # all ranks together
    best: dict = field(default_factory=dict)  # top1/top5/epoch of raw and EMA weights, and the primary metric
    last: dict = field(default_factory=dict)  # the last evaluation

    # ------------------------------------------------------------------------------------------ checkpoint
    def to_checkpoint(self) -> dict:
        """The checkpoint's entries for this state: timm's ``epoch``, our ``batch``/``global_step``, and all of
        it under ``progress``."""
        return {"epoch": self.epoch, "batch": self.batch, "global_step": self.global_step, "progress": asdict(self)}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> TrainState:
        return cls(**checkpoint["progress"])

    # ------------------------------------------------------------------------------------------- progress
    def start_epoch(self, epoch: int) -> None:
        """Move to the start of ``epoch``: nothing of it trained yet."""
        self.epoch, self.batch, self.loss_sum, self.seen = epoch, 0, 0.0, 0

    @property
    def images_per_s(self) -> float:
        return self.train_images / max(self.train_time_s, 1e-9)

    def record_evaluation(self, epoch: int, raw: dict, ema: dict | None) -> bool:
        """Keep the evaluation of the weights after ``epoch`` (1-based) as the last one, and as the best one
        where it improves; True when the primary metric improved (EMA weights when there is an EMA, as the
        papers report, else raw)."""
        primary = ema or raw
        improved = primary["top1"] > self.best.get("top1", -1.0)
        self.last = {"epoch": epoch, "top1": raw["top1"], "top5": raw["top5"], "loss": raw["loss"]}
        if ema:
            self.last.update(ema_top1=ema["top1"], ema_top5=ema["top5"], ema_loss=ema["loss"])
        for prefix, metrics in (("raw", raw), ("ema", ema)):
            if metrics and metrics["top1"] > self.best.get(f"{prefix}_top1", -1.0):
                self.best.update(
                    {f"{prefix}_top1": metrics["top1"], f"{prefix}_top5": metrics["top5"], f"{prefix}_epoch": epoch}
                )
        if improved:
            self.best.update(top1=primary["top1"], top5=primary["top5"], epoch=epoch)
        return improved
