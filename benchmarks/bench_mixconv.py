"""MixConv vs timm's MixedConv2d, forward + backward, on the shapes of MixNet-S's largest mixed layers.

Rows (all channels_last, fp32, weights copied so both compute the same function, checked before timing):

* ``MixConv ...``: ours with ``impl=auto`` (the split form on every device) against timm's ``MixedConv2d``
  (split -> per-kernel conv -> concat); ratio = timm time / ours (> 1: ours faster). Target >= 1.0x.
* ``padded / split ...``: the two formulations of ours against each other; the evidence behind the fixed
  choice of ``MixConv.forward`` (ratio < 1: the single zero-padded conv is faster on this device).
* ``grouped 1x1 ...``: ``GroupedPointwise`` (one grouped conv when the split is even) vs ``MixedConv2d`` with
  1x1 kernels, MixNet's expand/project groups.
* ``from_timm`` converts timm's MixNet to our two operators; bench_models times the whole network with it.

Shapes (batch, then MixNet-S at 224 px): the mixed depth-wise layers with the most MAdds (three in the default
run, six with EFFCONV_BENCH_SLOW=1).
"""

from __future__ import annotations

import os

import torch
from timm.layers import MixedConv2d
from torch import nn

from benchmarks.harness import Context, Row, compare, forward_backward
from effconv.ops.mixconv import GroupedPointwise, MixConv

# (channels, height = width, kernels, stride) of MixNet-S's largest mixed depth-wise layers (blocks 2.1, 2.0,
# 4.1, 4.0, 5.1, 5.0 of timm's mixnet_s)
MIXED_LAYERS = [  # three of them in the 15-minute suite (the rest: EFFCONV_BENCH_SLOW=1)
    (240, 28, [3, 5], 1),
    (144, 56, [3, 5, 7], 2),
    (360, 14, [3, 5, 7, 9], 1),
]
SLOW_LAYERS = [
    (480, 14, [3, 5, 7], 1),
    (1200, 7, [3, 5, 7, 9], 1),
    (720, 14, [3, 5, 7, 9, 11], 2),
]
# (in, out, height = width) of grouped 1x1 convs (2 groups) in MixNet-S: blocks 1.0 expand, 2.1 project
GROUPED_POINTWISE = [(16, 96, 112), (240, 40, 28)]


def _channels_last(*tensors_or_modules):
    return [t.to(memory_format=torch.channels_last) for t in tensors_or_modules]


def _mixconv_rows(ctx: Context, batch: int) -> list[Row]:
    rows = []
    slow = os.environ.get("EFFCONV_BENCH_SLOW") == "1"
    for channels, size, kernels, stride in MIXED_LAYERS + (SLOW_LAYERS if slow else []):
        theirs = MixedConv2d(channels, channels, kernels, stride=stride, depthwise=True).to(ctx.device)
        ours = {
            impl: MixConv(channels, kernels, stride, impl=impl).to(ctx.device) for impl in ("auto", "split", "padded")
        }
        for module in ours.values():
            for w, conv in zip(module.weights, theirs.values()):
                w.data.copy_(conv.weight)
        x = torch.randn(batch, channels, size, size, device=ctx.device)
        x, theirs, *mods = _channels_last(x, theirs, *ours.values())
        ours = dict(zip(ours, mods))
        with torch.no_grad():
            reference = theirs(x)
            for module in ours.values():
                torch.testing.assert_close(module(x), reference, rtol=1e-4, atol=1e-4)
        times = compare(
            {"timm": forward_backward(theirs, x), **{k: forward_backward(m, x) for k, m in ours.items()}}, ctx
        )
        shape = f"{channels}x{size}x{size} k{{{','.join(map(str, kernels))}}} s{stride}, batch {batch}"
        ratio = times["timm"] / times["auto"]
        rows.append(
            Row(
                "operators / MixConv vs timm MixedConv2d",
                f"MixConv {shape} (auto = split)",
                times["auto"] * 1e3,
                "ms",
                reference="timm MixedConv2d",
                ratio=ratio,
                ratio_meaning="timm time / ours (>1: ours faster)",
                target=">= 1.0x",
                met=ratio >= 1.0,
                extra={k: v * 1e3 for k, v in times.items()},
                cause=""
                if ratio >= 1.0
                else "split is timm's own computation (split, one depth-wise conv per kernel, concat), so the "
                f"two differ by noise only; our single zero-padded conv takes {times['padded'] / times['timm']:.2f}x "
                "timm's time on this layer, but MixNet-S as a whole trains faster with split (bench_models), so "
                "'auto' stays split",
            )
        )
        rows.append(
            Row(
                "operators / MixConv formulations",
                f"padded / split {shape}",
                times["padded"] * 1e3,
                "ms",
                reference="ours, split",
                ratio=times["padded"] / times["split"],
                ratio_meaning="padded time / split time (<1: one zero-padded conv is faster)",
            )
        )
    return rows


def _pointwise_rows(ctx: Context, batch: int) -> list[Row]:
    rows = []
    for in_ch, out_ch, size in GROUPED_POINTWISE:
        theirs = MixedConv2d(in_ch, out_ch, [1, 1]).to(ctx.device)
        ours = GroupedPointwise(in_ch, out_ch, 2).to(ctx.device)
        ours.convs[0].weight.data.copy_(torch.cat([c.weight for c in theirs.values()]))
        x, theirs, ours = _channels_last(torch.randn(batch, in_ch, size, size, device=ctx.device), theirs, ours)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
        times = compare({"timm": forward_backward(theirs, x), "ours": forward_backward(ours, x)}, ctx)
        ratio = times["timm"] / times["ours"]
        rows.append(
            Row(
                "operators / MixConv vs timm MixedConv2d",
                f"grouped 1x1 {in_ch}->{out_ch} at {size}x{size}, 2 groups, batch {batch}",
                times["ours"] * 1e3,
                "ms",
                reference="timm MixedConv2d [1, 1]",
                ratio=ratio,
                ratio_meaning="timm time / ours (>1: ours faster)",
                target=">= 1.0x",
                met=ratio >= 1.0,
            )
        )
    return rows


def from_timm(model: nn.Module) -> nn.Module:
    """timm's MixNet, its MixedConv2d layers replaced by MixConv / GroupedPointwise with the same weights."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, MixedConv2d):
                continue
            convs = list(child.values())
            if convs[0].kernel_size == (1, 1):
                new = GroupedPointwise(child.in_channels, child.out_channels, len(convs))
                weights = [torch.cat([c.weight for c in convs])] if len(new.convs) == 1 else [c.weight for c in convs]
                for conv, weight in zip(new.convs, weights):
                    conv.weight.data.copy_(weight)
            else:
                new = MixConv(child.in_channels, [c.kernel_size[0] for c in convs], convs[0].stride[0])
                for weight, conv in zip(new.weights, convs):
                    weight.data.copy_(conv.weight)
            setattr(parent, name, new)
    return model


def run(ctx: Context) -> list[Row]:
    cuda = ctx.device.type == "cuda"
    batch = ctx.batch(16, 128, quick=8)
    rows = _mixconv_rows(ctx, batch) + _pointwise_rows(ctx, batch)
    for row in rows:
        row.note = f"{torch.get_num_threads()} threads" if not cuda else ""
    return rows
