"""SyncBatchNorm for DDP runs, with a CPU (gloo) path that torch lacks.

On GPUs ``timm.layers.convert_sync_batchnorm`` turns BatchNorm and timm's BatchNormAct layers into their
synchronised versions. torch refuses SyncBatchNorm on CPU (the layer and DDP both raise "only work with GPU
modules"), so on CPU each BatchNorm layer instead gets a forward that, in training, normalises with the
global batch's statistics: one differentiable all-reduce of (sum, sum of squares, count) per layer, computed
in float64, the running statistics updated as torch's (unbiased variance of the global batch). That is the
normalisation one process holding the whole global batch computes, which the gloo tests compare against.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from timm.layers import convert_sync_batchnorm
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class SumOverRanks(torch.autograd.Function):
    """all-reduce (sum) whose backward all-reduces the incoming gradients: every rank's loss depends on the sum."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def global_batch_norm(bn: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``bn`` in training mode over the batch of every rank together (gradients flow through the all-reduce)."""
    channels = x.shape[1]
    dims = [d for d in range(x.dim()) if d != 1]
    wide = x.double()
    local = torch.cat([wide.sum(dims), (wide * wide).sum(dims), wide.new_full((1,), x.numel() / channels)])
    total = SumOverRanks.apply(local)
    count = total[-1]
    mean = total[:channels] / count
    var = (total[channels : 2 * channels] / count - mean * mean).clamp_min(0)
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), momentum)
            unbiased = var * count / max(float(count) - 1, 1.0)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), momentum)
    # all in float64, rounded once at the end: the backward through E[x^2] - mean^2 cancels badly otherwise
    shape = [1, channels] + [1] * (x.dim() - 2)
    y = (wide - mean.view(shape)) * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.double().view(shape) + bn.bias.double().view(shape)
    return y.to(x.dtype)


class GlobalStatisticsOnCpu:
    """Mixin placed before a BatchNorm class: its training forward on CPU under DDP uses global statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and x.device.type == "cpu" and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        y = global_batch_norm(self, x)
        # timm's BatchNormAct2d: dropout and activation follow the normalisation in its forward
        for follower in ("drop", "act"):
            if isinstance(getattr(self, follower, None), nn.Module):
                y = getattr(self, follower)(y)
        return y


_CPU_CLASSES: dict[type, type] = {}


def _on_cpu(cls: type) -> type:
    if cls not in _CPU_CLASSES:
        _CPU_CLASSES[cls] = type(f"GlobalStatistics{cls.__name__}", (GlobalStatisticsOnCpu, cls), {})
    return _CPU_CLASSES[cls]


def to_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    if device.type != "cpu":
        return convert_sync_batchnorm(model)
    for module in model.modules():
        if isinstance(module, _BatchNorm) and not isinstance(module, GlobalStatisticsOnCpu):
            module.__class__ = _on_cpu(type(module))
    return model
