"""The baseline units every paper compares against: standard, depth-wise and depth-wise separable conv."""

from __future__ import annotations

from torch import nn

from effconv.ops import register_unit


@register_unit("standard")
class StandardConv(nn.Sequential):
    """k x k convolution + BN: the unit the papers' efficient operators replace."""

    def __init__(self, in_ch, out_ch, stride=1, kernel_size=3):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_ch),
        )


@register_unit("dw")
class DepthwiseConv(nn.Sequential):
    """k x k depth-wise convolution + BN; ``out_ch`` a multiple of ``in_ch`` is a channel multiplier (each input
    channel gets out_ch / in_ch filters: MicroNet Table 2's k x k rows)."""

    def __init__(self, in_ch, out_ch, stride=1, kernel_size=3):
        if out_ch % in_ch:
            raise ValueError(f"a depth-wise unit keeps or multiplies the width: out_ch={out_ch}, in_ch={in_ch}")
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=in_ch, bias=False),
            nn.BatchNorm2d(out_ch),
        )


@register_unit("sep")
class DepthwiseSeparableConv(nn.Sequential):
    """MobileNet's depth-wise separable convolution: dw k x k + BN + act -> 1x1 + BN (Howard et al. 2017)."""

    def __init__(self, in_ch, out_ch, stride=1, kernel_size=3, act: type[nn.Module] = nn.ReLU):
        super().__init__(
            nn.Conv2d(in_ch, in_ch, kernel_size, stride, kernel_size // 2, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch),
            act(),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
