"""The DiCE unit (DimConv -> DimFuse) rewritten for inference: BatchNorms folded, no interleave, no copies.

DimConv ends with BatchNorm + PReLU over its 3C interleaved channels and DimFuse starts with a grouped 1x1
conv (C groups of the three planes of a channel) + BatchNorm + PReLU. In eval mode:

* the depth-wise branch's BatchNorm folds into its kernels (one kernel per channel); the height- and
  width-wise kernels are shared across channels, so their BatchNorm stays a per-channel multiply-add, done
  in one ``addcmul``;
* the interleave is never made: the grouped 1x1 conv is a per-channel weighted sum of the three planes, and
  the BatchNorm after it folds into those weights and a bias, so local fusion is three multiply-adds;
* the height- and width-wise convs run on permuted views of the input (``height_wise_conv`` /
  ``width_wise_conv``), never on ``.contiguous()`` copies as the authors' formulation does.

Units with the ablation variants (depth-wise spatial layer, point-wise or SE fusion) are left to the generic
BatchNorm fold. The strided unit's average pool and DimFuse's spatial conv and squeeze gate are kept as they
are (the generic fold then folds the spatial conv's BatchNorm).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from effconv.deploy.batchnorm import bn_scale_shift
from effconv.deploy.dataflow import replace_module
from effconv.ops.dice import DiceUnit, DimensionWiseConv, DimensionWiseFusion
from effconv.ops.dimconv import height_wise_conv, resample_axis, width_wise_conv


class DiceUnitInference(nn.Module):
    """Eval-only DiCE unit: the same function as ``DiceUnit`` with DimConv + DimFuse's BatchNorms folded."""

    def __init__(self, unit: DiceUnit):
        super().__init__()
        dim: DimensionWiseConv = unit.spatial
        fusion: DimensionWiseFusion = unit.fusion
        self.pool = copy.deepcopy(unit.pool)
        self.height, self.width, self.padding = dim.height, dim.width, dim.kernel_size // 2
        self.channels = c = dim.channels
        scale, shift = bn_scale_shift(dim.norm)  # 3C interleaved: channel 3i + branch
        scale, shift = scale.view(c, 3), shift.view(c, 3)
        slopes = dim.act.weight.detach().view(c, 3)
        self.register_buffer("weight_depth", dim.weight_depth.detach() * scale[:, 0].view(c, 1, 1, 1))
        self.register_buffer("bias_depth", shift[:, 0].clone())
        self.register_buffer("weight_height", dim.weight_height.detach().clone())
        self.register_buffer("weight_width", dim.weight_width.detach().clone())
        self.register_buffer("scale_hw", scale[:, 1:].T.reshape(2, 1, c, 1, 1).clone())
        self.register_buffer("shift_hw", shift[:, 1:].T.reshape(2, 1, c, 1, 1).clone())
        self.register_buffer("slopes", slopes.T.contiguous())  # (3, C): PReLU of each branch
        conv, norm, act = fusion.local
        local_scale, local_shift = bn_scale_shift(norm)
        weights = conv.weight.detach().view(c, 3) * local_scale[:, None]
        self.register_buffer("local_weight", weights.T.reshape(3, 1, c, 1, 1).clone())
        self.register_buffer("local_bias", local_shift.view(1, c, 1, 1).clone())
        self.register_buffer("local_slope", act.weight.detach().clone())
        self.spatial = copy.deepcopy(fusion.spatial)
        self.gate = copy.deepcopy(fusion.gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        height, width = x.shape[2:]
        depth = F.conv2d(x, self.weight_depth, self.bias_depth, padding=self.padding, groups=self.channels)
        h = resample_axis(
            height_wise_conv(resample_axis(x, self.height, 2), self.weight_height, self.padding), height, 2
        )
        w = resample_axis(width_wise_conv(resample_axis(x, self.width, 3), self.weight_width, self.padding), width, 3)
        h = torch.addcmul(self.shift_hw[0], h, self.scale_hw[0])
        w = torch.addcmul(self.shift_hw[1], w, self.scale_hw[1])
        planes = [F.prelu(t, self.slopes[b]) for b, t in enumerate((depth, h, w))]
        fused = torch.addcmul(self.local_bias, planes[0], self.local_weight[0])
        for b in (1, 2):
            fused = fused.addcmul_(planes[b], self.local_weight[b])
        fused = F.prelu(fused, self.local_slope)
        return self.spatial(fused) * self.gate(fused)


def rewrite_dice(model: nn.Module) -> int:
    """Replace every DiCE unit with DimConv + DimFuse by its inference form; returns the count."""
    units = [
        m
        for m in model.modules()
        if isinstance(m, DiceUnit)
        and isinstance(m.spatial, DimensionWiseConv)
        and isinstance(m.fusion, DimensionWiseFusion)
        and isinstance(m.fusion.local[1], nn.BatchNorm2d)
        and m.spatial.norm.track_running_stats
    ]
    for unit in units:
        replace_module(model, unit, DiceUnitInference(unit))
    return len(units)
