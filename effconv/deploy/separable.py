"""A k x 1 conv followed by a 1 x k conv (BatchNorm folded between them) composed into one k x k conv.

MicroNet factorises its stem (a 3x1 conv, then a 1x3 group conv that widens each channel) and every depth-wise
conv (k x 1, then 1 x k: Micro-Factorized depthwise, Sec. 3.2) this way to save multiply-adds. At inference on a
CPU the saving is smaller than the cost of the second pass over the activation and of the narrow intermediate
tensor (the stem's 3x1 conv writes 4 channels at 112 x 224), so the pair is composed back:

    K[o, c, dy, dx] = B[o, dx] * A[g(o), c, dy]        g(o): the channel of A that output o of B reads

which requires B to read one channel of A per output (groups == its input channels). A's bias (its folded
BatchNorm) is the one term that does not compose into a bias: B pads A's output with zeros, so the columns
where B's kernel overhangs the border see less of it. That term does not depend on the input, only on the
width; it is B applied to a row of A's biases (``border_row``), computed per call on one row of values (an
exporter folds it into a constant) and added. Exact for any input size.

Only pairs where nothing else reads A's output are composed (``effconv.deploy.dataflow``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from effconv.deploy.dataflow import Dataflow, replace_module


class ComposedSeparableConv(nn.Module):
    """conv_B(conv_A(x)) for a k x 1 conv A and a 1 x k conv B that reads one channel of A per output."""

    def __init__(self, first: nn.Conv2d, second: nn.Conv2d):
        super().__init__()
        multiplier = second.out_channels // second.in_channels
        source = torch.arange(second.out_channels) // multiplier  # channel of A each output reads
        a = first.weight.detach()[source]  # (out, in / groups_A, kh, 1)
        b = second.weight.detach()  # (out, 1, 1, kw)
        self.weight = nn.Parameter(a * b, requires_grad=False)  # (out, in / groups_A, kh, kw)
        self.stride = (first.stride[0], second.stride[1])
        self.padding = (first.padding[0], second.padding[1])
        self.groups = first.groups
        self.kernel_width, self.second_stride = second.kernel_size[1], second.stride[1]
        a_bias = first.bias.detach()[source] if first.bias is not None else torch.zeros(second.out_channels)
        self.register_buffer("first_bias", a_bias.to(self.weight).clone())  # A's bias, per output of B
        self.register_buffer("second_weight", b.clone())
        self.register_buffer("second_bias", None if second.bias is None else second.bias.detach().clone())

    def border_row(self, width: int) -> torch.Tensor:
        """(1, out, 1, output width): B applied to one zero-padded row of A's biases, plus B's own bias."""
        channels = self.first_bias.shape[0]
        row = self.first_bias.view(1, channels, 1, 1).expand(1, channels, 1, width)
        stride, padding = (1, self.second_stride), (0, self.padding[1])
        return F.conv2d(row, self.second_weight, self.second_bias, stride, padding, 1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight, None, self.stride, self.padding, 1, self.groups)
        return out + self.border_row(x.shape[3])

    def permute_output(self, order: torch.Tensor) -> None:
        if self.groups != 1:
            raise ValueError("only a composed conv without groups can permute its outputs")
        with torch.no_grad():
            self.weight.copy_(self.weight[order])
        self.first_bias = self.first_bias[order]
        self.second_weight = self.second_weight[order]
        if self.second_bias is not None:
            self.second_bias = self.second_bias[order]


def _composable(first: nn.Module, second: nn.Module) -> bool:
    if type(first) is not nn.Conv2d or type(second) is not nn.Conv2d:
        return False
    return (
        first.kernel_size[1] == 1
        and first.stride[1] == 1
        and first.padding[1] == 0
        and second.kernel_size[0] == 1
        and second.stride[0] == 1
        and second.padding[0] == 0
        and first.dilation == second.dilation == (1, 1)
        and first.padding_mode == second.padding_mode == "zeros"
        and second.groups == second.in_channels == first.out_channels
        and second.out_channels % second.in_channels == 0
    )


def compose_separable(model: nn.Module, flow: Dataflow, depthwise: bool = True) -> int:
    """Compose every k x 1 -> 1 x k conv pair whose intermediate only the second conv reads; returns the count.

    ``depthwise=False`` composes only pairs whose first conv is not depth-wise (MicroNet's stem)."""
    composed = 0
    for second in [m for m in model.modules() if isinstance(m, nn.Conv2d)]:
        source = flow.first_input.get(id(second))
        first = flow.producer.get(id(source)) if source is not None else None
        if first is None or not _composable(first, second) or not flow.feeds(first, second):
            continue
        if not depthwise and first.groups == first.in_channels and first.groups > 1:
            continue
        replace_module(model, first, nn.Identity())
        replace_module(model, second, ComposedSeparableConv(first, second))
        composed += 1
    return composed
