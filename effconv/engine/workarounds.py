"""Work-arounds for defects in the libraries we run on, each with the case that triggers it.

Strided 1x1 convolutions on the CPU in channels_last: torch 2.15's oneDNN backward crashes the process
(SIGSEGV/SIGABRT) for narrow inputs, e.g. Conv2d(8, 16, 1, stride=2) on 4x8x56x56, and for C_in <= 12 at
56-96 px (NCHW is unaffected). A strided 1x1 convolution without padding is exactly a 1x1 convolution of
the subsampled input, which runs on a different kernel and does not crash, so such layers are switched to
``SubsampledPointwiseConv2d``: same class hierarchy, parameters and state-dict keys, same outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SubsampledPointwiseConv2d(nn.Conv2d):
    """A 1x1, unpadded, strided conv computed as a stride-1 conv of ``x[..., ::sh, ::sw]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.stride
        return F.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias, 1, 0, 1, self.groups)


def is_strided_pointwise(m: nn.Module) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.kernel_size == (1, 1)
        and m.stride != (1, 1)
        and m.padding == (0, 0)
        and m.padding_mode == "zeros"
    )


def avoid_cpu_channels_last_crash(model: nn.Module, device: torch.device, channels_last: bool) -> int:
    """Switch strided 1x1 convs to the subsampled form on CPU + channels_last; returns how many."""
    if device.type != "cpu" or not channels_last:
        return 0
    switched = 0
    for m in model.modules():
        if is_strided_pointwise(m):
            m.__class__ = SubsampledPointwiseConv2d
            switched += 1
    return switched
