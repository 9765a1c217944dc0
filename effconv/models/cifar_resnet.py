"""ResNets and SE-ResNets for 32x32 inputs (He et al. 2016, Sec. 4.2; Hu et al. 2018): basic blocks, 6n+2.

The form follows the Depthwise Multiception authors' ``resnet.py`` and ``senet.py`` (guoqingbao/Multiception,
reference-architectures §5.2), which is also the classic CIFAR ResNet: 3x3 stem (conv + BN + ReLU, stride 1),
three stages of n basic blocks with widths 16/32/64 and strides 1/2/2, a projection shortcut (1x1 conv + BN)
where the width changes, global average pool, linear classifier, Kaiming-normal init.

Knobs (effconv/models/units.py): ``conv`` swaps the unit of the *first* conv of every residual branch;
the second stays a standard 3x3 + BN, as in the authors' code (the paper implies the whole model changes,
§5.4 item 2). ``kernels`` gives that unit's kernel(s) per stage; ``None`` is the authors' choice for ``conv``
(Multiception: {3,5,7}, {3,5}, {3,3}: two parallel 3x3 branches in stage 3, not the paper's "downgraded to
DSConv", §5.4 item 1). ``se_reduction`` > 0 adds a squeeze-and-excitation gate after the second BN (before
the addition): two bias-free FCs C -> C/r -> C, ReLU, sigmoid.

Registered (params at 10 classes, conv=standard / multiception, reference-architectures §5.2):
``resnet20_cifar`` (n=3; 272,474 / 189,434), ``resnet50_cifar`` (n=8, the authors' "ResNet-50": 6n+2 = 50 with
basic blocks; 0.7586 M / 0.5094 M), ``seresnet56_cifar`` (n=9, SE reduction 8 as the authors' main.py passes;
867,866 / 585,530).

Deviations from the authors' code:

* ``stem_stride`` is a knob, default 1. The authors keep stride 1 for ResNet at every input size (STL-10
  96x96, ImageNet32) and put stride 2 in the SE-ResNet stem off CIFAR; the paper runs SeNet-56 on CIFAR only.
* Conv biases (only the 1x1 of Multiception/DSConv has one) start at zero, not PyTorch's default uniform.
* The SE gate is timm's ``SEModule`` (1x1 convs on the pooled vector: the same parameters as the authors'
  bias-free linear layers), initialised with PyTorch's default as the authors' ``nn.Linear``.
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.layers import DropPath, SEModule
from timm.models import generate_default_cfgs
from torch import nn

from effconv.models import register
from effconv.models.base import ClassifierNet, drop_path_rates, init_kaiming
from effconv.models.pretrained_cfgs import dataset_cfgs
from effconv.models.units import build_unit, replaced_conv
from effconv.ops.common import ConvBnAct

# The authors' kernel sets per stage for multi-kernel units (resnet.py / senet.py ``_make_layer`` calls)
KERNEL_SETS = ((3, 5, 7), (3, 5), (3, 3))


class BasicBlock(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, stride: int, unit: str, kernel_size, se_reduction: int = 0, drop_path=0.0
    ):
        super().__init__()
        self.conv1 = build_unit(unit, in_ch, out_ch, stride=stride, kernel_size=kernel_size)
        self.conv2 = ConvBnAct(out_ch, out_ch, 3, act=None)
        self.se = SEModule(out_ch, rd_channels=out_ch // se_reduction, bias=False) if se_reduction else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        out = self.se(self.conv2(self.act(self.conv1(x))))
        return self.act(self.drop_path(out) + self.shortcut(x))


class CifarResNet(ClassifierNet):
    def __init__(
        self,
        blocks_per_stage: int = 3,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        conv: str = "standard",
        kernels: Sequence | None = None,
        stem_stride: int = 1,
        se_reduction: int = 0,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.in_chans = in_chans
        if len(widths) != len(KERNEL_SETS):
            raise ValueError(f"widths needs {len(KERNEL_SETS)} stages, got {list(widths)}")
        if se_reduction < 0 or (se_reduction and min(widths) // se_reduction < 1):
            raise ValueError(f"se_reduction must be 0 (no SE) or at most {min(widths)}, got {se_reduction}")
        unit, stage_kernels = replaced_conv(conv, kernels, KERNEL_SETS)
        layers = [ConvBnAct(in_chans, widths[0], 3, stride=stem_stride)]
        outputs = [("features.0", widths[0], stem_stride)]  # (module, channels, stride) of each layer
        rates = drop_path_rates(drop_path_rate, len(widths) * blocks_per_stage)
        in_ch = widths[0]
        for stage, (width, kernel) in enumerate(zip(widths, stage_kernels)):
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_ch, width, stride, unit, kernel, se_reduction, rates[len(layers) - 1]))
                outputs.append((f"features.{len(layers) - 1}", width, stride))
                in_ch = width
        self.features = nn.Sequential(*layers)
        self.num_features = in_ch
        self._init_head(num_classes, drop_rate, global_pool)
        self._init_feature_info(outputs)
        # the authors call nn.init.kaiming_normal_ with its defaults: fan_in, gain sqrt(2)
        init_kaiming(self, mode="fan_in")
        for m in self.modules():
            if isinstance(m, SEModule):
                m.fc1.reset_parameters()
                m.fc2.reset_parameters()


# the datasets of the Multiception tables (conf/experiment/multiception/); resnet20_cifar is also the
# project's default model (digits)
default_cfgs = generate_default_cfgs(
    {
        **dataset_cfgs("resnet20_cifar", "multiception", ["cifar10", "digits"], 4, "features.0.0", "fc"),
        **dataset_cfgs(
            "resnet50_cifar", "multiception", ["cifar10", "cifar100", "stl10", "imagenet32"], 4, "features.0.0", "fc"
        ),
        **dataset_cfgs("seresnet56_cifar", "multiception", ["cifar10"], 4, "features.0.0", "fc"),
    }
)
THREE_LEVELS = {"out_indices": (0, 1, 2)}  # one level per resolution: 32, 16, 8 px at 32 px

register("resnet20_cifar", CifarResNet, THREE_LEVELS, blocks_per_stage=3)
register("resnet50_cifar", CifarResNet, THREE_LEVELS, blocks_per_stage=8)
register("seresnet56_cifar", CifarResNet, THREE_LEVELS, blocks_per_stage=9, se_reduction=8)
