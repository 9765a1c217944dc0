"""MixConv, mixed depth-wise convolution (Tan & Le, BMVC 2019, Sec. 3), and MixNet's grouped 1x1 conv.

A MixConv splits the channels into g groups and convolves group i (1-based) depth-wise with a
(2i+1) x (2i+1) kernel: 3, 5, 7, ... (paper Sec. 3.2). With g = 1 it is a plain depth-wise conv.

* Channel partition (Sec. 3.2): ``equal`` gives every group floor(C/g) channels and the remainder to the
  first group, as the authors' ``_split_channels`` (tensorflow/tpu mixnet/custom_layers.py) and timm do;
  ``exp`` gives group i about 2^-i of the channels, the last two groups the same share (32 channels, g = 4:
  16, 8, 4, 4 as in the paper's example); each later group gets floor(C * share), at least one channel, and
  the remainder goes to the first group.
* Dilation (Sec. 3.4): a K x K group becomes a 3 x 3 kernel with dilation (K - 1) / 2. The paper uses it only
  in stride-1 layers (TensorFlow's dilated conv has no stride), so a dilated MixConv with stride 2 is refused.
* Two formulations, numerically equivalent (tests/test_mixconv.py checks outputs and gradients):
  ``split`` - split the channels, one depth-wise conv per group, concatenate (the paper's Fig. 3, timm's
  ``MixedConv2d``); ``padded`` - one depth-wise conv over every group's kernel zero-padded (and, when
  dilated, zero-interleaved) to the largest extent. The padded kernel is rebuilt from the per-group weights
  on every call, so the zeros are constants and get no gradient; it costs sum(C) x K_max^2 MACs instead of
  sum(c_i k_i^2) but is a single call. ``impl='auto'`` is the split form on every device (why: ``forward``),
  so runs, DDP ranks and resumes compute the same function, and the forward scripts and fx-traces.
* Cost: ``madds`` reports sum(c_i k_i^2) per output pixel, the formulation-independent cost of the
  operator (the padded zeros are not counted), so profiles do not depend on the device.

``GroupedPointwise`` is the 1x1 conv of MixNet's expand/project layers with g equal channel groups (the
remainder to the first group, on the input and the output side): one grouped ``nn.Conv2d`` call when both
sides divide evenly, else split -> per-group 1x1 -> concatenate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from effconv.ops import register_unit

SPLITS = ("equal", "exp")
IMPLS = ("split", "padded")


def mixconv_kernels(groups: int) -> list[int]:
    """Kernel sizes of a g-group MixConv: group i (1-based) uses 2i + 1 (paper Sec. 3.2)."""
    if groups < 1:
        raise ValueError(f"MixConv needs at least one group, got groups={groups}")
    return [2 * i + 1 for i in range(1, groups + 1)]


def split_channels(channels: int, groups: int, split: str = "equal") -> list[int]:
    """Channels per group, equal or exponential partition (paper Sec. 3.2); remainder to the first group."""
    if split not in SPLITS:
        raise ValueError(f"channel split must be one of {SPLITS}, got '{split}'")
    if channels < groups:
        raise ValueError(f"cannot split {channels} channels into {groups} MixConv groups; use fewer groups")
    if split == "equal":
        shares = [channels // groups] * groups
    else:  # 1/2, 1/4, ..., 2^-(g-1), 2^-(g-1): the last two groups share equally so the shares sum to 1
        fractions = [2.0 ** -(i + 1) for i in range(groups - 1)] + [2.0 ** -(groups - 1)]
        shares = [max(1, int(channels * f)) for f in fractions]
    shares[0] = channels - sum(shares[1:])
    if shares[0] < 1:
        raise ValueError(
            f"exponential split of {channels} channels into {groups} groups leaves none for the "
            "first group; use fewer groups or split=equal"
        )
    return shares


class MixConv(nn.Module):
    """Mixed depth-wise k_i x k_i convolution over channel groups; no bias (a BN follows in every network)."""

    def __init__(
        self,
        channels: int,
        kernel_sizes: int | Sequence[int] = 3,
        stride: int = 1,
        split: str = "equal",
        dilated: bool = False,
        impl: str = "auto",
    ):
        super().__init__()
        kernels = [int(kernel_sizes)] if isinstance(kernel_sizes, int) else [int(k) for k in kernel_sizes]
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"MixConv kernels must be odd and positive, got {kernels}")
        if dilated and stride != 1:
            raise ValueError("a dilated MixConv needs stride 1 (the paper dilates stride-1 layers only)")
        if impl not in (*IMPLS, "auto"):
            raise ValueError(f"MixConv impl must be one of {(*IMPLS, 'auto')}, got '{impl}'")
        self.channels, self.stride, self.impl, self.split = channels, stride, impl, split
        self.kernel_sizes = kernels
        self.splits = split_channels(channels, len(kernels), split)
        # a dilated K x K group is a 3 x 3 kernel with dilation (K - 1) / 2 (paper Sec. 3.4)
        self.dilations = [max(1, (k - 1) // 2) if dilated else 1 for k in kernels]
        taps = [3 if dilated and k > 1 else k for k in kernels]
        self.taps = taps  # kernel side per group, as plain ints: forward needs no tensor shape (fx, script)
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(c, 1, t, t)) for c, t in zip(self.splits, taps)])
        self.extent = max((t - 1) * d + 1 for t, d in zip(taps, self.dilations))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in self.weights:  # nn.Conv2d's default initialisation, per group
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))

    def extra_repr(self) -> str:
        dilated = any(d > 1 for d in self.dilations)
        return (
            f"{self.channels}, kernels={self.kernel_sizes}, splits={self.splits}, stride={self.stride}"
            + (f", dilations={self.dilations}" if dilated else "")
            + f", impl={self.impl}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ``impl`` is a plain attribute (deployment sets it per module), which script and fx read as a constant.
        # 'auto' is the split form on every device, fixed rather than timed at start-up: a per-process probe
        # can pick different forms on different ranks, runs or resumes (their results differ in the last
        # bits), which breaks rank agreement and bit-exact resume. CPU (benchmarks/bench_mixconv.py,
        # performance-notes §6.1): the padded single conv took 1.2-1.8x split's time (0.79-2.5x with glibc
        # malloc, faster only on a stride-2 56x56 {3,5,7} layer). CUDA, not measured yet (gpu_smoke.py times
        # both): split as well, because padded runs every channel through the largest kernel, while torch's
        # native depth-wise CUDA kernels are specialised for 3x3 only (pytorch#1708, #18631: larger kernels
        # take a generic path about 2x slower) and split keeps the 3x3 group, the largest, on the fast one.
        if self.impl == "padded":
            return self.forward_padded(x)
        return self.forward_split(x)

    def forward_split(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.splits, dim=1)
        outs: list[torch.Tensor] = []
        for i, w in enumerate(self.weights):
            d = self.dilations[i]
            outs.append(F.conv2d(parts[i], w, None, self.stride, (self.taps[i] - 1) // 2 * d, d, self.splits[i]))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.padded_weight(), None, self.stride, (self.extent - 1) // 2, 1, groups=self.channels)

    def padded_weight(self) -> torch.Tensor:
        """All groups' kernels as one (C, 1, K, K) depth-wise kernel: dilated taps spread, zeros around."""
        blocks: list[torch.Tensor] = []
        for i, w in enumerate(self.weights):
            d, taps = self.dilations[i], self.taps[i]
            if d > 1:  # d - 1 zeros between taps, with shape ops only (fx traces no item assignment)
                size, c = (taps - 1) * d + 1, self.splits[i]
                w = F.pad(w.unsqueeze(-1), [0, d - 1]).reshape(c, 1, taps, taps * d)[:, :, :, :size]
                w = F.pad(w.unsqueeze(-2), [0, 0, 0, d - 1]).reshape(c, 1, taps * d, size)[:, :, :size]
            pad = (self.extent - (taps - 1) * d - 1) // 2
            blocks.append(F.pad(w, [pad, pad, pad, pad]) if pad else w)
        return torch.cat(blocks, dim=0) if len(blocks) > 1 else blocks[0]

    def madds(self, inputs, output: torch.Tensor) -> int:
        """sum over groups of output elements x taps (the operator's cost, whichever formulation ran)."""
        n, _, h, w = output.shape
        return n * h * w * sum(c * wt.shape[-1] ** 2 for c, wt in zip(self.splits, self.weights))


