"""Dynamic Shift-Max (MicroNet): eager fast path, compiled roll form and the reference vs one depth-wise conv.

performance-notes §3 and §6.5: eager Dynamic Shift-Max costs 5-9x a depth-wise conv in training; the target of
the speed work is <= 2x. Rows (forward + backward, K=2, J=2, G=8, the authors' shift, NCHW and channels_last):

* eager fast path (``shift_fusion_max``: block-wise in-place updates, one autograd Function);
* ``torch.compile`` of the roll form (``shift_fusion_max_rolled``, what runs when the model is compiled),
  with its compile time;
* the gather-and-autograd reference, against the eager fast path.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from benchmarks.harness import Context, Row, compare, forward_backward
from effconv.ops.dynamic_shift_max import (
    shift_fusion_max,
    shift_fusion_max_reference,
    shift_fusion_max_rolled,
)

GROUP = "operators / Dynamic Shift-Max"


class _Fusion(nn.Module):
    """The fusion alone, with learnable per-sample coefficients, so forward_backward can time it."""

    def __init__(self, n: int, channels: int, groups: int, fn):
        super().__init__()
        self.coef = nn.Parameter(torch.randn(n, 2, 2, channels))
        self.groups, self.fn = groups, fn

    def forward(self, x):
        return self.fn(x, self.coef, self.groups)


def run(ctx: Context) -> list[Row]:
    n, c, h = ctx.batch(16, 256, quick=8), 96, 28
    rows = []
    compiled_fn = torch.compile(shift_fusion_max_rolled, dynamic=False)
    for layout in (torch.contiguous_format, torch.channels_last):
        name = "NCHW" if layout is torch.contiguous_format else "channels_last"
        x = torch.randn(n, c, h, h, device=ctx.device).contiguous(memory_format=layout)
        dw = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False).to(ctx.device, memory_format=layout)
        fast = _Fusion(n, c, 8, shift_fusion_max).to(ctx.device)
        ref = _Fusion(n, c, 8, shift_fusion_max_reference).to(ctx.device)
        compiled = _Fusion(n, c, 8, compiled_fn).to(ctx.device)
        start = time.perf_counter()
        forward_backward(compiled, x)()  # compiles forward and backward for this shape
        compile_s = time.perf_counter() - start
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), shift_fusion_max(x, compiled.coef, 8), rtol=1e-4, atol=1e-4)
        times = compare(
            {
                "dw": forward_backward(dw, x),
                "fast": forward_backward(fast, x),
                "compiled": forward_backward(compiled, x),
                "reference": forward_backward(ref, x),
            },
            ctx,
        )
        shape = f"({n}, {c}, {h}, {h}) {name}"
        for key, label in (("fast", "eager fast path"), ("compiled", "torch.compile of the roll form")):
            ratio = times[key] / times["dw"]
            cause = ""
            if ratio > 2 and layout is torch.channels_last:
                cause = (
                    "in channels_last a channel shift is an innermost-dimension gather: every block update "
                    "(eager) or every element (compiled) reads a strided channel run, no contiguous vector loads"
                )
            elif ratio > 2:
                cause = "eager: ~8 separate passes over the activation (shift blocks, K fusions, max, winner)"
            rows.append(
                Row(
                    GROUP,
                    f"{label} fwd+bwd, {shape}",
                    times[key] * 1e3,
                    "ms",
                    reference="3x3 depth-wise conv fwd+bwd",
                    ratio=ratio,
                    ratio_meaning="of the depth-wise conv's time",
                    target="<= 2x",
                    met=ratio <= 2.0,
                    note="K=2, J=2, G=8, authors' shift"
                    + (f"; compile time {compile_s:.1f} s for this shape" if key == "compiled" else ""),
                    cause=cause,
                    extra={"compile_s": compile_s} if key == "compiled" else {},
                )
            )
        rows.append(
            Row(
                GROUP,
                f"reference (gather + autograd) fwd+bwd, {shape}",
                times["reference"] * 1e3,
                "ms",
                reference="eager fast path",
                ratio=times["reference"] / times["fast"],
                ratio_meaning="reference time / fast path (> 1: fast path faster)",
            )
        )
    return rows
