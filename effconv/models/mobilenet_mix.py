"""MobileNetV1 / V2 with their depth-wise convs replaced: the kernel studies of MixConv (Tan & Le, BMVC 2019).

Paper Sec. 3.3-3.4: every 3x3 depth-wise conv of MobileNetV1 (Howard et al. 2017) or MobileNetV2 (Sandler et
al. 2018) becomes a k x k depth-wise conv (Fig. 1, k = 3..13) or a MixConv with g groups and kernels
3, 5, ..., 2g+1 (Fig. 4, g = 1..6), optionally with the exponential channel partition or dilated kernels
(Fig. 6); or only one depth-wise layer is replaced, by DW 9x9 or MixConv {3,5,7,9} (Fig. 5). The authors'
MobileNet code for these studies is not public; the networks follow the MobileNet papers and
torchvision/timm (MobileNetV2 1.0: 3.5049 M params, 300.8 MAdds, as timm's ``mobilenetv2_100``).

Knobs (``effconv/conf/model/mobilenetv{1,2}_mix.yaml``):

* ``conv``: the unit of the replaced layers, a depth-wise unit of effconv.ops.UNITS (default ``mixconv``, the
  paper's; ``dw`` or ``xsepconv`` compare other operators in the same network).
* ``kernel``: the depth-wise kernel when ``groups`` = 1 (default 3); with ``groups`` > 1 the kernels are
  3..2g+1, so ``kernel`` may only repeat the largest (the x-axis of Fig. 4) or stay null.
* ``groups``, ``split`` (equal | exp), ``dilated``: the MixConv (effconv.ops.mixconv).
* ``layer``: ``all``, or the 0-based index of the single depth-wise layer to replace (V1: 13 layers,
  V2: 17, in network order); the other layers keep DW 3x3.
* ``width_mult``: channels x width rounded to multiples of 8 (MobileNetV2's rule, also applied to V1);
  MobileNetV2's last 1x1 conv keeps 1280 unless the width is above 1.
* ``impl``: MixConv formulation (split | padded | auto); all give the same function.

Deviations and choices, with reasons:

* Fig. 5 plots 15 layers of MobileNetV2 without saying which two of its 17 depth-wise layers are left out;
  ``layer`` indexes all 17 and the Fig. 5 table has one row per layer.
* Dilation applies only to stride-1 layers (paper Sec. 3.4: TensorFlow's dilated conv has no stride); a
  stride-2 layer keeps its large kernels.
* Activation ReLU6 in both networks (the TensorFlow MobileNets); symmetric k//2 padding (PyTorch style,
  not TensorFlow 'SAME', which pads stride-2 layers asymmetrically).
* Initialisation as the authors' MnasNet/MixNet code (and timm's ``_init_weight_goog``): conv weights
  normal with std sqrt(2 / fan_out), fan_out = k^2 x out / groups (per MixConv group: k_i^2); classifier
  uniform +-1/sqrt(classes).
* MobileNetV1's classifier dropout: TF-slim keeps 0.999 of the units; ``drop_rate`` defaults to 0 here.
"""

from __future__ import annotations

import math

from timm.layers import DropPath
from timm.models import generate_default_cfgs
from torch import nn

from effconv.models import register
from effconv.models.base import ClassifierNet, drop_path_rates, uniform_linear_init
from effconv.models.pretrained_cfgs import dataset_cfgs
from effconv.models.units import MIXCONV_HOST_UNITS, build_unit, check_conv
from effconv.ops import create_unit
from effconv.ops.common import ConvBnAct, make_divisible
from effconv.ops.mixconv import SPLITS, MixConv, mixconv_kernels

# MobileNetV1 (Howard et al. 2017, Table 1): (output channels, stride) of the 13 depth-wise separable layers
MOBILENET_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
# MobileNetV2 (Sandler et al. 2018, Table 2): (expansion t, output channels c, repeats n, first stride s)
MOBILENET_V2 = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class DepthwisePlan:
    """Which unit each depth-wise layer gets, from the knobs (validated once, for every layer)."""

    def __init__(self, num_layers: int, conv: str, kernel, groups: int, split: str, dilated: bool, layer, impl: str):
        self.conv = check_conv(conv, MIXCONV_HOST_UNITS)
        groups = int(groups)
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
        if groups == 1:
            kernel = 3 if kernel is None else int(kernel)
            if kernel < 1 or kernel % 2 == 0:
                raise ValueError(f"kernel must be an odd size >= 1, got {kernel}")
            self.kernels = [kernel]
        else:
            self.kernels = mixconv_kernels(groups)
            if kernel is not None and int(kernel) != self.kernels[-1]:
                raise ValueError(
                    f"groups={groups} mixes kernels {self.kernels}, so kernel={kernel} contradicts it; "
                    f"leave kernel null or set it to {self.kernels[-1]}"
                )
        if layer != "all" and not (isinstance(layer, int) and 0 <= layer < num_layers):
            raise ValueError(f"layer must be 'all' or a depth-wise layer index 0..{num_layers - 1}, got {layer!r}")
        self.layer, self.split, self.dilated, self.impl = layer, split, bool(dilated), impl

    def unit(self, index: int, channels: int, stride: int) -> nn.Module:
        if self.layer != "all" and index != self.layer:
            return create_unit("mixconv", channels, channels, stride, kernel_size=3, impl=self.impl)
        # MixConv takes its kernel list; a single-kernel unit takes the kernel itself
        kernel = self.kernels if self.conv == "mixconv" or len(self.kernels) > 1 else self.kernels[0]
        # split and dilated select a MixConv variant (an error for a unit without them); impl is a formulation
        variant = {"split": self.split} if self.split != "equal" else {}
        if self.dilated:
            variant["dilated"] = stride == 1
        return build_unit(self.conv, channels, channels, stride, kernel, variant=variant, optional={"impl": self.impl})


