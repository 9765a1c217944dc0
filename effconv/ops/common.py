"""Layer helpers shared by every network: conv + BN (+ activation), channel shuffle, rounding.

``channel_shuffles`` and ``interleave`` branch on a tensor's channel count or memory format, which a symbolic
trace cannot see: they are leaves for torch.fx (``torch.fx.wrap``) and for timm's fx feature extraction
(``register_notrace_function``), and stay TorchScript-compilable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never dropping more than 10% (MobileNet rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBnAct(nn.Sequential):
    """k x k conv (no bias) -> BatchNorm -> optional activation, with 'same' padding for odd kernels."""

    def __init__(
        self,
        in_ch,
        out_ch,
        kernel_size=3,
        stride=1,
        groups=1,
        act: type[nn.Module] | None = nn.ReLU,
        dilation=1,
        bn=True,
    ):
        padding = tuple((k - 1) // 2 * dilation for k in _pair(kernel_size))
        layers = [nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(out_ch))
        if act is not None:
            layers.append(act(out_ch) if act is nn.PReLU else act())
        super().__init__(*layers)


def _pair(k):
    return tuple(k) if isinstance(k, (tuple, list)) else (k, k)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (g, C/g) -> (C/g, g) interleave, keeping the input's memory format.

    PyTorch's native op: about one copy in NCHW and 1.1-1.2x a copy in channels_last, where the usual
    view/transpose idiom costs 3-8x a copy and silently returns an NCHW tensor (performance-notes §6.3;
    benchmarks/bench_ops.py measures it).
    """
    if groups == 1:
        return x
    return F.channel_shuffle(x, groups)


def composed_shuffle_groups(channels: int, groups: list[int]) -> int | None:
    """The single shuffle equal to shuffling by each of ``groups`` in turn (1: identity), or None.

    A shuffle with g groups sends channel i = a C/g + b to b g + a, which is i g mod (C - 1) for i < C - 1 (the
    last channel stays): shuffles multiply. In turn they are the product G of their group counts mod (C - 1),
    a single shuffle when G divides C.
    """
    if channels < 3:
        return 1
    product = 1
    for g in groups:
        product = product * g % (channels - 1)
    if product >= 1 and channels % product == 0:
        return product
    return None


@register_notrace_function
@torch.fx.wrap
def channel_shuffles(x: torch.Tensor, groups: list[int]) -> torch.Tensor:
    """``channel_shuffle`` with each group count in turn, as one shuffle (or none) when they compose."""
    shuffles: list[int] = []
    for g in groups:
        if g > 1:
            shuffles.append(g)
    single = composed_shuffle_groups(x.shape[1], shuffles) if len(shuffles) > 1 else None
    if single is not None:
        return channel_shuffle(x, single)
    for g in shuffles:
        x = channel_shuffle(x, g)
    return x


@register_notrace_function
@torch.fx.wrap
def interleave(tensors: list[torch.Tensor]) -> torch.Tensor:
    """[(N, C, H, W)] x k -> (N, kC, H, W) ordered (t0_0, t1_0, ..., t0_1, ...) in the layout of the first.

    One copy: equals ``channel_shuffle(torch.cat(tensors, 1), k)``, which copies twice."""
    n, c, h, w = tensors[0].shape
    k = len(tensors)
    if _is_channels_last(tensors[0]):
        nhwc = torch.stack([t.permute(0, 2, 3, 1) for t in tensors], dim=4)
        return nhwc.reshape(n, h, w, k * c).permute(0, 3, 1, 2)
    return torch.stack(tensors, dim=2).reshape(n, k * c, h, w)
