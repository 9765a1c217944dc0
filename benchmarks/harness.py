"""Timing that survives a noisy 2-core VM: interleaved rounds, median, ratios measured in one process.

``compare`` times every candidate round-robin (so drift and neighbours hit all alike); each sample repeats
the call until it lasts at least ``min_time_s``; the figure is the median over ``rounds`` samples. A ratio is
always ours / reference from the same ``compare`` call (performance-notes §6.0).

On a GPU a sample synchronises before and after its calls only, not after each call: calls queue as they do
in training, and a sub-millisecond call is not charged a synchronisation each. Rows take GPU-sized batches
there (``Context.batch``), and every benchmark module starts from a training run's backend flags
(``backend_flags``), whatever the module before it changed.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


@dataclass
class Row:
    group: str  # e.g. "operators / DimConv"
    name: str  # what was timed
    value: float | None  # the headline figure (ms, img/s, ratio...); None: not measurable on this device
    unit: str
    reference: str | None = None  # the row's reference, when value is compared with one
    ratio: float | None = None  # ours / reference (time) or reference / ours, as `ratio_meaning` says
    ratio_meaning: str = ""
    target: str = ""  # e.g. "<= 4x"
    met: bool | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)
    cause: str = ""  # where a target is missed: the measured reason

    def __post_init__(self):
        if self.met is not None:
            self.met = bool(self.met)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    device: torch.device
    quick: bool  # fewer rounds and shorter samples (smoke runs)
    rounds: int = 5
    min_time_s: float = 0.15
    out: Path = Path("docs")  # where figures next to the doc go
    last_samples: dict = field(default_factory=dict)  # every sample of the last compare, seconds

    def __post_init__(self):
        if self.quick:
            self.rounds, self.min_time_s = 2, 0.02

    def batch(self, cpu: int, gpu: int, quick: int | None = None) -> int:
        """A row's batch: ``gpu`` on a GPU (CPU-sized batches leave it timing launch overhead), else ``cpu``
        (``quick`` in a smoke run, when given)."""
        if self.device.type == "cuda":
            return gpu
        return quick if self.quick and quick is not None else cpu


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def backend_flags(device: torch.device):
    """The flags a training run sets on ``device`` (engine/runtime.py: cudnn.benchmark on a GPU, no
    deterministic algorithms) for the block, and the previous ones back afterwards: building a Trainer sets
    them process-wide, which would otherwise carry over to every later row."""
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = device.type == "cuda", False
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def _sample(fn: Callable[[], object], device, min_time_s: float) -> float:
    """Seconds per call of ``fn`` run n times between two synchronisations, n grown until that lasts
    ``min_time_s``."""
    n = 1
    while True:
        sync(device)
        start = time.perf_counter()
        for _ in range(n):
            fn()
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time_s:
            return elapsed / n
        n = max(2 * n, math.ceil(1.2 * n * min_time_s / max(elapsed, 1e-9)))


def compare(candidates: dict[str, Callable[[], object]], ctx: Context, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each candidate, timed round-robin."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
        sync(ctx.device)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(ctx.rounds):
        for name, fn in candidates.items():
            samples[name].append(_sample(fn, ctx.device, ctx.min_time_s))
    ctx.last_samples = samples
    return {name: statistics.median(values) for name, values in samples.items()}


def spread(values: list[float]) -> float:
    """Interquartile range over the median of repeated samples: how much the machine moved the figure."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return (q[2] - q[0]) / q[1]


def forward_backward(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One training-style call: forward, backward of a fixed upstream gradient of ones."""
    x = x.detach().requires_grad_(x.is_floating_point())

    def fn():
        out = module(x)
        out.backward(torch.ones_like(out))
        module.zero_grad(set_to_none=True)
        x.grad = None

    return fn


def train_step(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer, amp_dtype: torch.dtype | None = None
) -> Callable[[], None]:
    """One bare training step: cross-entropy forward (under autocast to ``amp_dtype`` if given), backward,
    optimizer step, zero_grad."""
    criterion = torch.nn.CrossEntropyLoss()
    autocast = (
        (lambda: torch.autocast(x.device.type, dtype=amp_dtype)) if amp_dtype is not None else contextlib.nullcontext
    )

    def fn():
        with autocast():
            loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return fn


class FunctionModule(torch.nn.Module):
    """A function as a module, so that forward_backward can time it like any layer."""

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)
