"""Depthwise Multiception: what its extra MAdds cost in time, and whether branches + concat is the fast form.

* units: Multiception vs the authors' DSConv and a standard 3x3 conv (forward + backward) at ResNet-20 shapes,
  beside the MAdds ratio, so time and the counted cost can be compared;
* formulation: our per-kernel depth-wise convs + concat vs the same function as one depth-wise conv with
  |K| outputs per channel and the kernels zero-padded to the largest (exact up to the order of the
  concatenated channels; more MAdds unless every kernel has the same size, as in stage 3's {3, 3});
* networks: a ResNet-20 training step (forward + backward) with each conv type.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.harness import Context, Row, compare, forward_backward
from effconv.models.cifar_resnet import CifarResNet
from effconv.ops import create_unit
from effconv.profile import count_cost

GROUP = "operators / Multiception"


class PaddedSingleConv(nn.Module):
    """Multiception's depth-wise part as one conv: C groups, |K| outputs each, kernels padded to the largest.

    Channel i·|K| + j holds kernel j of input channel i (our concat holds it at j·C + i)."""

    def __init__(self, channels: int, kernels: list[int]):
        super().__init__()
        size = max(kernels)
        weight = torch.zeros(channels * len(kernels), 1, size, size)
        for i, k in enumerate(kernels):
            start = (size - k) // 2
            weight[i :: len(kernels), :, start : start + k, start : start + k] = torch.randn(channels, 1, k, k)
        self.weight = nn.Parameter(weight)
        self.groups, self.padding = channels, size // 2

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=self.padding, groups=self.groups)


class BranchConcat(nn.Module):
    def __init__(self, channels: int, kernels: list[int]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, k, 1, k // 2, groups=channels, bias=False) for k in kernels
        )

    def forward(self, x):
        return torch.cat([c(x) for c in self.convs], 1)


def _prepare(module: nn.Module, x: torch.Tensor, ctx: Context):
    module = module.to(ctx.device, memory_format=torch.channels_last)
    return forward_backward(module, x.to(ctx.device).contiguous(memory_format=torch.channels_last))


def _ratio_rows(what: str, times: dict[str, float], madds: dict[str, int], reference: str) -> list[Row]:
    rows = []
    for name, seconds in times.items():
        if name == reference:
            continue
        note = f"MAdds ratio {madds[name] / madds[reference]:.2f}x" if madds else ""
        rows.append(
            Row(
                GROUP,
                f"{what}: {name}",
                seconds * 1e3,
                "ms",
                reference=reference,
                ratio=seconds / times[reference],
                ratio_meaning="time vs reference",
                note=note,
            )
        )
    return rows


def units(ctx: Context) -> list[Row]:
    rows = []
    batch = ctx.batch(64, 512, quick=16)
    for label, (c_in, c_out, stride, kernels) in {
        "stage 1, 16->16, {3,5,7}": (16, 16, 1, [3, 5, 7]),
        "stage 2 entry, 16->32 stride 2, {3,5}": (16, 32, 2, [3, 5]),
    }.items():
        x = torch.randn(batch, c_in, 32, 32)
        built = {
            "multiception": create_unit("multiception", c_in, c_out, stride, kernels),
            "dsconv": create_unit("dsconv", c_in, c_out, stride, 3),
            "standard": create_unit("standard", c_in, c_out, stride, 3),
        }
        madds = {name: count_cost(m, (c_in, 32, 32)).madds for name, m in built.items()}
        times = compare({name: _prepare(m, x, ctx) for name, m in built.items()}, ctx)
        rows += _ratio_rows(f"unit fwd+bwd, {label}", times, madds, "dsconv")
    return rows


def formulation(ctx: Context) -> list[Row]:
    rows = []
    batch = ctx.batch(64, 512, quick=16)
    for kernels, channels, size in (([3, 5, 7], 16, 32), ([3, 5], 32, 32), ([3, 3], 64, 8)):
        x = torch.randn(batch, channels, size, size)
        built = {
            "branches + concat (ours)": BranchConcat(channels, kernels),
            "one zero-padded conv": PaddedSingleConv(channels, kernels),
        }
        madds = {
            "branches + concat (ours)": channels * sum(k * k for k in kernels),
            "one zero-padded conv": channels * len(kernels) * max(kernels) ** 2,
        }
        times = compare({name: _prepare(m, x, ctx) for name, m in built.items()}, ctx)
        rows += _ratio_rows(
            f"depth-wise part {kernels}, C={channels}, {size}x{size}",
            times,
            madds,
            "branches + concat (ours)",
        )
    return rows


def networks(ctx: Context) -> list[Row]:
    batch = ctx.batch(32, 512, quick=8)
    x = torch.randn(batch, 3, 32, 32)
    built = {conv: CifarResNet(3, conv=conv) for conv in ("standard", "dsconv", "multiception")}
    madds = {conv: count_cost(m, (3, 32, 32)).madds for conv, m in built.items()}
    times = compare({conv: _prepare(m.train(), x, ctx) for conv, m in built.items()}, ctx)
    return _ratio_rows(f"ResNet-20 train step (fwd+bwd), batch {batch}", times, madds, "standard")


def run(ctx: Context) -> list[Row]:
    return units(ctx) + formulation(ctx) + networks(ctx)
