"""ResNet with a depth-wise bottleneck and a swappable unit: the ResNet rows of DiCENet's Tables 1-3.

Paper Sec. 3.4 and footnote 2: the bottleneck (He et al. 2016) is a 1x1 conv, a 3x3 conv and a 1x1 conv, with
the 3x3 made depth-wise for efficiency, i.e. "a point-wise convolution followed by a separable convolution";
the DiCE version replaces that separable conv by a DiCE unit. Appendix A: the network is DiCENet's skeleton
with these blocks: 3x3 conv stride 2 (24) + BN + PReLU, 3x3 max-pool stride 2, three levels at 28 / 14 / 7 px
(224 input) of one stride-2 block and 3 / 7 / 3 more, global pool, grouped 1x1 (4 groups, c4 -> 1024, no
bias), dropout, classifier.

Block (in -> out, bottleneck width mid = out / 4): first 1x1 in -> mid + BN + PReLU (``first_pointwise``:
``pointwise`` or ``dimfuse``, Table 3), unit mid -> out with the block's stride (``conv=sep``: 3x3
depth-wise + BN + ReLU, 1x1 + BN; ``conv=dice``: DiCE unit, a stride-2 one average-pools first), plus the
shortcut (identity, or 1x1 conv with the stride + BN when the shape changes), then PReLU. ``spatial`` and
``fusion`` select the Table 2 variants of the DiCE unit.

Widths: mid = round(32 ``width_mult``) at level 3, doubled per level, out = 4 mid. Exact doubling keeps the
gcd-grouped 3x3 of a DimFuse that replaces the first 1x1 (2 mid -> mid at a level's first block) at mid
groups; widths rounded per level can leave it at 4 groups, nearly a dense 3x3. The authors released no
code for this family (reference-architectures §1.1), so everything beyond the paper's sentences is our
choice (PReLU as in the authors' other networks, the shortcut, the base widths).

Widths of the paper's rows, found by search (``python -m effconv.width_search``; rows in
effconv/conf/experiment/dicenet/table{1,2,3}.yaml, checked in tests/test_dice_families.py), MAdds at 224 px, 1000
classes (paper FLOPs in brackets):

| row | width_mult (mid) | MAdds (M) | params (M) |
|---|---|---|---|
| T1 SC 25-60 [59]  | 0.625 (20)    |  59.93 (+1.6 %) | 1.496 |
| T1 DU 25-60 [52]  | 0.65625 (21)  |  51.28 (-1.4 %) | 1.461 |
| T1 SC 120-170 [142], T2 DWise + PW | 1.03125 (33) | 142.71 (+0.5 %) | 2.195 |
| T1 DU 120-170 [122], T2 DiCE, T3 R4 | 1.15625 (37) | 122.43 (+0.4 %) | 2.169 |
| T1 SC 270-320 [302] | 1.53125 (49) | 298.43 (-1.2 %) | 3.480 |
| T1 DU 270-320 [300] | 1.9375 (62)  | 301.24 (+0.4 %) | 3.935 |
| T2 DWise + SE [137] | 1.3125 (42)  | 134.70 (-1.7 %) | 2.364 |
| T2 DWise + PW + SE [142] | 1.03125 (33) | 143.58 (+1.1 %) | 3.072 |
| T2 DWise + DimFuse [136], T3 R1 | 1.25 (40) | 133.89 (-1.6 %) | 2.324 |
| T2 DimConv + PW [132] | 0.71875 (23) | 131.56 (-0.3 %) | 2.067 |
| T2 DimConv + SE [134] | 1.28125 (41) | 134.22 (+0.2 %) | 2.318 |
| T2 DimConv + PW + SE [132] | 0.71875 (23) | 131.98 (-0.0 %) | 2.490 |
| T3 R2 [78] | 1.40625 (45) |  76.43 (-2.0 %) | 2.846 |
| T3 R3 [141] | 2.1875 (70) | 144.58 (+2.5 %) | 5.105 |
| T3 R5 [72] | 1.3125 (42)  |  71.48 (-0.7 %) | 2.652 |
| T3 R6 [129] | 2.0625 (66) | 127.80 (-0.9 %) | 4.703 |
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import DropPath
from timm.models import generate_default_cfgs
from torch import nn

from effconv.models import register
from effconv.models.base import drop_path_rates
from effconv.models.dicenet import REPEATS, SkeletonNet
from effconv.models.pretrained_cfgs import dataset_cfgs
from effconv.models.units import DICE_HOST_UNITS, check_conv, host_unit, pair, strided
from effconv.ops.common import ConvBnAct
from effconv.ops.dice import first_pointwise

BASE_MID = 32  # bottleneck width of level 3 at width 1.0; it doubles per level


class DepthwiseBottleneck(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, size, conv: str, first: str, variant, drop_path=0.0):
        super().__init__()
        mid = out_ch // 4
        self.reduce = first_pointwise(first, in_ch, mid)
        self.unit = host_unit(conv, mid, out_ch, stride, size, variant, act=None)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = ConvBnAct(in_ch, out_ch, 1, stride, act=None)
        self.act = nn.PReLU(out_ch)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.unit(self.reduce(x))) + self.shortcut(x))


class ResNetDW(SkeletonNet):
    """DiCENet's skeleton and head with depth-wise bottleneck blocks (see the module docstring)."""

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int | Sequence[int] = 224,
        conv: str = "sep",
        spatial: str | None = None,
        fusion: str | None = None,
        first_pointwise: str = "pointwise",
        stem_channels: int = 24,
        head_channels: int = 1024,
        head_groups: int = 4,
        drop_rate: float | None = None,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.in_chans = in_chans
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        check_conv(conv, DICE_HOST_UNITS)
        self.width_mult, self.img_size = width_mult, pair(img_size)
        mid = max(1, round(BASE_MID * width_mult))
        widths = [4 * mid, 8 * mid, 16 * mid]
        self.channels = (stem_channels, stem_channels, *widths, head_channels)
        variant = {k: v for k, v in (("spatial", spatial), ("fusion", fusion)) if v is not None}
        size = strided(strided(self.img_size))
        self.level1 = ConvBnAct(in_chans, stem_channels, 3, 2, act=nn.PReLU)
        self.level2 = nn.MaxPool2d(3, 2, 1)
        in_ch = stem_channels
        rates = iter(drop_path_rates(drop_path_rate, sum(REPEATS) + len(REPEATS)))
        for index, (width, repeats) in enumerate(zip(widths, REPEATS)):
            blocks = []
            for i in range(repeats + 1):
                stride = 2 if i == 0 else 1
                blocks.append(
                    DepthwiseBottleneck(in_ch, width, stride, size, conv, first_pointwise, variant, next(rates))
                )
                size = strided(size) if i == 0 else size
                in_ch = width
            setattr(self, f"level{index + 3}", nn.Sequential(*blocks))
        self._build_head(in_ch, head_channels, "grouped", head_groups, drop_rate, num_classes, global_pool)


default_cfgs = generate_default_cfgs(dataset_cfgs("resnet_dw", "dicenet", ["imagenet"], 32, "level1.0", "fc"))
register("resnet_dw", ResNetDW)
