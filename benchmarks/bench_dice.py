"""DimConv: our copy-free formulation vs the authors' (transposes + contiguous copies, concat, shuffle).

performance-notes 6.2 found DimConv as the authors wrote it at 5-9x the time of one depth-wise conv (3x would
be ideal: three branches of equal cost), the excess being layout copies. Rows: ours / reference (forward, and
forward + backward) in NCHW and channels_last, and ours / one 3x3 depth-wise conv + BN + PReLU on the same
tensor (target: towards 3x). Both formulations share the parameters and are checked equal before timing.
Shapes are DiCENet's level-3 and level-2 sizes (reference-architectures §1.2).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.harness import Context, Row, compare, forward_backward
from effconv.ops.common import ConvBnAct
from effconv.ops.dimconv import DimensionWiseConv

GROUP = "operators / DimConv"


class _Reference(nn.Module):
    def __init__(self, conv: DimensionWiseConv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv.forward_reference(x)


def _forward(module: nn.Module, x: torch.Tensor):
    def fn():
        with torch.no_grad():
            module(x)

    return fn


def run(ctx: Context) -> list[Row]:
    rows = []
    batch = 8 if ctx.quick else 32
    for channels, size in ((96, 28), (48, 56)):
        for fmt, layout in ((torch.contiguous_format, "NCHW"), (torch.channels_last, "NHWC")):
            conv = DimensionWiseConv(channels, (size, size)).to(ctx.device)
            depthwise = ConvBnAct(channels, channels, 3, groups=channels, act=nn.PReLU).to(ctx.device)
            conv, depthwise = conv.to(memory_format=fmt), depthwise.to(memory_format=fmt)
            x = torch.randn(batch, channels, size, size, device=ctx.device).contiguous(memory_format=fmt)
            with torch.no_grad():
                torch.testing.assert_close(conv(x), conv.forward_reference(x), rtol=1e-4, atol=1e-4)
            ref = _Reference(conv)
            shape = f"({batch}, {channels}, {size}, {size}) {layout}"
            fwd = compare({"ours": _forward(conv, x), "ref": _forward(ref, x), "dw": _forward(depthwise, x)}, ctx)
            both = compare(
                {
                    "ours": forward_backward(conv, x),
                    "ref": forward_backward(ref, x),
                    "dw": forward_backward(depthwise, x),
                },
                ctx,
            )
            for label, times in (("fwd", fwd), ("fwd+bwd", both)):
                rows.append(
                    Row(
                        GROUP,
                        f"DimConv {label} {shape}",
                        times["ours"] * 1e3,
                        f"ms {label}",
                        "authors' formulation",
                        times["ours"] / times["ref"],
                        "time ours / reference",
                        "< 1",
                        times["ours"] < times["ref"],
                    )
                )
                rows.append(
                    Row(
                        GROUP,
                        f"DimConv / one depth-wise conv, {label} {shape}",
                        times["ours"] / times["dw"],
                        "x",
                        "3x3 depth-wise + BN + PReLU",
                        times["ours"] / times["dw"],
                        "time DimConv / depth-wise",
                        "-> 3 (three branches)",
                        None,
                        f"reference: {times['ref'] / times['dw']:.2f}x",
                    )
                )
    return rows
