"""XSepConv: extremely separated convolution (Chen, Lu, Xue, Liao 2020, arXiv:2002.12046), and its ablations.

XSepConv replaces a large k x k depth-wise convolution by (Fig. 1a)::

    2x2 depth-wise (one-sided padding) -> BN + act -> 1xk depth-wise -> BN + act -> kx1 depth-wise

and the host block's BN + activation follow, as they followed the depth-wise conv it replaces. Cost (§3.1):
4hwc + 2khwc MAdds and 4c + 2kc weights against k^2 hwc and k^2 c, i.e. (4 + 2k) / k^2 (56 % at k = 5); the
receptive field is k + 1, the 2x2 conv widening it by one. The down-sampling form (Fig. 1b) strides the 1xk
conv by (1, 2) and the kx1 conv by (2, 1): 4hwc + khwc/2 + khwc/4, cheaper than a stride-2 k x k depth-wise
conv only from k = 7 on, so the paper uses it only there.

Ablations (§4.3, Fig. 6): without the 2x2 conv (6b), the 2x2 conv behind the separated pair (XSepConv-B, 6c)
and in parallel to it (XSepConv-P, 6d). B and P keep the parameters and MAdds of XSepConv (Table 3).
The figure is not in the text we have; P is built as two branches added before the host's BN + act:
``2x2 -> BN + act`` and ``1xk -> BN + act -> kx1`` (the 2x2 unit of Fig. 1a moved beside the pair, so the
BN count, hence the parameter count, stays that of XSepConv, as Table 3 states).

The 2x2 conv's padding (a direction or Wu et al.'s four groups) is given by the network, which numbers its
2x2 layers (``effconv.ops.even_padding.padding_plan``). No authors' code exists (reference-architectures §3).

Units (``create_unit``): ``xsepconv``, ``xsepconv_b``, ``xsepconv_p``, ``xsepconv_no2x2`` = the operator + BN,
ending where the ``dw`` unit ends; stride 2 gives the down-sampling form (only XSepConv and the form
without 2x2 have one).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from effconv.ops import register_unit
from effconv.ops.even_padding import EvenKernelDepthwiseConv2d


def _row_conv(channels: int, kernel_size: int, stride: int) -> nn.Conv2d:
    """1 x k depth-wise conv (width-wise), down-sampling only the width: stride (1, s)."""
    return nn.Conv2d(
        channels, channels, (1, kernel_size), (1, stride), (0, kernel_size // 2), groups=channels, bias=False
    )


def _col_conv(channels: int, kernel_size: int, stride: int) -> nn.Conv2d:
    """k x 1 depth-wise conv (height-wise), down-sampling only the height: stride (s, 1)."""
    return nn.Conv2d(
        channels, channels, (kernel_size, 1), (stride, 1), (kernel_size // 2, 0), groups=channels, bias=False
    )


def _check(kernel_size: int, stride: int, strides=(1, 2)) -> None:
    if kernel_size % 2 == 0 or kernel_size < 3:
        raise ValueError(f"XSepConv needs an odd kernel size >= 3 for its 1xk / kx1 convs, got {kernel_size}")
    if stride not in strides:
        raise ValueError(f"this XSepConv form supports stride {' or '.join(map(str, strides))}, got {stride}")


class XSepConv(nn.Sequential):
    """Fig. 1a (stride 1) and Fig. 1b (stride 2): 2x2 -> BN+act -> 1xk -> BN+act -> kx1, no trailing BN."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 5,
        stride: int = 1,
        padding: str = "right_bottom",
        act_layer: type[nn.Module] = nn.ReLU,
    ):
        _check(kernel_size, stride)
        super().__init__(
            OrderedDict(
                [
                    ("conv_2x2", EvenKernelDepthwiseConv2d(channels, 2, padding)),
                    ("bn1", nn.BatchNorm2d(channels)),
                    ("act1", act_layer()),
                    ("conv_1xk", _row_conv(channels, kernel_size, stride)),
                    ("bn2", nn.BatchNorm2d(channels)),
                    ("act2", act_layer()),
                    ("conv_kx1", _col_conv(channels, kernel_size, stride)),
                ]
            )
        )


