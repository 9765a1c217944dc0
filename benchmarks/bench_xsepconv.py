"""XSepConv: the 2x2 conv without an F.pad copy, and what XSepConv's MAdds saving buys in time.

* one-sided 2x2 depth-wise conv: ``F.pad`` + 2x2 conv (reference) vs the zero-extended 3x3 conv we run;
* Wu et al.'s four-group padding: split + four ``F.pad`` + four convs + concat vs our single conv;
* XSepConv (k = 5) vs the 5x5 depth-wise conv it replaces (+ the host BN), against the 0.56 MAdds ratio;
* the whole MobileNetV3-Small train step (forward + backward), DW vs XSepConv, on CIFAR-size inputs.

Shapes are the middle stage of the paper's network (240 channels at 14x14), channels_last, fwd+bwd.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

import effconv  # noqa: F401  (registers the models)
from benchmarks.harness import Context, Row, compare, forward_backward
from effconv.ops.even_padding import FOUR_GROUPS, EvenKernelDepthwiseConv2d, pad_then_conv
from effconv.ops.xsepconv import XSepConv
from effconv.profile import count_cost

GROUP = "operators / XSepConv"


class _PadThenConv(nn.Module):
    """The reference form around the same weights."""

    def __init__(self, conv: EvenKernelDepthwiseConv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return pad_then_conv(x, self.conv.weight, self.conv.padding)


def _pair(
    ctx: Context,
    name: str,
    ours: nn.Module,
    ref: nn.Module,
    x: torch.Tensor,
    ref_name: str,
    note: str = "",
    target: str = "< 1",
    extra=None,
) -> Row:
    times = compare({"ours": forward_backward(ours, x), "ref": forward_backward(ref, x)}, ctx)
    ratio = times["ours"] / times["ref"]
    met = ratio < 1 if target == "< 1" else None
    return Row(
        GROUP,
        name,
        times["ours"] * 1e3,
        "ms fwd+bwd",
        ref_name,
        ratio,
        "time ours / reference",
        target,
        met,
        note,
        extra or {},
    )


def run(ctx: Context) -> list[Row]:
    device, fmt = ctx.device, torch.channels_last
    batch = ctx.batch(32, 256, quick=8)
    x = torch.randn(batch, 240, 14, 14, device=device).contiguous(memory_format=fmt)
    rows = []
    for padding, label in (("right_bottom", "one-sided"), (FOUR_GROUPS, "four groups (Wu et al.)")):
        conv = EvenKernelDepthwiseConv2d(240, 2, padding).to(device, memory_format=fmt)
        with torch.no_grad():
            assert torch.allclose(conv(x), pad_then_conv(x, conv.weight, padding), atol=1e-5)
        rows.append(
            _pair(
                ctx,
                f"2x2 depth-wise, {label}: zero-extended 3x3",
                conv,
                _PadThenConv(conv),
                x,
                "F.pad + 2x2 conv per direction (+ concat)",
            )
        )
    xsep = nn.Sequential(XSepConv(240, 5, act_layer=nn.Hardswish), nn.BatchNorm2d(240)).to(device, memory_format=fmt)
    dw = nn.Sequential(nn.Conv2d(240, 240, 5, padding=2, groups=240, bias=False), nn.BatchNorm2d(240))
    dw = dw.to(device, memory_format=fmt)
    madds = count_cost(xsep, (240, 14, 14)).madds / count_cost(dw, (240, 14, 14)).madds
    rows.append(
        _pair(
            ctx,
            "XSepConv k=5 (+ host BN)",
            xsep,
            dw,
            x,
            "5x5 depth-wise + BN",
            target="",
            note=f"MAdds ratio {madds:.2f}: three memory-bound convs and two BN + act for one",
            extra={"madds_ratio": madds},
        )
    )
    nets = {
        dw_: timm.create_model("mobilenetv3_small_xsep", conv=dw_, num_classes=10).to(device, memory_format=fmt)
        for dw_ in ("dw", "xsepconv")
    }
    images = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    net_madds = count_cost(nets["xsepconv"], (3, 32, 32)).madds / count_cost(nets["dw"], (3, 32, 32)).madds
    rows.append(
        _pair(
            ctx,
            "MobileNetV3-Small 1.0x train step, 32x32 (stride 8)",
            nets["xsepconv"],
            nets["dw"],
            images,
            "same network with 5x5 depth-wise",
            target="",
            note=f"MAdds ratio {net_madds:.3f}",
            extra={"madds_ratio": net_madds},
        )
    )
    return rows
