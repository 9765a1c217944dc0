"""Layer helpers shared by every network: conv + BN (+ activation), channel shuffle, rounding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
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


def shuffle_digits(channels: int, groups: Sequence[int]) -> tuple[list[int], list[int]]:
    """Consecutive channel shuffles as ONE permutation of mixed-radix channel digits.

    A shuffle with g groups writes channel a (C/g) + b to b g + a: it swaps the two digits of the index in
    radix (g, C/g). A sequence of shuffles is therefore a permutation of finer digits, found by splitting a
    digit wherever a later shuffle needs a boundary inside it. Returns (sizes, order): view the channels as
    ``sizes`` (most significant first), permute the digit axes by ``order``, flatten. Raises ValueError when
    a needed split does not divide (then the shuffles stay separate).
    """
    sizes = {0: channels}  # digit id -> size
    original = [0]  # digit ids of the input index, most significant first
    current = [0]  # digit ids of the current index
    next_id = 1
    for g in groups:
        if channels % g:
            raise ValueError(f"{channels} channels do not split into {g} shuffle groups")
        low, tail = channels // g, []
        while low > 1:  # take digits from the least significant end until their product is C/g
            d = current.pop()
            if low % sizes[d] == 0:
                tail.insert(0, d)
                low //= sizes[d]
                continue
            if sizes[d] % low:
                raise ValueError("the shuffles do not compose into one digit permutation")
            hi, lo = next_id, next_id + 1
            next_id += 2
            sizes[hi], sizes[lo] = sizes[d] // low, low
            k = original.index(d)
            original[k : k + 1] = [hi, lo]
            current.append(hi)
            tail.insert(0, lo)
            low = 1
        current = tail + current
    return [sizes[d] for d in original], [original.index(d) for d in current]


def channel_shuffles(x: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
    """``channel_shuffle`` with each group count in turn, as one copy when they compose (see shuffle_digits)."""
    groups = [g for g in groups if g > 1]
    if len(groups) <= 1:
        return channel_shuffle(x, groups[0]) if groups else x
    try:
        sizes, order = shuffle_digits(x.shape[1], groups)
    except ValueError:
        for g in groups:
            x = channel_shuffle(x, g)
        return x
    if order == sorted(order):  # the shuffles cancel out
        return x
    n, c, h, w = x.shape
    if _is_channels_last(x):  # permute on the NHWC storage: the result stays channels_last
        nhwc = x.permute(0, 2, 3, 1).reshape(n, h, w, *sizes).permute(0, 1, 2, *(3 + k for k in order))
        return nhwc.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return x.reshape(n, *sizes, h, w).permute(0, *(1 + k for k in order), -2, -1).reshape(n, c, h, w)


def interleave(*tensors: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) x k -> (N, kC, H, W) ordered (t0_0, t1_0, ..., t0_1, ...) in the layout of the first.

    One copy: equals ``channel_shuffle(torch.cat(tensors, 1), k)``, which copies twice."""
    n, c, h, w = tensors[0].shape
    k = len(tensors)
    if _is_channels_last(tensors[0]):
        nhwc = torch.stack([t.permute(0, 2, 3, 1) for t in tensors], dim=4)
        return nhwc.reshape(n, h, w, k * c).permute(0, 3, 1, 2)
    return torch.stack(tensors, dim=2).reshape(n, k * c, h, w)
