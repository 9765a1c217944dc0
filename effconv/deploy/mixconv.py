"""The MixConv formulation per runtime: split (one depth-wise conv per kernel group, concatenated) or padded
(one depth-wise conv with every group's kernel zero-padded to the largest).

In eager PyTorch and under inductor the choice stays with the operator (``effconv.ops.mixconv``: ``auto`` is the
split form on every device; timm's ``MixedConv2d`` is the split form too). For ONNX Runtime the form is fixed
here from ``benchmarks/bench_latency.py``'s MixConv row: MixNet-S at batch 1, one thread, padded 16.7 ms vs
split 17.3 ms in a development run, 12.0 vs 13.5 ms (0.89x) in docs/latency.md's run, both on the 2-core EPYC.
Where the padded form is chosen, timm's ``MixedConv2d`` becomes one ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import MixedConv2d
from torch import nn

from effconv.deploy.dataflow import replace_module
from effconv.ops.mixconv import MixConv

# runtime -> MixConv form; None keeps the operator's own choice (impl='auto': split)
RUNTIME_FORMS: dict[str, str | None] = {"eager": None, "onnx": "padded", "inductor": None}


def padded_conv(layer: MixedConv2d) -> nn.Conv2d | None:
    """timm's depth-wise MixedConv2d as one depth-wise conv (kernels zero-padded to the largest), or None."""
    convs = list(layer.values())
    if not all(type(c) is nn.Conv2d for c in convs):  # Conv2dSame pads at run time: not one static padding
        return None
    depthwise = all(c.groups == c.in_channels == c.out_channels for c in convs)
    uniform = len({(c.stride, c.dilation) for c in convs}) == 1 and all(c.dilation == (1, 1) for c in convs)
    same = all(c.padding == (c.kernel_size[0] // 2, c.kernel_size[1] // 2) for c in convs)
    square = all(c.kernel_size[0] == c.kernel_size[1] for c in convs)
    if not (depthwise and uniform and same and square):
        return None
    size = max(c.kernel_size[0] for c in convs)
    channels = sum(c.out_channels for c in convs)
    bias = any(c.bias is not None for c in convs)
    out = nn.Conv2d(channels, channels, size, convs[0].stride, size // 2, groups=channels, bias=bias)
    out = out.to(convs[0].weight)
    with torch.no_grad():
        out.weight.copy_(torch.cat([F.pad(c.weight, [(size - c.kernel_size[0]) // 2] * 4) for c in convs]))
        if bias:
            out.bias.copy_(
                torch.cat([c.bias if c.bias is not None else c.weight.new_zeros(c.out_channels) for c in convs])
            )
    return out


def choose_mixconv_forms(model: nn.Module, runtime: str) -> int:
    """Set the MixConv form for ``runtime`` on every MixConv (and timm MixedConv2d); returns how many changed."""
    form = RUNTIME_FORMS[runtime]
    if form is None:
        return 0
    changed = 0
    for module in list(model.modules()):
        if isinstance(module, MixConv) and len(module.kernel_sizes) > 1:
            module.impl = form
            changed += 1
        elif isinstance(module, MixedConv2d) and len(module) > 1 and form == "padded":
            conv = padded_conv(module)
            if conv is not None:
                replace_module(model, module, conv)
                changed += 1
    return changed
