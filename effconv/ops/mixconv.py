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
  sum(c_i k_i^2) but is a single call. ``impl='auto'`` picks per device: from ``MEASURED_IMPL`` where this
  project has measured that device type (benchmarks/bench_mixconv.py), otherwise by a one-time probe of
  both formulations on the first input of each shape (see ``choose_impl``).
* Cost: ``madds`` reports sum(c_i k_i^2) per output pixel, the formulation-independent cost of the
  operator (the padded zeros are not counted), so profiles do not depend on the device.

``GroupedPointwise`` is the 1x1 conv of MixNet's expand/project layers with g equal channel groups (the
remainder to the first group, on the input and the output side): one grouped ``nn.Conv2d`` call when both
sides divide evenly, else split -> per-group 1x1 -> concatenate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from effconv.ops import register_unit

SPLITS = ("equal", "exp")
IMPLS = ("split", "padded")

# The formulation to use per device type, measured with benchmarks/bench_mixconv.py (fwd+bwd, channels_last,
# fp32, MixNet-S's six largest mixed layers, batch 32). CPU (2-core EPYC VM, 1 thread, glibc malloc): the
# padded single conv took 0.79-2.5x the split form's time, faster only on the stride-2 56x56 {3,5,7} layer;
# performance-notes §6.1 (jemalloc): 1.2-1.8x slower everywhere. Device types absent here (CUDA: not yet
# measured) are probed once per layer shape (choose_impl).
MEASURED_IMPL: dict[str, str] = {"cpu": "split"}


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
        if not torch.jit.is_scripting():  # noqa: SIM102  (alone, so TorchScript skips the block)
            if not isinstance(x, torch.fx.Proxy):
                impl = self.impl if self.impl != "auto" else choose_impl(self, x)
                return self.forward_split(x) if impl == "split" else self.forward_padded(x)
        # TorchScript and torch.fx: the split form, indexed (choose_impl's timing probe runs eagerly only)
        parts = torch.split(x, self.splits, dim=1)
        outs = []
        for i, w in enumerate(self.weights):
            d = self.dilations[i]
            outs.append(F.conv2d(parts[i], w, None, self.stride, (w.shape[-1] - 1) // 2 * d, d, w.shape[0]))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    def forward_split(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.splits, dim=1) if len(self.splits) > 1 else (x,)
        outs = [
            F.conv2d(p, w, None, self.stride, (w.shape[-1] - 1) // 2 * d, d, groups=w.shape[0])
            for p, w, d in zip(parts, self.weights, self.dilations)
        ]
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.padded_weight(), None, self.stride, (self.extent - 1) // 2, 1, groups=self.channels)

    def padded_weight(self) -> torch.Tensor:
        """All groups' kernels as one (C, 1, K, K) depth-wise kernel: dilated taps spread, zeros around."""
        blocks = []
        for w, d in zip(self.weights, self.dilations):
            if d > 1:
                taps = w.shape[-1]
                spread = w.new_zeros(w.shape[0], 1, (taps - 1) * d + 1, (taps - 1) * d + 1)
                spread[:, :, ::d, ::d] = w
                w = spread
            pad = (self.extent - w.shape[-1]) // 2
            blocks.append(F.pad(w, (pad, pad, pad, pad)) if pad else w)
        return torch.cat(blocks, dim=0) if len(blocks) > 1 else blocks[0]

    def madds(self, inputs, output: torch.Tensor) -> int:
        """sum over groups of output elements x taps (the operator's cost, whichever formulation ran)."""
        n, _, h, w = output.shape
        return n * h * w * sum(c * wt.shape[-1] ** 2 for c, wt in zip(self.splits, self.weights))


_PROBED: dict[tuple, str] = {}
PROBE_REPEATS = 5


def choose_impl(module: MixConv, x: torch.Tensor) -> str:
    """The formulation for this device: measured per device type, else a one-time probe per layer shape.

    The probe times forward (+ backward when gradients are on) of both formulations on a copy of the first
    input of that shape, best of ``PROBE_REPEATS`` after a warm-up, and caches the winner for the process.
    It is skipped (split form, timm's) while tracing for torch.compile or capturing a CUDA graph.
    """
    measured = MEASURED_IMPL.get(x.device.type)
    if measured is not None:
        return measured
    if torch.compiler.is_compiling() or (x.is_cuda and torch.cuda.is_current_stream_capturing()):
        return "split"
    key = (
        str(x.device),
        x.dtype,
        tuple(x.shape),
        x.is_contiguous(memory_format=torch.channels_last),
        torch.is_grad_enabled(),
        tuple(module.splits),
        tuple(module.kernel_sizes),
        tuple(module.dilations),
        module.stride,
    )
    if key not in _PROBED:
        _PROBED[key] = _probe(module, x)
    return _PROBED[key]


def _probe(module: MixConv, x: torch.Tensor) -> str:
    train = torch.is_grad_enabled()
    sample = x.detach().clone().requires_grad_(train)
    timings = {}
    for name, fn in (("split", module.forward_split), ("padded", module.forward_padded)):
        best = math.inf
        for i in range(PROBE_REPEATS + 1):
            _sync(x.device)
            start = time.perf_counter()
            out = fn(sample)
            if train:
                torch.autograd.grad(out.sum(), [t for t in (sample, *module.weights) if t.requires_grad])
            _sync(x.device)
            if i:  # the first call is the warm-up
                best = min(best, time.perf_counter() - start)
        timings[name] = best
    return min(timings, key=timings.get)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
