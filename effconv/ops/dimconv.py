"""Dimension-wise convolution (DimConv), DiCENet paper Sec. 3.1 and Fig. 3 (Mehta et al., TPAMI).

Three n x n filters run on the same input X (C x H x W):

* depth-wise: C kernels, one per channel, sliding over the (H, W) plane (a plain depth-wise conv);
* height-wise: H kernels, one per row, sliding over the (C, W) plane;
* width-wise: W kernels, one per column, sliding over the (H, C) plane.

As in the authors' code (EdgeNets ``nn_layers/dice.py``), the height- and width-wise filters are grouped
2-D convolutions with H (or W) groups on the tensor with the channel axis swapped for the height (or width)
axis. Their weights therefore depend on the resolution the unit is built for (``input_size``): the weight
count is n^2 (C + H + W) and the cost n^2 C H W per branch. The three responses of every channel are
interleaved, (d_0, h_0, w_0, d_1, ...), which is the paper's concatenation "such that the first spatial plane
of Y_D, Y_W and Y_H are put together", then BN + PReLU over the 3C channels.

Input-size adaptivity (paper Sec. 3.3, Fig. 5; authors' forward): at a runtime height different from the
build height, the height-wise branch resamples its input along the height to the build height (bilinear with
align_corners=True when the runtime height is smaller, adaptive average pooling when it is larger), convolves,
and resamples its output back the same way; the width-wise branch does the same along the width. The
resampling is not counted in MAdds (it is not in the authors' count either); the convolutions are, at the size
they actually run.

Two formulations share one set of parameters:

* ``forward`` avoids the copies of the authors' formulation (performance-notes 6.2: the copies, not the
  convolutions, make DimConv 5-9x one depth-wise conv). For an NCHW input the width-wise branch runs on a
  zero-copy channels_last view (N, W, C, H); for a channels_last input the height-wise branch runs on the
  contiguous view (N, H, W, C); kernels are transposed accordingly (9 values per row or column). The three
  outputs are interleaved by a single ``torch.stack`` in the input's layout, which replaces the
  concatenation and the group-3 channel shuffle of the reference.
* ``forward_planes`` goes one step further for the DiCE unit: it never interleaves. BN + PReLU run on each
  branch with the parameters (and running statistics) of that branch's channels (every third of the 3C), and
  the three normalised planes go to DimFuse, whose local fusion (a grouped 1x1 conv with C groups of the three
  planes of one channel) is then a per-channel weighted sum of the planes: the 3C interleave copy is folded
  into the fusion weights and never made (benchmarks/bench_dice.py).
* ``forward_reference`` is the authors' formulation: explicit transposes with ``.contiguous()``, three convs,
  concatenation [depth, height, width], group-3 channel shuffle. Kept for the equivalence test.

BN and PReLU are per channel, so applying them after the shuffle (both formulations here) equals the
authors' order (BN + PReLU, then shuffle) with the parameters permuted accordingly.

Tracing and scripting: the resampling, the layout-dependent height-/width-wise convs and the input check
branch on the runtime shape or memory format, so they are leaf functions for torch.fx and timm's fx
feature extraction (``torch.fx.wrap`` / ``register_notrace_function``); a traced DimConv resamples at any
input size as the eager one does. Everything here compiles with TorchScript.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from torch import nn

from effconv.ops.common import channel_shuffle, interleave

torch.fx.wrap("interleave")  # a leaf where DimConv calls it (see effconv.ops.common)


@register_notrace_function
@torch.fx.wrap
def resample_axis(x: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """Resize ``x`` along height (axis 2) or width (axis 3) only, the authors' way.

    Up: bilinear, align_corners=True. Down: adaptive average pooling. Unchanged when the size matches.
    """
    current = x.shape[axis]
    if current == size:
        return x
    target = [size, x.shape[3]] if axis == 2 else [x.shape[2], size]
    if current < size:
        return F.interpolate(x, size=target, mode="bilinear", align_corners=True)
    return F.adaptive_avg_pool2d(x, target)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


@register_notrace_function
@torch.fx.wrap
def height_wise_conv(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-row n x n conv over the (C, W) plane; ``weight`` (H, 1, n_C, n_W) as in the authors' layout."""
    rows = weight.shape[0]
    if _is_channels_last(x):
        # NHWC storage viewed as (N, H, W, C) is contiguous: convolve there with the kernel's axes swapped
        out = F.conv2d(x.permute(0, 2, 3, 1), weight.transpose(2, 3), padding=padding, groups=rows)
        return out.permute(0, 3, 1, 2)
    return F.conv2d(x.transpose(1, 2), weight, padding=padding, groups=rows).transpose(1, 2)


