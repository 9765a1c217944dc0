"""Params, MAdds and throughput: one counter, one convention (DESIGN §3).

MAdds are multiply-accumulates per image, counted with forward hooks at a given input size:

* ``nn.Conv1d/2d/3d``: output elements x (C_in / groups) x prod(kernel);
* ``nn.Linear``: rows x in_features x out_features;
* any module that defines ``madds(inputs, output) -> int`` adds what it returns: operators that multiply
  per element in a way the papers count (MicroNet's Dynamic Shift-Max fusions) or that run convolutions
  through the functional API on their own weights report it there (in MAdds for the whole batch).

Not counted: biases, normalisation, pointwise activations, pooling, interpolation, channel shuffles and
SE-style gating products. This is the convention under which the papers' figures are reproduced
(reference-architectures §0) and it is what timm/fvcore call MACs. Params are ``sum(p.numel())`` over
``model.parameters()``, BN affine parameters and PReLU slopes included.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _module_madds(module: nn.Module, inputs, output) -> int:
    if isinstance(module, _CONV):
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return output.numel() * per_output
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


@dataclass
class Cost:
    params: int
    madds: int  # per image
    by_module: dict[str, int] = field(default_factory=dict)  # per image, keyed by module name

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def madds_m(self) -> float:
        return self.madds / 1e6

    def madds_under(self, prefix: str) -> int:
        """MAdds of every module whose name starts with ``prefix`` (a level, a block)."""
        return sum(v for k, v in self.by_module.items() if k == prefix or k.startswith(prefix + "."))


def count_cost(
    model: nn.Module, input_size=(3, 224, 224), batch_size: int = 1, device: torch.device | str = "cpu"
) -> Cost:
    """Params and MAdds per image of ``model`` at ``input_size`` (C, H, W); the model is left unchanged."""
    counts: dict[str, int] = defaultdict(int)
    handles = []

    def hook(name):
        def fn(module, inputs, output):
            n = _module_madds(module, inputs, output)
            custom = getattr(module, "madds", None)
            if callable(custom):
                n += int(custom(inputs, output))
            if n:
                counts[name] += n

        return fn

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        x = torch.zeros(batch_size, *input_size, device=device)
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    by_module = {k: v // batch_size for k, v in counts.items()}
    return Cost(count_params(model), sum(by_module.values()), by_module)


@dataclass
class Throughput:
    batch_size: int
    images_per_s: float
    ms_per_batch: float
    device: str


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(
    model: nn.Module,
    input_size=(3, 224, 224),
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    channels_last: bool = True,
    warmup: int = 3,
    min_time_s: float = 1.0,
    repeats: int = 5,
    amp_dtype: torch.dtype | None = None,
) -> Throughput:
    """Inference images/s: median of ``repeats`` timed windows of at least ``min_time_s`` each."""
    device = torch.device(device)
    model = model.eval().to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = torch.randn(batch_size, *input_size, device=device).contiguous(memory_format=memory_format)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        for _ in range(warmup):
            model(x)
        _sync(device)
        samples = []
        for _ in range(repeats):
            n, start = 0, time.perf_counter()
            while True:
                model(x)
                n += 1
                _sync(device)
                elapsed = time.perf_counter() - start
                if elapsed >= min_time_s:
                    break
            samples.append(elapsed / n)
    per_batch = statistics.median(samples)
    return Throughput(batch_size, batch_size / per_batch, per_batch * 1e3, str(device))
