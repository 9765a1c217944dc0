"""fp16 loss scaling and the non-finite stop (issue 17, finding 9): GradScaler skips the update of a transient
overflow, so the run goes on; it stops when the model took the overflow in or the losses stay non-finite.
Checked on the finiteness check itself (fp16 needs a GPU), with and without a scaler."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from effconv.engine.finite import FP16_NONFINITE_LIMIT, LossWatch
from effconv.engine.runtime import Runtime
from effconv.errors import NonFiniteLossError


class _Files:
    checkpoints = Path("checkpoints")

    def __init__(self):
        self.events = []

    def event(self, kind, **fields):
        self.events.append(kind)


def checker(scaled: bool) -> LossWatch:
    """The loop's loss watch over a small model with BN statistics, with or without loss scaling."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    return LossWatch(model, Runtime(torch.device("cpu")), _Files(), loss_scaling=scaled)


def check(watch: LossWatch, pending: list) -> None:
    watch.pending = list(pending)
    watch.check(epoch=0, batches_per_epoch=100)


def losses(*values: float) -> list:
    return [(b, torch.tensor(v)) for b, v in enumerate(values)]


def test_fp16_goes_on_after_a_transient_overflow():
    watch = checker(scaled=True)
    check(watch, losses(2.3, math.inf, 2.2, math.nan, 2.1))
    assert watch.pending == [] and watch.files.events == []


def test_fp16_stops_when_the_overflow_reached_the_model():
    watch = checker(scaled=True)
    watch.model[1].running_var[2] = math.nan  # BN statistics updated by the overflowing forward
    with pytest.raises(NonFiniteLossError, match="loss became inf at step 1 "):
        check(watch, losses(2.3, math.inf, 2.2))


def test_fp16_stops_when_losses_stay_non_finite_across_checks():
    watch = checker(scaled=True)
    check(watch, losses(*[2.0] * 5, *[math.nan] * (FP16_NONFINITE_LIMIT - 2)))
    late = [(b + 50, loss) for b, loss in losses(math.nan, math.nan, 1.0)]  # the run continues in the next window
    with pytest.raises(NonFiniteLossError, match="at step 51 "):
        check(watch, late)


def test_without_loss_scaling_the_first_non_finite_loss_stops():
    with pytest.raises(NonFiniteLossError, match="loss became nan at step 3 "):
        check(checker(scaled=False), losses(2.3, 2.2, 2.1, math.nan))
