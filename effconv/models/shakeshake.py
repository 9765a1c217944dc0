"""Shake-Shake ResNet for 32x32 inputs (Gastaldi 2017, "Shake-Shake regularization"), as the Multiception
authors built it (guoqingbao/Multiception ``shakenet.py`` / ``shakeshake.py``; reference-architectures §5.2).

* Stem: 3x3 conv 3 -> 16 with a bias and no BN or activation.
* Three stages of (depth - 2) / 6 Shake blocks, widths w, 2w, 4w, strides 1/2/2. A block has two residual
  branches, each ReLU -> [replaced conv (+ its BN)] -> ReLU -> 3x3 conv -> BN, mixed by Shake-Shake
  (effconv/ops/shake_shake.py: random α per sample forward, independent β backward, 0.5 at evaluation), plus
  the shortcut; no activation after the addition.
* Shortcut where the width changes: ReLU -> two stride-s 1x1 convs to out/2, the second on the input shifted
  by one pixel (up-left, zero fill) -> concat -> BN.
* Head: ReLU -> global average pool (the authors' avg-pool 8 at 32x32) -> linear.
* Init: conv weights N(0, 2 / (k² · C_out)) (Kaiming fan-out), BN 1/0, linear bias 0.

Knobs as the CIFAR ResNets (effconv/models/units.py): ``conv`` replaces the first conv of *each*
branch, ``kernels`` per stage (authors: {3,5,7}, {3,5}, {3,3}), ``stem_stride``.

Registered: ``shakeshake26_2x96d_cifar`` (depth 26, w = 96; at 10 classes 26.1929 M params standard, 16.9807 M
Multiception; with ``unused_shortcuts=True`` 26.7775 M / 17.5654 M, the authors' counts: the paper prints
26.78 M / 17.57 M).

``unused_shortcuts``: the authors' ``ShakeBlock`` writes ``self.equal_io and None or Shortcut(...)``, which
builds a shortcut module in *every* block, but calls it only where the width changes. Its parameters
(584,640 at 2x96d: convs in·out + BN 2·out in each of the 9 width-preserving blocks) are in every parameter
count the paper prints for ShakeNet, while the network computes nothing with them. ``True`` adds these
modules, frozen (``requires_grad=False``, so optimisers and DDP ignore them) and never called: the function
and the training are unchanged and the parameter count equals the authors'. The default leaves them out.

Deviations from the authors' code: ``stem_stride`` (default 1) strides the stem, while the authors' non-CIFAR
variant strides the first stage instead and the paper runs this network on CIFAR only; biases of the stem and
of the Multiception/DSConv 1x1 start at zero rather than PyTorch's default uniform.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models import generate_default_cfgs
from torch import nn

from effconv.models import register
from effconv.models.base import ClassifierNet, drop_path_rates, init_kaiming
from effconv.models.pretrained_cfgs import dataset_cfgs
from effconv.models.units import build_unit, replaced_conv
from effconv.ops.shake_shake import shake_shake

torch.fx.wrap("shake_shake")  # a leaf where the blocks call it (see effconv.ops.shake_shake)

KERNEL_SETS = ((3, 5, 7), (3, 5), (3, 3))  # the authors' shakenet.py _make_layer calls


class ShiftedPairShortcut(nn.Module):
    """ReLU -> [1x1 on x, 1x1 on x shifted by one pixel], each to out/2 at the stride -> concat -> BN."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        if out_ch % 2:
            raise ValueError(f"the Shake-Shake shortcut needs an even output width, got {out_ch}")
        self.stride = stride
        self.conv1 = nn.Conv2d(in_ch, out_ch // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(in_ch, out_ch // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        s = self.stride
        return self.bn(torch.cat([self.conv1(x[:, :, ::s, ::s]), self.conv2(shifted[:, :, ::s, ::s])], dim=1))


class ShakeBlock(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, stride: int, unit: str, kernel_size, unused_shortcut: bool, drop_path=0.0
    ):
        super().__init__()
        self.branch1 = self._branch(in_ch, out_ch, stride, unit, kernel_size)
        self.branch2 = self._branch(in_ch, out_ch, stride, unit, kernel_size)
        identity = in_ch == out_ch and stride == 1
        self.shortcut = nn.Identity() if identity else ShiftedPairShortcut(in_ch, out_ch, stride)
        if identity and unused_shortcut:
            # parameters the authors' code holds but never uses (module docstring); forward ignores them
            self.unused_shortcut = ShiftedPairShortcut(in_ch, out_ch, stride).requires_grad_(False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @staticmethod
    def _branch(in_ch, out_ch, stride, unit, kernel_size) -> nn.Sequential:
        return nn.Sequential(
            nn.ReLU(),  # not in place: the input also feeds the other branch and the shortcut
            build_unit(unit, in_ch, out_ch, stride=stride, kernel_size=kernel_size),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = shake_shake(self.branch1(x), self.branch2(x), self.training)
        return self.drop_path(mixed) + self.shortcut(x)


class ShakeResNet(ClassifierNet):
    def __init__(
        self,
        depth: int = 26,
        base_width: int = 96,
        num_classes: int = 10,
        in_chans: int = 3,
        conv: str = "standard",
        kernels: Sequence | None = None,
        stem_stride: int = 1,
        stem_width: int = 16,
        unused_shortcuts: bool = False,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.in_chans = in_chans
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (26 for ShakeNet-26), got {depth}")
        unit, stage_kernels = replaced_conv(conv, kernels, KERNEL_SETS)
        layers: list[nn.Module] = [nn.Conv2d(in_chans, stem_width, 3, stem_stride, 1, bias=True)]
        outputs = [("features.0", stem_width, stem_stride)]  # (module, channels, stride) of the stage layers
        blocks = (depth - 2) // 6
        rates = drop_path_rates(drop_path_rate, len(stage_kernels) * blocks)
        in_ch = stem_width
        for stage, kernel in enumerate(stage_kernels):
            width = base_width * 2**stage
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                drop_path = rates[len(layers) - 1]
                layers.append(ShakeBlock(in_ch, width, stride, unit, kernel, unused_shortcuts, drop_path))
                outputs.append((f"features.{len(layers) - 1}", width, stride))
                in_ch = width
        layers.append(nn.ReLU())  # the tail; not in place: the last level is its input
        self.features = nn.Sequential(*layers)
        self.num_features = in_ch
        self._init_head(num_classes, drop_rate, global_pool)
        self._init_feature_info(outputs)
        init_kaiming(self, mode="fan_out")
        if isinstance(self.fc, nn.Linear):
            nn.init.zeros_(self.fc.bias)


default_cfgs = generate_default_cfgs(
    dataset_cfgs("shakeshake26_2x96d_cifar", "multiception", ["cifar10", "cifar100"], 4, "features.0", "fc")
)
register("shakeshake26_2x96d_cifar", ShakeResNet, {"out_indices": (0, 1, 2)}, depth=26, base_width=96)
