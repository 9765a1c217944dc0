"""Depthwise Multiception convolution (Bao, Graeber & Wang, ICARCV 2020, Sec. III, Algorithm 1, Fig. 2).

For every kernel size in a set, a depth-wise k x k convolution over *all* input channels; the |K| outputs are
concatenated, normalised, and mixed by a 1x1 convolution to the output width. The form is the authors' code
(guoqingbao/Multiception ``convolution.py``, reference-architectures §5.2-5.3), which produced the published
numbers:

* the depth-wise branches always run at stride 1; the stride sits on the 1x1 convolution (Algorithm 1 gives
  no stride at all), so in a downsampling block the branches run at the full input resolution;
* the 1x1 convolution has a bias although a BN follows it;
* BN over the concatenation and BN after the 1x1; no activation inside (the host block adds it).

Parameters: C·ΣK² (depth-wise) + 2·|K|·C (BN) + |K|·C·N + N (1x1 and bias) + 2N (BN); Eq. 6 of the paper
bounds the depth-wise part by 3C·ΣK² instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from effconv.ops import register_unit


def kernel_list(kernel_size: int | Sequence[int]) -> list[int]:
    """One kernel or a set of kernels as a list of odd ints (even kernels would shift the output grid)."""
    kernels = [int(k) for k in kernel_size] if isinstance(kernel_size, Sequence) else [int(kernel_size)]
    if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
        raise ValueError(f"kernel sizes must be odd positive ints, got {kernel_size}")
    return kernels


@register_unit("multiception")
class Multiception(nn.Module):
    """Per kernel a depth-wise k x k conv (stride 1) -> concat -> BN -> 1x1 conv (stride, bias) -> BN.

    A one-kernel set computes the same function as a depth-wise separable conv whose depth-wise part has the
    stride (the 1x1 at stride s reads exactly the positions a stride-s depth-wise conv produces); only the
    cost differs, since the depth-wise conv here runs at the input resolution.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel_size: int | Sequence[int] = (3, 5, 7)):
        super().__init__()
        self.kernels = kernel_list(kernel_size)
        self.depthwise = nn.ModuleList(
            nn.Conv2d(in_ch, in_ch, k, 1, k // 2, groups=in_ch, bias=False) for k in self.kernels
        )
        self.bn_depthwise = nn.BatchNorm2d(in_ch * len(self.kernels))
        self.pointwise = nn.Conv2d(in_ch * len(self.kernels), out_ch, 1, stride, bias=True)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = torch.cat([conv(x) for conv in self.depthwise], dim=1)
        return self.bn(self.pointwise(self.bn_depthwise(branches)))