class GroupedPointwise(nn.Module):
    """1x1 conv with g equal channel groups (MixNet's expand/project); remainder to the first group."""

    def __init__(self, in_ch: int, out_ch: int, groups: int = 1, bias: bool = False):
        super().__init__()
        self.in_splits = split_channels(in_ch, groups)
        self.out_splits = split_channels(out_ch, groups)
        if in_ch % groups == 0 and out_ch % groups == 0:  # one grouped call
            self.convs = nn.ModuleList([nn.Conv2d(in_ch, out_ch, 1, groups=groups, bias=bias)])
        else:
            self.convs = nn.ModuleList([nn.Conv2d(i, o, 1, bias=bias) for i, o in zip(self.in_splits, self.out_splits)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.convs) == 1:
            return self.convs[0](x)
        parts = torch.split(x, self.in_splits, dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.convs, parts)], dim=1)


@register_unit("mixconv")
class MixConvUnit(nn.Sequential):
    """The MixConv unit: MixConv + BN, a drop-in for the depth-wise conv + BN unit ``dw`` (in_ch = out_ch).

    ``kernel_size``: one kernel (a plain depth-wise conv) or the list of group kernels, e.g. [3, 5, 7, 9].
    """

    def __init__(
        self,
        in_ch,
        out_ch,
        stride=1,
        kernel_size=3,
        split: str = "equal",
        dilated: bool = False,
        impl: str = "auto",
    ):
        if in_ch != out_ch:
            raise ValueError(f"a MixConv unit is depth-wise and keeps the width: in_ch={in_ch} != out_ch={out_ch}")
        super().__init__(MixConv(in_ch, kernel_size, stride, split, dilated, impl), nn.BatchNorm2d(in_ch))
