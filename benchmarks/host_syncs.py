"""Count the calls that make the host wait for a device, on any device, the CPU included.

On a GPU the host stalls when Python reads a tensor's value (``item``, ``float``, ``int``, ``bool``,
``tolist``, ``numpy``), when a tensor is copied to the host, and when a host tensor is copied to the device
without ``non_blocking`` or from pageable memory (the copy waits for the GPU's queue). On CUDA,
``torch.cuda.set_sync_debug_mode("warn")`` reports what the driver sees (benchmarks/gpu_smoke.py uses both);
on the CPU nothing waits, so this counter catches the Python-level calls that *would* wait, which is what the
CPU tests guard (issue 17, finding 2).

``HostSyncs(device)`` is a ``TorchFunctionMode``: within it, every read of a tensor that lives on ``device``,
every copy between the host and ``device`` that blocks, and every ``torch.tensor(..., device=device)`` (built
on the host, then copied) is counted by kind in ``counts`` and recorded in ``where`` (the calling line).
``device`` may be ``meta``, the tests' stand-in for a GPU (no values, so nothing can silently be read): a
read of a meta tensor returns zeros, and a copy of one to the host a zero tensor, both counted.
"""

from __future__ import annotations

import collections
import sys

import torch
from torch.overrides import TorchFunctionMode

READS = {"item", "__float__", "__int__", "__bool__", "__index__", "tolist", "numpy"}
FACTORIES = {"tensor", "as_tensor"}


def _device_arg(args, kwargs):
    """The target device of ``Tensor.to(...)`` (None when it only changes dtype or layout)."""
    if "device" in kwargs:
        return torch.device(kwargs["device"])
    for a in args[1:]:
        if isinstance(a, (str, torch.device)):
            return torch.device(a)
        if isinstance(a, torch.Tensor):
            return a.device
    return None


def _non_blocking(args, kwargs) -> bool:
    if "non_blocking" in kwargs:
        return bool(kwargs["non_blocking"])
    flags = [a for a in args[1:] if isinstance(a, bool)]  # to(device, dtype, non_blocking) positionally
    return bool(flags and flags[0])


def _fake_value(t: torch.Tensor, name: str):
    zeros = torch.zeros(t.shape, dtype=t.dtype)
    return {"item": 0, "__float__": 0.0, "__int__": 0, "__bool__": False, "__index__": 0}.get(
        name, zeros.tolist() if name == "tolist" else zeros.numpy()
    )


class HostSyncs(TorchFunctionMode):
    def __init__(self, device):
        super().__init__()
        self.device = torch.device(device)
        self.counts: collections.Counter = collections.Counter()
        self.where: list[str] = []

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _on_device(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t.device.type == self.device.type

    def _count(self, kind: str) -> None:
        self.counts[kind] += 1
        frame = sys._getframe(2)
        self.where.append(f"{kind} at {frame.f_code.co_filename}:{frame.f_lineno}")

    def _blocking_copy_to_device(self, source, target, non_blocking: bool) -> bool:
        if target is None or target.type != self.device.type or source.device.type != "cpu":
            return False
        if target.type == "cpu":
            return False
        # from pageable memory even a non_blocking copy waits (meta has no pinned memory to ask about)
        return not non_blocking or (target.type == "cuda" and not source.is_pinned())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        first = args[0] if args else None
        if name in READS and self._on_device(first):
            self._count(name)
            if first.device.type == "meta":
                return _fake_value(first, name)
        elif name == "cpu" and self._on_device(first) and self.device.type != "cpu":
            self._count("copy to host")
            if first.device.type == "meta":
                return torch.zeros(first.shape, dtype=first.dtype)
        elif name == "to" and isinstance(first, torch.Tensor):
            target = _device_arg(args, kwargs)
            if self._blocking_copy_to_device(first, target, _non_blocking(args, kwargs)):
                self._count("blocking copy to device")
            elif self._on_device(first) and target is not None and target.type == "cpu" and first.device != target:
                self._count("copy to host")
                if first.device.type == "meta":
                    return torch.zeros(first.shape, dtype=kwargs.get("dtype", first.dtype))
        elif name == "copy_" and isinstance(first, torch.Tensor) and isinstance(args[1], torch.Tensor):
            if self._blocking_copy_to_device(args[1], first.device, _non_blocking(args[1:], kwargs)):
                self._count("blocking copy to device")
        elif name in FACTORIES and "device" in kwargs and kwargs["device"] is not None:
            target = torch.device(kwargs["device"])
            if target.type == self.device.type and target.type != "cpu":
                self._count(f"torch.{name} on the device")
        return func(*args, **kwargs)
