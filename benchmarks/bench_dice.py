"""DimConv and the DiCE unit: our formulations vs the authors' and vs one depth-wise conv (fwd + bwd).

performance-notes 6.2 found DimConv as the authors wrote it at 5-9x the time of one depth-wise conv (3x would
be ideal: three branches of equal cost), the excess being layout copies. Rows, in NCHW and channels_last:

* DimConv as the DiCE unit runs it (``forward_planes``: three convs on zero-copy views, BN + PReLU per
  branch, no interleave) / one 3x3 depth-wise conv + BN + PReLU on the same tensor: target <= 4x;
* the DimConv module with its interleaved 3C output (``forward``, what the other fusions read) and the
  authors' formulation, both against the same depth-wise conv;
* the DiCE unit (DimConv + DimFuse) ours / the authors' formulation (transposes, concat, shuffle, grouped 1x1).

All formulations share parameters and are checked equal before timing. Shapes: DiCENet's level-3 size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.harness import Context, FunctionModule, Row, compare, forward_backward
from effconv.ops.common import ConvBnAct
from effconv.ops.dice import DiceUnit
from effconv.ops.dimconv import height_wise_conv, width_wise_conv

GROUP = "operators / DimConv"


class _Planes(nn.Module):
    """DimConv's three normalised planes summed into one output, so forward_backward can time them."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return _sum(self.conv.forward_planes(x))


def _sum(planes):
    # the unit's next op reads all three planes once (a weighted sum): time that read, not a copy
    return planes[0] + planes[1] + planes[2]


class _Reference(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv.forward_reference(x)


class _ReferenceUnit(nn.Module):
    def __init__(self, unit: DiceUnit):
        super().__init__()
        self.unit = unit

    def forward(self, x):
        return self.unit.fusion(self.unit.spatial.forward_reference(self.unit.pool(x)))


def _components(conv, depthwise: nn.Module) -> dict[str, nn.Module]:
    """The pieces of both sides, timed alone, so a missed target names what costs."""
    pad = conv.kernel_size // 2
    return {
        "c_depth": FunctionModule(lambda x: F.conv2d(x, conv.weight_depth, padding=pad, groups=conv.channels)),
        "c_height": FunctionModule(lambda x: height_wise_conv(x, conv.weight_height, pad)),
        "c_width": FunctionModule(lambda x: width_wise_conv(x, conv.weight_width, pad)),
        "c_normact": FunctionModule(lambda x: conv._norm_act(x, 0)),
        "c_dw_conv": depthwise[0],
        "c_dw_normact": nn.Sequential(depthwise[1], depthwise[2]),
    }


def _cause(times: dict) -> str:
    ms = {k: v * 1e3 for k, v in times.items()}
    return (
        f"per piece (fwd+bwd, ms): depth-wise branch {ms['c_depth']:.1f}, height-wise {ms['c_height']:.1f} and "
        f"width-wise {ms['c_width']:.1f} (convs on transposed views), BN + PReLU {ms['c_normact']:.1f} per plane "
        f"x 3; the reference is conv {ms['c_dw_conv']:.1f} + BN + PReLU {ms['c_dw_normact']:.1f}: the transposed "
        "branches and PReLU's backward (slow on CPU) set the ratio, not copies"
    )


def run(ctx: Context) -> list[Row]:
    rows = []
    batch = ctx.batch(16, 256, quick=8)
    channels, size = 96, 28
    for fmt, layout in ((torch.contiguous_format, "NCHW"), (torch.channels_last, "channels_last")):
        unit = DiceUnit(channels, channels, input_size=(size, size)).to(ctx.device, memory_format=fmt)
        conv = unit.spatial
        depthwise = ConvBnAct(channels, channels, 3, groups=channels, act=nn.PReLU)
        depthwise = depthwise.to(ctx.device, memory_format=fmt)
        x = torch.randn(batch, channels, size, size, device=ctx.device).contiguous(memory_format=fmt)
        with torch.no_grad():
            torch.testing.assert_close(conv(x), conv.forward_reference(x), rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(unit(x), _ReferenceUnit(unit)(x), rtol=1e-4, atol=1e-4)
        times = compare(
            {
                "planes": forward_backward(_Planes(conv), x),
                "module": forward_backward(conv, x),
                "ref": forward_backward(_Reference(conv), x),
                "dw": forward_backward(depthwise, x),
                "unit": forward_backward(unit, x),
                "unit_ref": forward_backward(_ReferenceUnit(unit), x),
                **{k: forward_backward(m, x) for k, m in _components(conv, depthwise).items()},
            },
            ctx,
        )
        shape = f"({batch}, {channels}, {size}, {size}) {layout}"
        ratio = times["planes"] / times["dw"]
        rows.append(
            Row(
                GROUP,
                f"DimConv in the DiCE unit (no interleave) / one depth-wise conv, fwd+bwd {shape}",
                times["planes"] * 1e3,
                "ms",
                "3x3 depth-wise + BN + PReLU",
                ratio,
                "time DimConv / depth-wise",
                "<= 4x (3x ideal)",
                ratio <= 4.0,
                f"module with interleaved output: {times['module'] / times['dw']:.2f}x; authors' "
                f"formulation: {times['ref'] / times['dw']:.2f}x",
                extra={k: v * 1e3 for k, v in times.items()},
                cause=_cause(times) if ratio > 4 else "",
            )
        )
        ratio = times["module"] / times["ref"]
        rows.append(
            Row(
                GROUP,
                f"DimConv module (interleaved 3C output), fwd+bwd {shape}",
                times["module"] * 1e3,
                "ms",
                "authors' formulation (transposes, contiguous copies, concat, shuffle)",
                ratio,
                "time ours / reference",
                "< 1",
                ratio < 1,
            )
        )
        ratio = times["unit"] / times["unit_ref"]
        rows.append(
            Row(
                GROUP,
                f"DiCE unit (DimConv + DimFuse), fwd+bwd {shape}",
                times["unit"] * 1e3,
                "ms",
                "same unit on the authors' DimConv",
                ratio,
                "time ours / reference",
                "< 1",
                ratio < 1,
            )
        )
    return rows