class SeparatedDepthwiseConv(nn.Sequential):
    """Fig. 6b, XSepConv without the 2x2 conv: 1xk -> BN+act -> kx1 (spatially separated depth-wise)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 5,
        stride: int = 1,
        padding: str | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
    ):
        _check(kernel_size, stride)
        super().__init__(
            OrderedDict(
                [
                    ("conv_1xk", _row_conv(channels, kernel_size, stride)),
                    ("bn1", nn.BatchNorm2d(channels)),
                    ("act1", act_layer()),
                    ("conv_kx1", _col_conv(channels, kernel_size, stride)),
                ]
            )
        )


class XSepConvBehind(nn.Sequential):
    """Fig. 6c, XSepConv-B: 1xk -> BN+act -> kx1 -> BN+act -> 2x2, no trailing BN."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 5,
        stride: int = 1,
        padding: str = "right_bottom",
        act_layer: type[nn.Module] = nn.ReLU,
    ):
        _check(kernel_size, stride, strides=(1,))
        super().__init__(
            OrderedDict(
                [
                    ("conv_1xk", _row_conv(channels, kernel_size, 1)),
                    ("bn1", nn.BatchNorm2d(channels)),
                    ("act1", act_layer()),
                    ("conv_kx1", _col_conv(channels, kernel_size, 1)),
                    ("bn2", nn.BatchNorm2d(channels)),
                    ("act2", act_layer()),
                    ("conv_2x2", EvenKernelDepthwiseConv2d(channels, 2, padding)),
                ]
            )
        )


class XSepConvParallel(nn.Module):
    """Fig. 6d, XSepConv-P: (2x2 -> BN+act) + (1xk -> BN+act -> kx1), no trailing BN."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 5,
        stride: int = 1,
        padding: str = "right_bottom",
        act_layer: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        _check(kernel_size, stride, strides=(1,))
        self.square = nn.Sequential(
            OrderedDict(
                [
                    ("conv_2x2", EvenKernelDepthwiseConv2d(channels, 2, padding)),
                    ("bn", nn.BatchNorm2d(channels)),
                    ("act", act_layer()),
                ]
            )
        )
        self.separated = SeparatedDepthwiseConv(channels, kernel_size, 1, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.square(x) + self.separated(x)


# the network's ``dw`` knob values other than plain depth-wise, and whether each has a 2x2 layer
XSEPCONV_FORMS: dict[str, type[nn.Module]] = {
    "xsepconv": XSepConv,
    "xsepconv_b": XSepConvBehind,
    "xsepconv_p": XSepConvParallel,
    "xsepconv_no2x2": SeparatedDepthwiseConv,
}
FORMS_WITH_2X2 = ("xsepconv", "xsepconv_b", "xsepconv_p")
FORMS_WITH_DOWNSAMPLING = ("xsepconv", "xsepconv_no2x2")


class _XSepConvUnit(nn.Sequential):
    """Unit-table form (``unit(in_ch, out_ch, stride, kernel_size)``): the operator + BN, like ``dw``."""

    form: str

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        kernel_size: int = 5,
        padding: str = "right_bottom",
        act_layer: type[nn.Module] = nn.ReLU,
    ):
        if in_ch != out_ch:
            raise ValueError(f"{self.form} is depth-wise and keeps the width: in_ch={in_ch}, out_ch={out_ch}")
        if stride != 1 and self.form not in FORMS_WITH_DOWNSAMPLING:
            raise ValueError(f"{self.form} has no down-sampling form (stride {stride}); use xsepconv or dw")
        operator = XSEPCONV_FORMS[self.form](in_ch, kernel_size, stride, padding=padding, act_layer=act_layer)
        super().__init__(operator, nn.BatchNorm2d(in_ch))


@register_unit("xsepconv")
class XSepConvUnit(_XSepConvUnit):
    form = "xsepconv"


@register_unit("xsepconv_b")
class XSepConvBehindUnit(_XSepConvUnit):
    form = "xsepconv_b"


@register_unit("xsepconv_p")
class XSepConvParallelUnit(_XSepConvUnit):
    form = "xsepconv_p"


@register_unit("xsepconv_no2x2")
class SeparatedDepthwiseUnit(_XSepConvUnit):
    form = "xsepconv_no2x2"
