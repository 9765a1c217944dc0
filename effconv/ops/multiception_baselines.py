"""The units the Depthwise Multiception paper compares against (Tables I-III), in the authors' forms.

The paper's DSConv and "MixConv" columns come from the authors' ``convolution.py`` (guoqingbao/Multiception,
reference-architectures §5.2 and §5.4), which differs from the textbook operators:

* ``dsconv``: depth-wise k x k *with the stride* -> 1x1 *with a bias* -> BN; no BN or activation between the
  two convs (MobileNet's form is ``sep`` in effconv/ops/separable.py).
* ``splitconv``: what the paper calls MixConv is a channel-split *full* convolution: input and output channels
  split into |K| groups, one ordinary (groups=1) k x k conv per group, concatenated, no BN; {3, 5, 7} in every
  layer. It is nearly a standard conv in size (0.7522 M vs 0.7586 M for ResNet-50), so the paper's MixConv
  column does not measure Tan & Le's operator.
* ``mixconv_sep``: Tan & Le's depth-wise MixConv (channels split over the kernel sizes, one depth-wise conv
  per group) in MixNet's separable block: MixConv -> BN -> ReLU -> 1x1 -> BN. This is the comparison the
  paper's text describes, offered beside the authors' ``splitconv``.

``splitconv`` is ``timm.layers.MixedConv2d`` with full convs per split; ``mixconv_sep`` uses the project's
depth-wise MixConv (effconv/ops/mixconv.py). Both give the first group the remainder of the channel split, as
the authors' code and the TensorFlow original do.
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.layers import MixedConv2d
from torch import nn

from effconv.ops import register_unit
from effconv.ops.mixconv import MixConv
from effconv.ops.multiception import kernel_list


@register_unit("dsconv")
class AuthorsDepthwiseSeparable(nn.Sequential):
    """Depth-wise k x k (stride, no bias) -> 1x1 (bias) -> BN: the authors' DSConv."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel_size: int = 3):
        (k,) = _single_kernel(kernel_size, "dsconv")
        super().__init__(
            nn.Conv2d(in_ch, in_ch, k, stride, k // 2, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=True),
            nn.BatchNorm2d(out_ch),
        )


@register_unit("splitconv")
class ChannelSplitConv(MixedConv2d):
    """The authors' "MixConv": channel-split full k x k convs (groups=1 in each split), no BN, no bias."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel_size: int | Sequence[int] = (3, 5, 7)):
        kernels = kernel_list(kernel_size)
        if min(in_ch, out_ch) < len(kernels):
            raise ValueError(f"splitconv needs a channel per kernel: {in_ch}->{out_ch}, kernels {kernels}")
        super().__init__(in_ch, out_ch, kernels, stride=stride, depthwise=False)


@register_unit("mixconv_sep")
class MixConvSeparable(nn.Sequential):
    """Tan & Le's depth-wise MixConv (stride) -> BN -> ReLU -> 1x1 -> BN (MixNet's separable block)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        kernel_size: int | Sequence[int] = (3, 5, 7),
        act: type[nn.Module] = nn.ReLU,
    ):
        kernels = kernel_list(kernel_size)
        if in_ch < len(kernels):
            raise ValueError(f"mixconv_sep needs a channel per kernel: {in_ch} channels, kernels {kernels}")
        super().__init__(
            MixConv(in_ch, kernels, stride),
            nn.BatchNorm2d(in_ch),
            act(),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )


def _single_kernel(kernel_size, unit: str) -> list[int]:
    kernels = kernel_list(kernel_size)
    if len(kernels) != 1:
        raise ValueError(f"{unit} takes one kernel size, got {list(kernels)}")
    return kernels
