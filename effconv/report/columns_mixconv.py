"""MixConv Table 2's second MAdds column: our count plus the per-element work the paper may have counted.

The MixConv paper prints 256 / 360 / 565 M FLOPS for MixNet-S/M/L with no counting method; our convention
(conv + FC MACs, effconv.profile) gives 239.2 / 339.2 / 555.3 M. ``madds_se_bn`` adds the SE gating products
(one multiply per element of each SE block's output) and one multiply-add per BatchNorm output element, so
the report shows how much of the gap such a convention would close (MixConv Table 2 footnote).
"""

from __future__ import annotations

import torch
from torch import nn

from effconv.profile import count_cost
from effconv.report.columns import Column, RowContext, register_column


def _is_squeeze_excite(module: nn.Module) -> bool:
    # timm's EfficientNet/MixNet SE block and its generic SE modules
    return type(module).__name__ in ("SqueezeExcite", "SEModule", "EffectiveSEModule")


def madds_with_se_bn(model: nn.Module, input_size) -> int:
    """Conv + FC MACs per image, plus SE gating products and BatchNorm output elements."""
    extra = [0]

    def add_output(module, inputs, output):
        extra[0] += output.numel()

    handles = [
        m.register_forward_hook(add_output)
        for m in model.modules()
        if _is_squeeze_excite(m) or isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for h in handles:
            h.remove()
    return count_cost(model, input_size).madds + extra[0]


def _static(ctx: RowContext) -> float:
    return madds_with_se_bn(ctx.model(), ctx.input_size) / 1e6


register_column(Column("madds_se_bn", "MAdds + SE + BN (M)", 2, static=_static, relative_delta=True))
