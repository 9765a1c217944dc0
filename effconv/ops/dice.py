"""The DiCE unit (DiCENet paper Sec. 3, Fig. 3): DimConv + DimFuse, and the pieces of its ablations.

DimFuse (paper Sec. 3.2) turns the 3C interleaved DimConv responses into C_out channels:

1. local fusion: a grouped 1x1 conv 3C -> C with C groups (the three responses of each channel are mixed),
   BN + PReLU, giving Y_G;
2. global fusion, two paths on Y_G whose product is the output:
   a. spatial: an n x n conv C -> C_out with gcd(C, C_out) groups (depth-wise when C = C_out; paper
      footnote 1), BN + PReLU;
   b. channel: global average pool -> 1x1 C -> C//4 -> ReLU -> 1x1 C//4 -> C_out -> sigmoid (no BN).

MAdds per image at H x W with C = C_out = D: local 3HWD, spatial n^2 HWD, squeeze 2 D (D//4). The paper gives
the cost of DimFuse as HWD(3 + n^2 + D); its D term charges the channel path as a per-pixel D x D product,
which the unit it describes (and the authors' code) does not do: the channel path runs once per image on the
pooled vector. ``dimfuse_cost`` is the exact count; the paper's figure is an upper bound (tests check both).

Ablation pieces (paper Table 2 and 3), all with the unit signature through ``DiceUnit``:

* ``spatial``: ``dimconv`` (3C interleaved planes) or ``depthwise`` (n x n depth-wise + BN + PReLU, C planes);
* ``fusion``: ``dimfuse``; ``pointwise`` (1x1 conv over all planes + BN + PReLU); ``se`` (the planes of each
  channel summed, the result scaled by a squeeze gate; when C_out is a multiple of C each channel feeds
  C_out / C gated outputs, since an SE gate alone cannot change the width); ``pointwise_se`` (pointwise, then
  a squeeze gate on its output). The paper does not define ``se`` and ``pointwise_se`` beyond their names;
  these are our choices.
* the first 1x1 of a host block: ``pointwise`` or ``dimfuse`` (``first_pointwise``): DimFuse on a plain
  C_in-channel tensor, i.e. one plane per channel (Table 3), whose gcd-grouped spatial conv changes the width.

Strided DiCE (authors' code, ``nn_layers/dice.py``): a 3x3 average pool with stride 2 in front of the unit,
which then runs at the reduced resolution. DiCENet's two-branch strided block is in effconv/models/dicenet.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from effconv.ops import register_unit
from effconv.ops.common import ConvBnAct
from effconv.ops.dimconv import DimensionWiseConv, size_pair

SPATIAL_KINDS = ("dimconv", "depthwise")
FUSION_KINDS = ("dimfuse", "pointwise", "se", "pointwise_se")
FIRST_POINTWISE_KINDS = ("pointwise", "dimfuse")


class SqueezeGate(nn.Sequential):
    """Channel path of DimFuse: global pool -> 1x1 C -> C//4 -> ReLU -> 1x1 -> C_out -> sigmoid, no BN."""

    def __init__(self, in_ch: int, out_ch: int, reduction: int = 4):
        # the authors floor C/4; below 4 channels that would be an empty layer, so keep at least one
        squeezed = max(1, in_ch // reduction)
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_ch, squeezed, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(squeezed, out_ch, 1, bias=False),
            nn.Sigmoid(),
        )


class DimensionWiseFusion(nn.Module):
    """DimFuse: ``planes`` x C interleaved channels -> C_out (see the module docstring)."""

    def __init__(self, in_ch: int, out_ch: int, planes: int = 3, kernel_size: int = 3):
        super().__init__()
        self.local = ConvBnAct(planes * in_ch, in_ch, 1, groups=in_ch, act=nn.PReLU)
        self.spatial = ConvBnAct(in_ch, out_ch, kernel_size, groups=math.gcd(in_ch, out_ch), act=nn.PReLU)
        self.gate = SqueezeGate(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.local(x))

    def forward_planes(self, planes: list[torch.Tensor]) -> torch.Tensor:
        """The same on DimConv's un-interleaved planes (``DimensionWiseConv.forward_planes``): the grouped 1x1
        (C groups, plane b of channel i at input 3i + b) is the per-channel weighted sum of the planes."""
        conv, norm, act = self.local
        weight = conv.weight.view(-1, len(planes), 1, 1)  # (C, planes, 1, 1): one weight per channel and plane
        fused = planes[0] * weight[:, 0]
        for b in range(1, len(planes)):
            fused = fused.addcmul(planes[b], weight[:, b])
        return self.fuse(act(norm(fused)))

    def fuse(self, fused: torch.Tensor) -> torch.Tensor:
        return self.spatial(fused) * self.gate(fused)


class PointwiseFusion(ConvBnAct):
    """1x1 conv over all planes + BN + PReLU: the point-wise half of a separable conv (Table 2)."""

    def __init__(self, in_ch: int, out_ch: int, planes: int = 1, kernel_size: int = 3):
        super().__init__(planes * in_ch, out_ch, 1, act=nn.PReLU)