@register_notrace_function
@torch.fx.wrap
def width_wise_conv(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-column n x n conv over the (H, C) plane; ``weight`` (W, 1, n_H, n_C) as in the authors' layout."""
    cols = weight.shape[0]
    if x.is_contiguous():
        # NCHW storage viewed as (N, W, C, H) is channels_last: convolve there with the kernel's axes swapped
        out = F.conv2d(x.permute(0, 3, 1, 2), weight.transpose(2, 3), padding=padding, groups=cols)
        return out.permute(0, 2, 3, 1)
    return F.conv2d(x.transpose(1, 3), weight, padding=padding, groups=cols).transpose(1, 3)


class DimensionWiseConv(nn.Module):
    """DimConv: C -> 3C interleaved channels (depth-, height-, width-wise n x n), then BN + PReLU.

    ``input_size`` (H, W) is the resolution the unit is built for; ``resample=False`` makes a runtime size
    that differs from it an error instead of resampling (paper Sec. 3.3).
    """

    def __init__(self, channels: int, input_size: Sequence[int], kernel_size: int = 3, resample: bool = True):
        super().__init__()
        height, width = size_pair(input_size)
        if kernel_size % 2 != 1:
            raise ValueError(f"DimConv needs an odd kernel size, got {kernel_size}")
        self.channels, self.height, self.width = channels, height, width
        self.kernel_size, self.resample = kernel_size, resample
        k = kernel_size
        self.weight_depth = nn.Parameter(torch.empty(channels, 1, k, k))
        self.weight_height = nn.Parameter(torch.empty(height, 1, k, k))  # kernel over (C, W)
        self.weight_width = nn.Parameter(torch.empty(width, 1, k, k))  # kernel over (H, C)
        self.norm = nn.BatchNorm2d(3 * channels)
        self.act = nn.PReLU(3 * channels)
        for weight in (self.weight_depth, self.weight_height, self.weight_width):
            # the authors' init (Kaiming normal, fan_out of the grouped conv's weight tensor)
            nn.init.kaiming_normal_(weight, mode="fan_out")

    def extra_repr(self) -> str:
        return f"{self.channels}, input_size=({self.height}, {self.width}), kernel_size={self.kernel_size}"

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_input(x, self.channels, self.height, self.width, self.resample)
        pad = self.kernel_size // 2
        height, width = x.shape[2], x.shape[3]
        depth = F.conv2d(x, self.weight_depth, padding=pad, groups=self.channels)
        h = height_wise_conv(resample_axis(x, self.height, 2), self.weight_height, pad)
        w = width_wise_conv(resample_axis(x, self.width, 3), self.weight_width, pad)
        return depth, resample_axis(h, height, 2), resample_axis(w, width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        depth, h, w = self.branches(x)
        return self.act(self.norm(interleave([depth, h, w])))

    def forward_planes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[depth, height, width] responses, each after BN + PReLU: ``forward`` = their interleave."""
        if not self.planes_are_exact():
            # ``norm`` / ``act`` must run as modules: the interleaved forward, its branches as strided views
            # (channel 3i + b is channel i of branch b)
            out = self.forward(x)
            return [out[:, b::3] for b in range(3)]
        planes = self.branches(x)
        if self.norm.training and self.norm.track_running_stats:
            self.norm.num_batches_tracked.add_(1)
        return [self._norm_act(t, b) for b, t in enumerate(planes)]

    def planes_are_exact(self) -> bool:
        """Whether ``_norm_act`` computes what ``norm`` and ``act`` would: only for the plain, unhooked classes.

        ``_norm_act`` calls ``F.batch_norm`` with ``norm``'s tensors, so a converted norm never runs there: a
        ``SyncBatchNorm`` (DDP with sync_bn=true) or effconv.engine.sync_bn's CPU global-statistics class would
        silently normalise with this rank's batch alone and its running statistics drift apart between ranks.
        Those take the interleaved path, where the module runs, with one all-reduce for the 3C channels (three
        per-branch calls would need three). Single-process training keeps the plane path (no interleave copy).
        """
        norm, act = self.norm, self.act
        return (
            type(norm) is nn.BatchNorm2d
            and type(act) is nn.PReLU
            and not (norm._forward_hooks or norm._forward_pre_hooks or act._forward_hooks or act._forward_pre_hooks)
        )

    def _norm_act(self, t: torch.Tensor, branch: int) -> torch.Tensor:
        """BN + PReLU of one branch: channel i of the branch is channel 3i + branch of ``norm`` / ``act``.

        Every per-channel vector goes in as a contiguous copy (C values): with strided views torch 2.15 takes
        slow paths (PReLU's backward ~1.5x, batch_norm's ~1.5x) and its channels_last batch_norm backward
        reads a strided weight as if it were contiguous (wrong gradients; tests/test_fast_ops.py). Updated
        running statistics are written back into the branch's slots.
        """
        bn, take = self.norm, slice(branch, None, 3)
        momentum = bn.momentum
        if bn.training and bn.track_running_stats and momentum is None:  # cumulative average, as nn.BatchNorm
            momentum = 1.0 / float(bn.num_batches_tracked)
        use_batch = bn.training or bn.running_mean is None
        stats = (None, None)
        if bn.running_mean is not None:
            stats = (bn.running_mean[take].clone(), bn.running_var[take].clone())
        out = F.batch_norm(
            t, *stats, bn.weight[take].contiguous(), bn.bias[take].contiguous(), use_batch, momentum or 0.0, bn.eps
        )
        if use_batch and stats[0] is not None:
            with torch.no_grad():
                bn.running_mean[take] = stats[0]
                bn.running_var[take] = stats[1]
        return F.prelu(out, self.act.weight[take].contiguous())

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The authors' formulation: transposes with contiguous copies, concat, group-3 shuffle."""
        check_input(x, self.channels, self.height, self.width, self.resample)
        pad = self.kernel_size // 2
        height, width = x.shape[2:]
        depth = F.conv2d(x, self.weight_depth, padding=pad, groups=self.channels)
        xh = resample_axis(x, self.height, 2).transpose(1, 2).contiguous()
        h = F.conv2d(xh, self.weight_height, padding=pad, groups=self.height).transpose(1, 2).contiguous()
        xw = resample_axis(x, self.width, 3).transpose(1, 3).contiguous()
        w = F.conv2d(xw, self.weight_width, padding=pad, groups=self.width).transpose(1, 3).contiguous()
        h, w = resample_axis(h, height, 2), resample_axis(w, width, 3)
        out = channel_shuffle(torch.cat((depth, h, w), dim=1), 3)
        return self.act(self.norm(out))

    def madds(self, inputs, output) -> int:
        """MAdds of the three functional convs at the sizes they run (resampled branches: the build size)."""
        n, c, height, width = inputs[0].shape
        # the height-wise branch runs at (build height x runtime width), the width-wise one the other way
        return n * self.kernel_size**2 * c * (height * width + self.height * width + height * self.width)


@register_notrace_function
@torch.fx.wrap
def check_input(x: torch.Tensor, channels: int, height: int, width: int, resample: bool) -> None:
    """One line saying what does not fit: the channel count, or a size other than the build size when the
    unit may not resample."""
    if x.shape[1] != channels:
        raise ValueError(f"DimConv built for {channels} channels got {x.shape[1]}")
    if not resample and (x.shape[2] != height or x.shape[3] != width):
        raise ValueError(f"DimConv built for {height}x{width} got {x.shape[2]}x{x.shape[3]} with resample=False")


def size_pair(size, name: str = "input_size") -> tuple[int, int]:
    """An int or (height, width) as a pair of ints."""
    if isinstance(size, int):
        return size, size
    if size is None or len(size) != 2:
        raise ValueError(f"{name} must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def dimconv_cost(channels: int, height: int, width: int, kernel_size: int = 3) -> int:
    """DimConv MAdds at its build size: n^2 C H W per branch, three branches (paper Sec. 3.1)."""
    return 3 * kernel_size**2 * channels * height * width
