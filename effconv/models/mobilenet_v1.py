"""MobileNet (V1) with a swappable unit: the MobileNet rows of the DiCENet paper's Table 1.

MobileNetV1 (Howard et al. 2017, Table 1): 3x3 conv stride 2 (32) + BN + ReLU, then 13 separable convs
64, 128/2, 128, 256/2, 256, 512/2, 5 x 512, 1024/2, 1024, global average pool, dropout, classifier.

Widths: the stem has round(32 ``width_mult``) channels and every layer keeps MobileNetV1's ratio to it (2, 4,
8, 16, 32). That equals TF-slim's and timm's widths wherever 32 ``width_mult`` is a multiple of 8 (0.25, 0.5,
0.75, 1.0, ...); elsewhere they round every layer on its own. We keep the exact doublings so that a stride-2
DiCE unit (C -> 2C) keeps its gcd-grouped spatial conv at C groups: with per-layer rounding the gcd can fall
to 8 and the cost jumps.

``conv=sep`` is MobileNetV1 itself (depth-wise 3x3 + BN + ReLU, 1x1 + BN, then ReLU). ``conv=dice`` replaces
every separable conv by a DiCE unit ("we replace separable convolutions with the DiCE unit", paper Sec. 3.4
and Fig. 4); a stride-2 DiCE unit average-pools first, as in the authors' strided DiCE. The DiCE units need
``img_size``, the resolution the network is built for. The DiCENet authors released no code for this family
(reference-architectures §1.1), so the DiCE version is our reading of the paper.

The paper's separable-conv rows are the published MobileNetV1 models (TF-slim): 0.25 at 224 px (49.8 % in
Table 1), 0.75 at 160 px (65.3 %), 0.75 at 224 px (68.4 %); the same models at the same sizes are the rows
here. The paper prints TF-slim's counts (41 / 162 / 317 M); ours follow the MobileNet paper's convention
(325 M for 0.75 at 224). The DiCE rows have no published widths: found by search
(``python -m effconv.width_search``) so that the MAdds land on the paper's FLOPs at 224 px, 1000
classes:

| Table 1 row | paper FLOPs | width_mult (stem) | img_size | MAdds (M) | params (M) |
|---|---|---|---|---|---|
| SC 25-60   |  41 M | 0.25 (8)      | 224 |  41.03 (+0.1 %) |  0.470 |
| DU 25-60   |  29 M | 0.3125 (10)   | 224 |  29.58 (+2.0 %) |  0.532 |
| SC 120-170 | 162 M | 0.75 (24)     | 160 | 166.40 (+2.7 %) |  2.586 |
| DU 120-170 | 167 M | 1.71875 (55)  | 224 | 166.29 (-0.4 %) |  6.476 |
| SC 270-320 | 317 M | 0.75 (24)     | 224 | 325.40 (+2.6 %) |  2.586 |
| DU 270-320 | 277 M | 2.8125 (90)   | 224 | 276.67 (-0.1 %) | 15.153 |

A DiCE unit has no point-wise conv, so its cost is linear in the width: landing on 167-277 MFLOPs takes
1.7-2.8x MobileNetV1's widths, and the squeeze layers of DimFuse (C^2 / 2 weights each) then dominate the
parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.models import generate_default_cfgs
from torch import nn

from effconv.models import register
from effconv.models.base import ClassifierNet, init_kaiming
from effconv.models.pretrained_cfgs import dataset_cfgs
from effconv.models.units import DICE_HOST_UNITS, check_conv, host_unit, pair, strided
from effconv.ops.common import ConvBnAct

# (output channels / stem channels, stride) of the 13 separable convs (MobileNetV1 paper, Table 1)
LAYERS = ((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2)) + ((16, 1),) * 5 + ((32, 2), (32, 1))


class MobileNetV1(ClassifierNet):
    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int | Sequence[int] = 224,
        conv: str = "sep",
        spatial: str | None = None,
        fusion: str | None = None,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ):
        super().__init__()
        self.in_chans = in_chans
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        check_conv(conv, DICE_HOST_UNITS)
        self.width_mult = width_mult
        size = strided(pair(img_size))
        in_ch = stem = max(1, round(32 * width_mult))
        layers = [ConvBnAct(in_chans, in_ch, 3, 2, act=nn.ReLU)]
        outputs = [("features.0", in_ch, 2)]  # (module, channels, stride) of the stage layers
        variant = {k: v for k, v in (("spatial", spatial), ("fusion", fusion)) if v is not None}
        for ratio, stride in LAYERS:
            out_ch = ratio * stem
            layers.append(host_unit(conv, in_ch, out_ch, stride, size, variant, act=nn.ReLU))
            outputs.append((f"features.{len(layers) - 1}", out_ch, stride))
            size = strided(size) if stride == 2 else size
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.num_features = in_ch
        self._init_head(num_classes, drop_rate, global_pool)
        self._init_feature_info(outputs)
        init_kaiming(self)


default_cfgs = generate_default_cfgs(dataset_cfgs("mobilenet_v1", "dicenet", ["imagenet"], 32, "features.0.0", "fc"))
register("mobilenet_v1", MobileNetV1)