class SqueezeFusion(nn.Module):
    """SE as the fusion (Table 2b "+ SE"): planes summed per channel, scaled by a squeeze gate."""

    def __init__(self, in_ch: int, out_ch: int, planes: int = 1, kernel_size: int = 3):
        super().__init__()
        if out_ch % in_ch:
            raise ValueError(f"SE fusion cannot map {in_ch} to {out_ch} channels: C_out must be a multiple of C")
        self.planes, self.repeats = planes, out_ch // in_ch
        self.gate = SqueezeGate(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        merged = x.unflatten(1, (-1, self.planes)).sum(2) if self.planes > 1 else x
        widened = merged.repeat_interleave(self.repeats, dim=1) if self.repeats > 1 else merged
        return widened * self.gate(merged)


class PointwiseSqueezeFusion(nn.Module):
    """Point-wise fusion followed by a squeeze gate on its output (Table 2b "Point-wise + SE")."""

    def __init__(self, in_ch: int, out_ch: int, planes: int = 1, kernel_size: int = 3):
        super().__init__()
        self.pointwise = PointwiseFusion(in_ch, out_ch, planes)
        self.gate = SqueezeGate(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(x)
        return y * self.gate(y)


FUSIONS = {
    "dimfuse": DimensionWiseFusion,
    "pointwise": PointwiseFusion,
    "se": SqueezeFusion,
    "pointwise_se": PointwiseSqueezeFusion,
}


def _choice(kind: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {kind} '{value}'; choose one of {', '.join(allowed)}")
    return value


def spatial_layer(kind: str, channels: int, input_size, kernel_size: int = 3, resample: bool = True):
    """(layer, planes): DimConv (3 planes per channel) or a depth-wise conv + BN + PReLU (1 plane)."""
    if _choice("spatial", kind, SPATIAL_KINDS) == "dimconv":
        return DimensionWiseConv(channels, input_size, kernel_size, resample), 3
    return ConvBnAct(channels, channels, kernel_size, groups=channels, act=nn.PReLU), 1


def first_pointwise(kind: str, in_ch: int, out_ch: int) -> nn.Module:
    """The first 1x1 of a ResNet / ShuffleNetV2 block: 1x1 + BN + PReLU, or DimFuse (Table 3)."""
    if _choice("first 1x1", kind, FIRST_POINTWISE_KINDS) == "dimfuse":
        return DimensionWiseFusion(in_ch, out_ch, planes=1)
    return ConvBnAct(in_ch, out_ch, 1, act=nn.PReLU)


@register_unit("dice")
class DiceUnit(nn.Module):
    """DiCE unit: spatial (DimConv) -> fusion (DimFuse), C_in -> C_out, optional stride 2.

    ``input_size`` (H, W) is the resolution of the unit's input at build time (DimConv's weights depend on
    it; with stride 2 DimConv is built for the pooled size). ``spatial``/``fusion`` select the ablation
    variants of Table 2; the defaults are the DiCE unit. ``resample`` keeps the unit usable at other input
    sizes (Sec. 3.3).
    Every variant ends with its own activation (gated BN + PReLU), so host blocks add none after it.
    """

    ends_with_activation = True
    __jit_unused_properties__ = ["plane_path"]  # reads hook dicts; TorchScript takes the interleaved path

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        kernel_size: int = 3,
        input_size: Sequence[int] | int | None = None,
        spatial: str = "dimconv",
        fusion: str = "dimfuse",
        resample: bool = True,
    ):
        super().__init__()
        if input_size is None and spatial == "dimconv":
            raise ValueError("the dice unit needs input_size=(height, width): DimConv's weights depend on it")
        if stride not in (1, 2):
            raise ValueError(f"the dice unit supports stride 1 or 2, got {stride}")
        if not isinstance(kernel_size, int):
            raise ValueError(f"the dice unit takes one kernel size, got {kernel_size!r}")
        height, width = size_pair(input_size) if input_size is not None else (None, None)
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()
        if stride == 2 and height is not None:
            height, width = (height + 1) // 2, (width + 1) // 2
        self.spatial, planes = spatial_layer(spatial, in_ch, (height, width), kernel_size, resample)
        self.fusion = FUSIONS[_choice("fusion", fusion, FUSION_KINDS)](in_ch, out_ch, planes, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        # TorchScript and torch.fx take the interleaved path (the same function): its BN and PReLU are modules
        # that read their training flag when they run, where the plane path's per-branch BN would be frozen
        # into a traced graph in the mode it was traced in
        if not torch.jit.is_scripting():  # noqa: SIM102  (alone, so TorchScript skips the block)
            if self.plane_path and not isinstance(x, torch.fx.Proxy):
                return self.fusion.forward_planes(self.spatial.forward_planes(x))  # no interleaved copy
        return self.fusion(self.spatial(x))

    @property
    def plane_path(self) -> bool:
        """DimConv -> DimFuse without the interleave, unless something hooks the local 1x1 conv (the MAdds
        counter does: it must see that conv run, so it gets the interleaved path, the same function)."""
        if not (isinstance(self.spatial, DimensionWiseConv) and isinstance(self.fusion, DimensionWiseFusion)):
            return False
        conv = self.fusion.local[0]
        return not (conv._forward_hooks or conv._forward_pre_hooks or nn.modules.module._global_forward_hooks)


def dimfuse_cost(channels: int, out_channels: int, height: int, width: int, kernel_size: int = 3) -> int:
    """Exact DimFuse MAdds per image: local 3HWC + spatial n^2 HW C_out C/g + the squeeze (once per image)."""
    groups = math.gcd(channels, out_channels)
    squeezed = max(1, channels // 4)
    spatial = height * width * out_channels * (channels // groups) * kernel_size**2
    return 3 * height * width * channels + spatial + channels * squeezed + squeezed * out_channels
