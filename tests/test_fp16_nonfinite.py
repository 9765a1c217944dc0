"""fp16 loss scaling and the non-finite stop (issue 17, finding 9): GradScaler skips the update of a transient
overflow, so the run goes on; it stops when the model took the overflow in or the losses stay non-finite.
Checked on the finiteness check itself (fp16 needs a GPU), with and without a scaler."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from effconv.engine.loop import FP16_NONFINITE_LIMIT, Trainer
from effconv.engine.runtime import Runtime
from effconv.errors import NonFiniteLossError


class _Files:
    checkpoints = Path("checkpoints")

    def __init__(self):
        self.events = []

    def event(self, kind, **fields):
        self.events.append(kind)


def checker(scaled: bool) -> Trainer:
    """The parts of a Trainer that the check reads: model, scaler, runtime, epoch length, run files."""
    trainer = Trainer.__new__(Trainer)
    trainer.model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    trainer.scaler = object() if scaled else None
    trainer.rt = Runtime(torch.device("cpu"))
    trainer.batches_per_epoch = 100
    trainer.files = _Files()
    trainer._nonfinite_run = 0
    return trainer


def losses(*values: float) -> list:
    return [(b, torch.tensor(v)) for b, v in enumerate(values)]


def test_fp16_goes_on_after_a_transient_overflow():
    trainer = checker(scaled=True)
    pending = losses(2.3, math.inf, 2.2, math.nan, 2.1)
    trainer._check_finite(pending, epoch=0)
    assert pending == [] and trainer.files.events == []


def test_fp16_stops_when_the_overflow_reached_the_model():
    trainer = checker(scaled=True)
    trainer.model[1].running_var[2] = math.nan  # BN statistics updated by the overflowing forward
    with pytest.raises(NonFiniteLossError, match="loss became inf at step 1 "):
        trainer._check_finite(losses(2.3, math.inf, 2.2), epoch=0)


def test_fp16_stops_when_losses_stay_non_finite_across_checks():
    trainer = checker(scaled=True)
    trainer._check_finite(losses(*[2.0] * 5, *[math.nan] * (FP16_NONFINITE_LIMIT - 2)), epoch=0)
    late = [(b + 50, loss) for b, loss in losses(math.nan, math.nan, 1.0)]  # the run continues in the next window
    with pytest.raises(NonFiniteLossError, match="at step 51 "):
        trainer._check_finite(late, epoch=0)


def test_without_loss_scaling_the_first_non_finite_loss_stops():
    with pytest.raises(NonFiniteLossError, match="loss became nan at step 3 "):
        checker(scaled=False)._check_finite(losses(2.3, 2.2, 2.1, math.nan), epoch=0)
