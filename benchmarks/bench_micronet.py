"""MicroNet: Dynamic Shift-Max against a depthwise conv and its reference formulation; batch-1 latency.

* operators: the Dynamic Shift-Max fusion (K=2, J=2, the authors' shift) forward+backward, fast path vs the
  gather-and-autograd reference and vs a 3x3 depthwise conv on the same tensor, NCHW and channels_last
  (performance-notes §3 and §6.5: eager Dynamic Shift-Max costs 5-9x a depthwise conv in training; the
  target of the speed work is <= 2x).
* models: MicroNet-M2 vs MobileNetV3-Small 0.5x (about the same top-1 in the paper's Table 7) at batch 1,
  224x224, inference (the paper's Fig. 5 right; on CPU timed on one thread, as the paper does).
"""

from __future__ import annotations

import contextlib

import timm
import torch
from torch import nn

import effconv  # noqa: F401  (registers the models)
from benchmarks.harness import Context, Row, compare, forward_backward
from effconv.ops.dynamic_shift_max import shift_fusion_max, shift_fusion_max_reference


class _Fusion(nn.Module):
    """The fusion alone, with learnable per-sample coefficients, so forward_backward can time it."""

    def __init__(self, n: int, channels: int, groups: int, fast: bool):
        super().__init__()
        self.coef = nn.Parameter(torch.randn(n, 2, 2, channels))
        self.groups, self.fast = groups, fast

    def forward(self, x):
        fn = shift_fusion_max if self.fast else shift_fusion_max_reference
        return fn(x, self.coef, self.groups)


@contextlib.contextmanager
def _threads(n: int | None):
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _operator_rows(ctx: Context) -> list[Row]:
    n, c, h = (8, 96, 28) if ctx.quick else (32, 96, 28)
    rows = []
    for layout in (torch.contiguous_format, torch.channels_last):
        name = "NCHW" if layout is torch.contiguous_format else "channels_last"
        x = torch.randn(n, c, h, h, device=ctx.device).contiguous(memory_format=layout)
        dw = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False).to(ctx.device, memory_format=layout)
        fast = _Fusion(n, c, 8, fast=True).to(ctx.device)
        ref = _Fusion(n, c, 8, fast=False).to(ctx.device)
        times = compare(
            {
                "dw": forward_backward(dw, x),
                "fast": forward_backward(fast, x),
                "reference": forward_backward(ref, x),
            },
            ctx,
        )
        shape = f"({n}, {c}, {h}, {h}) {name}"
        rows.append(
            Row(
                "operators / Dynamic Shift-Max",
                f"fused fwd+bwd, {shape}",
                times["fast"] * 1e3,
                "ms",
                reference="3x3 depthwise conv fwd+bwd",
                ratio=times["fast"] / times["dw"],
                ratio_meaning="of the depthwise conv's time",
                target="<= 2x",
                met=times["fast"] / times["dw"] <= 2.0,
                note="K=2, J=2, G=8, authors' shift",
            )
        )
        rows.append(
            Row(
                "operators / Dynamic Shift-Max",
                f"reference fwd+bwd, {shape}",
                times["reference"] * 1e3,
                "ms",
                reference="fused fwd+bwd",
                ratio=times["reference"] / times["fast"],
                ratio_meaning="slower than the fused path",
                note="gather + autograd, as written",
            )
        )
    return rows


def _latency_rows(ctx: Context) -> list[Row]:
    x = torch.randn(1, 3, 224, 224, device=ctx.device)
    models = {n: timm.create_model(n).eval().to(ctx.device) for n in ("micronet_m2", "mnv3_small_050")}
    with _threads(1 if ctx.device.type == "cpu" else None), torch.inference_mode():
        times = compare({n: (lambda m=m: m(x)) for n, m in models.items()}, ctx)
    threads = "1 thread" if ctx.device.type == "cpu" else ctx.device.type
    return [
        Row(
            "models / MicroNet latency",
            f"MicroNet-M2, batch 1, 224x224, {threads}",
            times["micronet_m2"] * 1e3,
            "ms",
            reference="MobileNetV3-Small 0.5x (mnv3_small_050)",
            ratio=times["micronet_m2"] / times["mnv3_small_050"],
            ratio_meaning="of MobileNetV3's latency",
            note="paper Table 7: 59.4% vs 58.0% top-1 at 12 M vs 21 M MAdds",
        )
    ]


def run(ctx: Context) -> list[Row]:
    return _operator_rows(ctx) + _latency_rows(ctx)
