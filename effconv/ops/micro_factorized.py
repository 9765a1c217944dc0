"""Micro-Factorized convolution (Li et al., "MicroNet: Improving Image Recognition with Extremely Low FLOPs",
ICCV 2021, Sec. 3; reference code github.com/liyunsheng13/micronet, ``backbone/micronet.py``).

* **Pointwise** (Sec. 3.1, Eq. 1): a C_in x C_out 1x1 convolution approximated as W = P Phi Q^T: a group
  1x1 conv Q compresses to C/R hidden channels, a channel shuffle Phi, a group 1x1 conv P expands again.
  With G = sqrt(C/R) groups in both (Eq. 3) every output reaches every input through exactly one path: W
  splits into G x G rank-1 blocks (Fig. 2 left). The authors hard-code *unequal* factor pairs (G_c, G_e)
  whose product is C/R where C/R is not a square; ``group_pair`` is the rule that reproduces every pair of
  their four models.
* **Depthwise** (Sec. 3.2): a k x k depth-wise conv as a k x 1 then a 1 x k depth-wise conv, each followed by
  BN and nothing else, stride split (s, 1) then (1, s) as in the authors' ``DepthSpatialSepConv``. A channel
  multiplier per factor gives the "lite" combination's channel expansion (Fig. 2 right).

Cost per output pixel of the pointwise pair: C_in C_h / G_c + C_h C_out / G_e multiply-accumulates, i.e.
2 C^2 / (R G) when C_in = C_out = C and G_c = G_e = G (Sec. 3.1).
"""

from __future__ import annotations

import math

from torch import nn

from effconv.ops import register_unit
from effconv.ops.common import channel_shuffle


def nearest_divisor(n: int, target: float) -> int:
    """The divisor of ``n`` closest to ``target`` (the smaller one on a tie)."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d))


def adaptive_groups(channels: int, hidden: int, lam: float = 1.0) -> int:
    """Eq. 3 with the paper's multiplier (Table 3b): the feasible group count nearest to lam * sqrt(C/R).

    ``hidden`` is C/R; the count must divide both ``channels`` and ``hidden``.
    """
    return nearest_divisor(math.gcd(channels, hidden), lam * math.sqrt(hidden))


def group_pair(compress_in: int, bottleneck: int, expand_out: int, lam: float = 1.0) -> tuple[int, int]:
    """Groups (G_c, G_e) of the compress conv (compress_in -> bottleneck) and the expand conv that follows it.

    G_c is the feasible count nearest to lam * sqrt(C/R) (Eq. 3 and Table 3b, C/R = ``bottleneck``); G_e then
    makes the product G_c * G_e nearest to lam^2 * C/R, i.e. exactly C/R at lam = 1: every expand output
    reaches every compress input once. With lam = 1 this reproduces all the authors' hard-coded pairs of
    M0-M3 (4x4, 8x8, 8x12, 4x6, 8x10, 10x12, ...; reference-architectures §2.3).
    """
    g_c = nearest_divisor(math.gcd(compress_in, bottleneck), lam * math.sqrt(bottleneck))
    g_e = nearest_divisor(math.gcd(bottleneck, expand_out), lam * lam * bottleneck / g_c)
    return g_c, g_e


class GroupPointwise(nn.Sequential):
    """One group-adaptive convolution: 1x1 group conv (no bias) + BN."""

    def __init__(self, in_ch: int, out_ch: int, groups: int = 1):
        if in_ch % groups or out_ch % groups:
            raise ValueError(
                f"a 1x1 conv {in_ch}->{out_ch} cannot have {groups} groups (both widths must be multiples of it)"
            )
        super().__init__(nn.Conv2d(in_ch, out_ch, 1, bias=False, groups=groups), nn.BatchNorm2d(out_ch))

    @property
    def groups(self) -> int:
        return self[0].groups


class MicroFactorizedPointwise(nn.Module):
    """W = P Phi Q^T (Eq. 1): compress to ``hidden`` with G1 groups, shuffle, expand to ``out_ch`` with G2.

    ``groups``: None for Eq. 3 (G1 = G2 nearest to lam * sqrt(hidden)), an int for a fixed count in both
    (Table 3a), or an explicit (G1, G2) pair as the authors' configurations give. ``act`` optionally sits
    between the two convolutions (MicroNet puts its activation there).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        hidden: int | None = None,
        reduction: int = 1,
        groups: int | tuple[int, int] | None = None,
        lam: float = 1.0,
        act: nn.Module | None = None,
    ):
        super().__init__()
        hidden = hidden or in_ch // reduction
        if groups is None:
            groups = (adaptive_groups(in_ch, hidden, lam), adaptive_groups(out_ch, hidden, lam))
        elif isinstance(groups, int):
            groups = (groups, groups)
        self.compress = GroupPointwise(in_ch, hidden, groups[0])
        self.act = act if act is not None else nn.Identity()
        self.shuffle_groups = groups[0]
        self.expand = GroupPointwise(hidden, out_ch, groups[1])

    def forward(self, x):
        return self.expand(channel_shuffle(self.act(self.compress(x)), self.shuffle_groups))


class MicroFactorizedDepthwise(nn.Sequential):
    """k x k depth-wise conv as k x 1 then 1 x k depth-wise convs, BN after each (Sec. 3.2, Fig. 2 middle).

    ``multipliers`` (m1, m2): channel multiplier of each factor; the lite combination uses (2, 2), so the
    block's hidden width is 4x its input (the authors' ``DepthSpatialSepConv``). The stride is split (s, 1)
    then (1, s). Cost per output pixel: k * C * m1 * (1 + m2) instead of k^2 * C * m1 * m2.
    """

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1, multipliers=(1, 1)):
        m1, m2 = multipliers
        mid, out = channels * m1, channels * m1 * m2
        pad = kernel_size // 2
        super().__init__(
            nn.Conv2d(channels, mid, (kernel_size, 1), (stride, 1), (pad, 0), groups=channels, bias=False),
            nn.BatchNorm2d(mid),
            nn.Conv2d(mid, out, (1, kernel_size), (1, stride), (0, pad), groups=mid, bias=False),
            nn.BatchNorm2d(out),
        )
        self.out_channels = out


@register_unit("micro_dw")
class MicroFactorizedDepthwiseUnit(MicroFactorizedDepthwise):
    """Swappable unit: Micro-Factorized depth-wise conv; ``out_ch`` a multiple of ``in_ch`` (multiplier).

    ``multipliers`` (m1, m2) splits the multiplier between the two factors; by default it goes to the k x 1
    factor, except 4 = (2, 2) as in MicroNet's lite blocks.
    """

    def __init__(self, in_ch, out_ch, stride=1, kernel_size=3, multipliers=None):
        if out_ch % in_ch:
            raise ValueError(f"micro_dw: out_ch={out_ch} must be a multiple of in_ch={in_ch} (a multiplier)")
        ratio = out_ch // in_ch
        if multipliers is None:
            multipliers = (2, 2) if ratio == 4 else (ratio, 1)
        if multipliers[0] * multipliers[1] != ratio:
            raise ValueError(f"micro_dw: multipliers {tuple(multipliers)} do not give {in_ch} -> {out_ch} channels")
        super().__init__(in_ch, kernel_size, stride, tuple(multipliers))
