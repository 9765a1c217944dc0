"""Layer helpers shared by every network: conv + BN (+ activation), channel shuffle, rounding."""

from __future__ import annotations

import torch
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


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (g, C/g) -> (C/g, g) interleave, keeping the input's memory format.

    The usual view/transpose idiom silently turns a channels_last input into an NCHW tensor; this reshapes the
    NHWC storage instead, so the next conv sees the layout it expects (performance-notes §6.3).
    """
    if groups == 1:
        return x
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1)  # a view of the NHWC storage
        nhwc = nhwc.reshape(n, h, w, groups, c // groups).transpose(3, 4).reshape(n, h, w, c)
        return nhwc.permute(0, 3, 1, 2)
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
