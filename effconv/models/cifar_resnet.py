"""ResNets for 32x32 inputs (He et al. 2016, Sec. 4.2): 6n+2 layers of basic blocks, widths 16/32/64.

The form follows the Depthwise Multiception authors' ``resnet.py`` (reference-architectures §5), which is
also the classic CIFAR ResNet: 3x3 stem with stride 1, three stages of n basic blocks with strides 1/2/2,
projection shortcut (1x1 conv + BN) where the width changes, global average pool, linear classifier,
Kaiming-normal init. ``conv`` swaps the unit of the *first* conv of every residual branch (the second stays a
standard 3x3, as in the authors' code); ``kernels`` gives that unit's kernel(s) per stage.

Registered: ``resnet20_cifar`` (n=3, 0.2725 M params at 10 classes) and ``resnet50_cifar`` (n=8).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from effconv.models import register
from effconv.models.base import ClassifierNet, init_kaiming
from effconv.ops import create_unit
from effconv.ops.common import ConvBnAct


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, conv: str, kernel_size):
        super().__init__()
        self.conv1 = create_unit(conv, in_ch, out_ch, stride=stride, kernel_size=kernel_size)
        self.conv2 = ConvBnAct(out_ch, out_ch, 3, act=None)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.conv2(self.act(self.conv1(x)))
        return self.act(out + self.shortcut(x))


class CifarResNet(ClassifierNet):
    def __init__(
        self,
        blocks_per_stage: int = 3,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        conv: str = "standard",
        kernels: Sequence = (3, 3, 3),
        stem_stride: int = 1,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if len(kernels) != len(widths):
            raise ValueError(f"kernels needs one entry per stage ({len(widths)}), got {list(kernels)}")
        layers = [ConvBnAct(in_chans, widths[0], 3, stride=stem_stride)]
        in_ch = widths[0]
        for stage, (width, kernel) in enumerate(zip(widths, kernels)):
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_ch, width, stride, conv, _listify(kernel)))
                in_ch = width
        self.features = nn.Sequential(*layers)
        self.num_features = in_ch
        self._init_head(num_classes, drop_rate)
        init_kaiming(self)


def _listify(kernel):
    """Kernel knobs arrive from YAML as ints or lists; units take an int or a list of ints."""
    return list(kernel) if isinstance(kernel, Sequence) and not isinstance(kernel, str) else int(kernel)


register("resnet20_cifar", CifarResNet, blocks_per_stage=3)
register("resnet50_cifar", CifarResNet, blocks_per_stage=8)
