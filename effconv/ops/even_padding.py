"""Depth-wise convolution with even kernels and the padding strategies that fight their shift problem.

An even k x k kernel needs k - 1 padding per axis to keep the map size, so one side gets one zero more than
the other and the output drifts half a pixel away from that side (Wu et al. 2019, "Convolution with
even-sized kernels and symmetric padding", the "shift problem"). Three strategies place that extra zero:

* one-sided: every layer pads right and bottom (features drift to the left-top, layer after layer);
* original symmetric padding (Wu et al.): inside one layer, four channel groups pad right-bottom, left-top,
  left-bottom and right-top, so the layer's output as a whole is centred;
* improved symmetric padding (XSepConv §3.2, Fig. 2b): the i-th even-kernel layer of the network pads in
  direction D[i mod 4], D = (right-bottom, left-top, left-bottom, right-top), so the shifts cancel over
  every four consecutive layers on every path; with N mod 4 = 2 the last two layers are opposite, and with
  N mod 4 = 1 the last layer uses the original four-group padding.

A direction names the sides that get the extra zero (the paper's wording): right-bottom padding shifts the
features towards the left-top.

``EvenKernelDepthwiseConv2d`` runs any of these as ONE depth-wise (k+1) x (k+1) convolution with symmetric
padding k/2, whose kernel holds each channel's k x k weights in the corner its direction implies and zeros
in the remaining row and column. That is exactly the padded k x k convolution (``pad_then_conv`` is the
reference form, and the equivalence is tested) without the padded copy of the input that ``F.pad`` makes
(performance-notes §3 "asymmetric padding" and §6.6; ``benchmarks/bench_xsepconv.py`` measures both), and it
runs Wu et al.'s four-group padding in one call instead of four convs and a concatenation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# D of XSepConv §3.2, in the paper's order: the sides that receive the extra zero
PAD_DIRECTIONS = ("right_bottom", "left_top", "left_bottom", "right_top")
FOUR_GROUPS = "four_groups"  # Wu et al.: four channel groups, one per direction of PAD_DIRECTIONS
PADDING_STRATEGIES = ("improved", "original", "onesided")


def padding_plan(strategy: str, num_layers: int) -> list[str]:
    """The padding of each of a network's ``num_layers`` even-kernel layers, in forward order."""
    if strategy == "onesided":
        return ["right_bottom"] * num_layers
    if strategy == "original":
        return [FOUR_GROUPS] * num_layers
    if strategy == "improved":
        plan = [PAD_DIRECTIONS[i % 4] for i in range(num_layers)]
        if num_layers % 4 == 1:  # XSepConv §3.2: the odd last layer is made symmetric on its own
            plan[-1] = FOUR_GROUPS
        return plan
    raise ValueError(f"padding must be one of {', '.join(PADDING_STRATEGIES)}, got '{strategy}'")


def channel_directions(channels: int, padding: str) -> list[str]:
    """Direction of every channel: one direction for all, or four contiguous near-equal groups."""
    if padding == FOUR_GROUPS:
        return [PAD_DIRECTIONS[c * 4 // channels] for c in range(channels)]
    if padding not in PAD_DIRECTIONS:
        raise ValueError(
            f"even-kernel padding must be one of {', '.join(PAD_DIRECTIONS)} or {FOUR_GROUPS}, got '{padding}'"
        )
    return [padding] * channels


def direction_runs(directions: list[str]) -> list[tuple[int, int, str]]:
    """(start, stop, direction) of each run of consecutive channels padded alike."""
    runs = []
    for c, direction in enumerate(directions):
        if runs and runs[-1][2] == direction:
            runs[-1] = (runs[-1][0], c + 1, direction)
        else:
            runs.append((c, c + 1, direction))
    return runs


def input_padding(direction: str, kernel_size: int) -> tuple[int, int, int, int]:
    """``F.pad`` amounts (left, right, top, bottom) that keep the size: the named sides get k/2."""
    half = kernel_size // 2
    right, bottom = "right" in direction, "bottom" in direction
    return (half - right, half - 1 + right, half - bottom, half - 1 + bottom)


def _kernel_corner(direction: str) -> tuple[int, int, int, int]:
    """Zero column/row added to a k x k kernel to make the equivalent (k+1) x (k+1) one: the weights sit on
    the padded side, because the symmetric k/2 padding reads one pixel further on that side."""
    right, bottom = int("right" in direction), int("bottom" in direction)
    return (right, 1 - right, bottom, 1 - bottom)


class EvenKernelDepthwiseConv2d(nn.Module):
    """k x k depth-wise convolution, k even, stride 1, same-size output, padded one-sidedly per channel.

    ``padding`` is a direction of ``PAD_DIRECTIONS`` (all channels) or ``FOUR_GROUPS`` (Wu et al.). The
    parameter is the k x k weight, as in ``nn.Conv2d``; the MAdds reported are those of the k x k conv
    (k^2 per output element), not of the zero-extended kernel that runs it.
    """

    def __init__(self, channels: int, kernel_size: int = 2, padding: str = "right_bottom"):
        super().__init__()
        if kernel_size % 2 or kernel_size < 2:
            raise ValueError(f"EvenKernelDepthwiseConv2d needs an even kernel size >= 2, got {kernel_size}")
        self.channels, self.kernel_size, self.padding = channels, kernel_size, padding
        self.runs = direction_runs(channel_directions(channels, padding))
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # TF/timm depth-wise init: normal with std sqrt(2 / fan_out), fan_out = k * k per group
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / self.kernel_size**2))

    def zero_extended_kernel(self) -> torch.Tensor:
        """The (k+1) x (k+1) depth-wise kernel equal to this layer under symmetric padding k/2."""
        if len(self.runs) == 1:
            return F.pad(self.weight, _kernel_corner(self.runs[0][2]))
        return torch.cat([F.pad(self.weight[a:b], _kernel_corner(d)) for a, b, d in self.runs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.zero_extended_kernel(), padding=self.kernel_size // 2, groups=self.channels)

    def madds(self, inputs, output) -> int:
        return output.numel() * self.kernel_size**2

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, padding={self.padding}"


def pad_then_conv(x: torch.Tensor, weight: torch.Tensor, padding: str) -> torch.Tensor:
    """Reference form: ``F.pad`` every channel one-sidedly (per its direction), then a k x k depth-wise conv.

    Slow (a padded copy per direction, one conv per group, a concatenation); kept to test the fast form.
    """
    kernel_size = weight.shape[-1]
    outputs = [
        F.conv2d(F.pad(x[:, a:b], input_padding(d, kernel_size)), weight[a:b], groups=b - a)
        for a, b, d in direction_runs(channel_directions(x.shape[1], padding))
    ]
    return torch.cat(outputs, dim=1)