class DepthwiseAct(nn.Sequential):
    """Depth-wise unit (conv + BN) followed by ReLU6."""

    def __init__(self, unit: nn.Module):
        super().__init__(unit, nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (t > 1), depth-wise, linear 1x1 project; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int, depthwise: nn.Module, drop_path=0.0):
        super().__init__()
        hidden = in_ch * expansion
        layers = [ConvBnAct(in_ch, hidden, 1, act=nn.ReLU6)] if expansion != 1 else []
        layers += [DepthwiseAct(depthwise), ConvBnAct(hidden, out_ch, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.residual else nn.Identity()

    def forward(self, x):
        return x + self.drop_path(self.conv(x)) if self.residual else self.conv(x)


class MobileNetV2Mix(ClassifierNet):
    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        conv: str = "mixconv",
        kernel=None,
        groups: int = 1,
        split: str = "equal",
        dilated: bool = False,
        layer="all",
        impl: str = "auto",
        drop_rate: float = 0.2,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.in_chans = in_chans
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        num_blocks = sum(n for _, _, n, _ in MOBILENET_V2)
        plan = DepthwisePlan(num_blocks, conv, kernel, groups, split, dilated, layer, impl)
        rates = drop_path_rates(drop_path_rate, num_blocks)
        in_ch = make_divisible(32 * width_mult)
        layers, index = [ConvBnAct(in_chans, in_ch, 3, stride=2, act=nn.ReLU6)], 0
        outputs = [("features.0", in_ch, 2)]  # (module, channels, stride) of the stage layers
        for t, c, n, s in MOBILENET_V2:
            out_ch = make_divisible(c * width_mult)
            for i in range(n):
                stride = s if i == 0 else 1
                unit = plan.unit(index, in_ch * t, stride)
                layers.append(InvertedResidual(in_ch, out_ch, stride, t, unit, rates[index]))
                outputs.append((f"features.{len(layers) - 1}", out_ch, stride))
                in_ch, index = out_ch, index + 1
        self.num_features = make_divisible(1280 * max(1.0, width_mult))
        layers.append(ConvBnAct(in_ch, self.num_features, 1, act=nn.ReLU6))  # the tail
        self.features = nn.Sequential(*layers)
        self._init_head(num_classes, drop_rate, global_pool)
        self._init_feature_info(outputs)
        init_mnasnet_style(self)


class MobileNetV1Mix(ClassifierNet):
    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        conv: str = "mixconv",
        kernel=None,
        groups: int = 1,
        split: str = "equal",
        dilated: bool = False,
        layer="all",
        impl: str = "auto",
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ):
        super().__init__()
        self.in_chans = in_chans
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        plan = DepthwisePlan(len(MOBILENET_V1), conv, kernel, groups, split, dilated, layer, impl)
        in_ch = make_divisible(32 * width_mult)
        layers = [ConvBnAct(in_chans, in_ch, 3, stride=2, act=nn.ReLU6)]
        outputs = [("features.0", in_ch, 2)]  # (module, channels, stride) of the stage layers
        for index, (c, stride) in enumerate(MOBILENET_V1):
            out_ch = make_divisible(c * width_mult)
            layers += [
                DepthwiseAct(plan.unit(index, in_ch, stride)),
                ConvBnAct(in_ch, out_ch, 1, act=nn.ReLU6),
            ]
            outputs += [(f"features.{len(layers) - 2}", in_ch, stride), (f"features.{len(layers) - 1}", out_ch, 1)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.num_features = in_ch
        self._init_head(num_classes, drop_rate, global_pool)
        self._init_feature_info(outputs)
        init_mnasnet_style(self)


def init_mnasnet_style(model: nn.Module) -> None:
    """Conv weights normal(0, sqrt(2 / fan_out)) with fan_out = k^2 x out / groups; BN 1/0; FC uniform."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, MixConv):
            for w in m.weights:  # each group is depth-wise: fan_out = k_i^2
                nn.init.normal_(w, 0, math.sqrt(2.0 / (w.shape[-1] * w.shape[-2])))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            uniform_linear_init(m)


default_cfgs = generate_default_cfgs(
    {
        **dataset_cfgs("mobilenetv1_mix", "mixconv", ["imagenet"], 32, "features.0.0", "fc"),
        **dataset_cfgs("mobilenetv2_mix", "mixconv", ["imagenet"], 32, "features.0.0", "fc"),
    }
)
register("mobilenetv1_mix", MobileNetV1Mix)
register("mobilenetv2_mix", MobileNetV2Mix)
