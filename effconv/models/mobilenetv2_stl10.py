"""MobileNetV2 (Sandler et al. 2018) as the Depthwise Multiception authors ran it on STL-10
(guoqingbao/Multiception ``mobilenet.py``, a modified torchvision MobileNetV2; reference-architectures §5.2).

The stage table is MobileNetV2's (timm ``mobilenetv2_100``), with two changes the authors made:

* the stem runs at stride 1 (their ``large=False``), so a 96x96 image keeps 96x96 through the first two blocks
  and ends at 6x6;
* in the first three blocks (first two rows of the table) the depth-wise 3x3 + linear 1x1 projection is
  replaced by the chosen unit (``conv``), followed by ReLU and a second BN:
  [1x1 expand + BN + ReLU6 if t != 1] -> unit(hidden -> out, stride) (ends with its own BN) -> ReLU -> BN.
  The bottleneck of these blocks is therefore not linear (§5.4 item 7). Every later block is torchvision's
  ``InvertedResidual``.

Head: 1x1 conv to 1280 + BN + ReLU6 -> global average pool -> dropout 0.2 -> linear. Init as torchvision:
Kaiming-normal fan-out convs, zero biases, BN 1/0, linear N(0, 0.01).

Knobs: ``conv`` (effconv/models/units.py; default ``multiception``), ``kernels`` for the two replaced
rows (authors: {3,5,7} for block 1, {3,5} for blocks 2-3), ``stem_stride`` (1), ``drop_rate`` (0.2).

Params / MAdds at 10 classes and 96x96 (reference-architectures §5.2): Multiception 2.2526 M / 300.97 M,
DSConv 2.2363 M / 220.05 M, the authors' "MixConv" (``splitconv``) 2.2849 M / 356.9 M. The paper reports
no standard-convolution MobileNetV2 (its main.py refuses one only at 32x32); ``conv=standard`` builds a full
3x3 conv + BN in the replaced blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.layers import DropPath
from timm.models import generate_default_cfgs
from torch import nn
from torchvision.models import mobilenetv2
from torchvision.ops import Conv2dNormActivation

from effconv.models import register
from effconv.models.base import ClassifierNet, drop_path_rates, init_kaiming
from effconv.models.pretrained_cfgs import dataset_cfgs
from effconv.models.units import build_unit, replaced_conv

# (expansion t, width c, repeats n, first stride s, index of the replaced kernel set or None)
SETTING = (
    (1, 16, 1, 1, 0),
    (6, 24, 2, 2, 1),
    (6, 32, 3, 2, None),
    (6, 64, 4, 2, None),
    (6, 96, 3, 1, None),
    (6, 160, 3, 2, None),
    (6, 320, 1, 1, None),
)
KERNEL_SETS = ((3, 5, 7), (3, 5))  # the authors' kernel lists of the two replaced rows
STEM_WIDTH, HEAD_WIDTH = 32, 1280


class InvertedResidual(mobilenetv2.InvertedResidual):
    """torchvision's block with a DropPath on its residual branch (timm's stochastic depth)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int, drop_path: float = 0.0):
        super().__init__(in_ch, out_ch, stride, expand_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.use_res_connect else nn.Identity()

    def forward(self, x):
        return x + self.drop_path(self.conv(x)) if self.use_res_connect else self.conv(x)


class ReplacedInvertedResidual(nn.Module):
    """[1x1 expand + BN + ReLU6] -> unit(hidden -> out, stride) -> ReLU -> BN, residual where shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int, unit: str, kernel_size, drop_path=0.0):
        super().__init__()
        hidden = in_ch * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(in_ch, hidden, kernel_size=1, activation_layer=nn.ReLU6))
        layers += [
            build_unit(unit, hidden, out_ch, stride=stride, kernel_size=kernel_size),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_ch == out_ch
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.use_res_connect else nn.Identity()

    def forward(self, x):
        return x + self.drop_path(self.conv(x)) if self.use_res_connect else self.conv(x)


class MobileNetV2Stl10(ClassifierNet):
    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        conv: str = "multiception",
        kernels: Sequence | None = None,
        stem_stride: int = 1,
        drop_rate: float = 0.2,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.in_chans = in_chans
        unit, replaced_kernels = replaced_conv(conv, kernels, KERNEL_SETS)
        layers: list[nn.Module] = [
            Conv2dNormActivation(in_chans, STEM_WIDTH, stride=stem_stride, activation_layer=nn.ReLU6)
        ]
        outputs = [("features.0", STEM_WIDTH, stem_stride)]  # (module, channels, stride) of the stage layers
        rates = iter(drop_path_rates(drop_path_rate, sum(n for _, _, n, _, _ in SETTING)))
        in_ch = STEM_WIDTH
        for t, c, n, s, kernel_index in SETTING:
            for i in range(n):
                stride = s if i == 0 else 1
                if kernel_index is None:
                    layers.append(InvertedResidual(in_ch, c, stride, t, next(rates)))
                else:
                    kernel = replaced_kernels[kernel_index]
                    layers.append(ReplacedInvertedResidual(in_ch, c, stride, t, unit, kernel, next(rates)))
                outputs.append((f"features.{len(layers) - 1}", c, stride))
                in_ch = c
        layers.append(Conv2dNormActivation(in_ch, HEAD_WIDTH, kernel_size=1, activation_layer=nn.ReLU6))  # tail
        self.features = nn.Sequential(*layers)
        self.num_features = HEAD_WIDTH
        self._init_head(num_classes, drop_rate, global_pool)
        self._init_feature_info(outputs)
        init_kaiming(self, mode="fan_out", linear_std=0.01)


default_cfgs = generate_default_cfgs(
    dataset_cfgs("mobilenetv2_stl10", "multiception", ["stl10"], 16, "features.0.0", "fc")
)
register("mobilenetv2_stl10", MobileNetV2Stl10)
