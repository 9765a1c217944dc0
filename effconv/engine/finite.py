"""The non-finite loss stop: the training losses stay on the device and are read every ``NAN_CHECK_EVERY``
micro-batches (one host read per check, not one per step), and every rank stops at the same batch when any
rank saw a non-finite loss there.

Under fp16 loss scaling a non-finite loss is routine: timm's NativeScaler (torch's GradScaler) skips that update
and lowers its scale. The run then goes on unless the weights or BN statistics took the overflow in (checked
only then) or ``FP16_NONFINITE_LIMIT`` losses in a row are non-finite.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from effconv.engine.runtime import Runtime
from effconv.errors import NonFiniteLossError

NAN_CHECK_EVERY = 50  # micro-batches between finiteness checks (each check synchronises a GPU)
FP16_NONFINITE_LIMIT = 10  # non-finite losses in a row that stop an fp16 run even with finite weights
_NONE = 2**62  # "no bad batch" in the ranks' MIN agreement


class LossWatch:
    def __init__(self, model: nn.Module, runtime: Runtime, files, loss_scaling: bool):
        self.model, self.rt, self.files, self.loss_scaling = model, runtime, files, loss_scaling
        self.pending: list[tuple[int, torch.Tensor]] = []  # (batch, detached loss) since the last check
        self.nonfinite_run = 0  # non-finite losses in a row, under loss scaling

    def add(self, batch: int, loss: torch.Tensor) -> None:
        self.pending.append((batch, loss))

    @property
    def due(self) -> bool:
        return len(self.pending) >= NAN_CHECK_EVERY

    def check(self, epoch: int, batches_per_epoch: int) -> None:
        """Raise NonFiniteLossError at the first batch of the pending ones that stops the run (on every rank)."""
        if not self.pending:
            return
        losses = torch.stack([loss for _, loss in self.pending])
        finite = torch.isfinite(losses).tolist()  # the check's one host read
        first_bad = torch.tensor([self._first_stop([b for b, _ in self.pending], finite)])
        if self.rt.distributed:  # on the host-side group: no device tensor, no extra GPU synchronisation
            dist.all_reduce(first_bad, op=dist.ReduceOp.MIN, group=self.rt.control_group)
        b = int(first_bad)
        if b != _NONE:
            mine = [i for i, (batch, _) in enumerate(self.pending) if batch == b and not finite[i]]
            value = losses[mine[0]].item() if mine else "non-finite on another rank"
            step = epoch * batches_per_epoch + b
            self.files.event("nonfinite_loss", epoch=epoch, batch=b, step=step)
            raise NonFiniteLossError(
                f"loss became {value} at step {step} (epoch {epoch + 1}, batch {b}); "
                f"the last good checkpoint is kept in {self.files.checkpoints}: lower recipe.lr or check the data"
            )
        self.pending.clear()

    def _first_stop(self, batches: list[int], finite: list[bool]) -> int:
        """The batch at which the run stops (``_NONE``: it goes on)."""
        bad = [b for b, ok in zip(batches, finite) if not ok]
        if not self.loss_scaling:
            return bad[0] if bad else _NONE
        for b, ok in zip(batches, finite):
            self.nonfinite_run = 0 if ok else self.nonfinite_run + 1
            if self.nonfinite_run >= FP16_NONFINITE_LIMIT:
                return b
        if not bad:
            return _NONE
        state = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        intact = bool(torch.stack([torch.isfinite(t).all() for t in state]).all())
        return _NONE if intact else bad[0]
