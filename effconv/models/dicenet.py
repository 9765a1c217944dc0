"""DiCENet (Mehta, Hajishirzi, Rastegari, "DiCENet: Dimension-wise Convolutions for Efficient Networks", TPAMI
2020) and the ShuffleNetV2 it is built on, as one skeleton with a swappable unit.

Reference code: github.com/sacmehta/EdgeNets (``model/classification/dicenet.py``, ``dicenet_config.py``,
``shufflenetv2.py``, ``nn_layers/dice.py``); its architecture as data and measured figures are in
reference-architectures §1, which this file follows:

* level1 3x3 conv stride 2 + BN + PReLU (c0); level2 3x3 max-pool stride 2;
* levels 3-5 (28, 14, 7 px at 224): a strided block (C -> 2C) then 3 / 7 / 3 channel-split blocks (paper
  Table 8, N_i = {3, 7, 3}); a channel-split block passes round(C_in / 2) channels and sends the rest
  through a 1x1 + BN + PReLU and the unit, then concatenates and shuffles (2 groups). The first block of a
  level widens only its right branch (2 c_{i-1} -> c_i);
* ``conv=dice`` (DiCENet): strided block = [3x3 depth-wise s2 + BN + PReLU, 1x1 + BN + PReLU] beside
  [3x3 avg-pool s2, DiCE unit, 1x1 + BN + PReLU]; head = global pool -> 1x1 conv c4 -> c5 with 4 groups (no
  bias, no BN, no activation) -> dropout (0.2 if s > 1 else 0.1) -> classifier;
* other units (``conv=sep``: ShuffleNetV2 as in EdgeNets' ``shufflenetv2.py``, the paper's separable
  baseline): strided block = [unit s2] beside [1x1, unit s2], each unit followed by PReLU; head
  (``head=conv5``) = 1x1 conv c4 -> c5 + BN + PReLU -> global pool -> dropout (0.2 if s > 1) -> classifier.

Widths: the authors' channel tables [c0, c1, c2, c3, c4, c5] (``DICENET_CHANNELS``, ``SHUFFLENET_CHANNELS``).
Any other ``width_mult`` s interpolates the table linearly between its neighbouring rows (extrapolates from
the first or last two rows outside them): c0 = c1 and c2 rounded to even numbers, c3 = 2 c2, c4 = 4 c2, c5
rounded to a multiple of 8 (our rule; the paper's "116 s" of Table 8 is not what the authors' table holds).

``img_size`` is the resolution the network is built for: DimConv's height- and width-wise weights depend on
it (so does the parameter count). At any other input size the DiCE units resample (paper Sec. 3.3).

Registered: ``dicenet_010 ... dicenet_240`` (s = 0.1 ... 2.4) and ``shufflenet_v2`` (conv=sep, s = 1.0).
At 224 px and 1000 classes they equal the authors' models exactly (tests/test_dicenet.py), e.g. s = 1.0:
1.8056 M params, 70.710 M MAdds; s = 2.4: 5.1136 M, 297.941 M.

Widths of the paper's Table 1-3 rows on this skeleton, found by search
(``python -m effconv.width_search``; rows in conf/experiment/dicenet/table{1,2,3}.yaml), MAdds at 224 px
(paper FLOPs in brackets): ShuffleNetV2 SC (``shufflenet_v2``) 0.5 / 1.0 / 1.5 -> 40.48 [41] / 142.62 [146] /
292.95 [292]; DU (DiCENet) 0.75 / 1.415 / 2.4 -> 46.83 [46] / 123.11 [122] / 297.94 [298]; Table 2
DWise + SE 1.63 -> 138.80 [140], DWise + PW + SE 1.225 -> 147.66 [146], DWise + DimFuse 1.585 -> 137.89
[139], DimConv + PW 0.81 -> 134.17 [135], DimConv + SE 1.555 -> 138.04 [138], DimConv + PW + SE 0.81 ->
134.28 [135]; Table 3 R2 1.875 -> 76.75 [78], R3 2.765 -> 142.11 [140], R5 1.415 -> 72.00 [72], R6 2.52 ->
127.17 [132].

Deviations from the authors' code:

* Any ``img_size`` is accepted (the authors assert a multiple of 32); level sizes are ceil(H / 2^k), which
  equals the authors' H / 2^k on multiples of 32.
* The classifier is an ``nn.Linear`` on the pooled vector instead of a 1x1 conv (same parameters, MAdds
  and initialisation), so timm's classifier tools work.
* s = 0.1 is commented out in the authors' config; it is enabled here (the paper's 6.5 MFLOPs model).
* ShuffleNetV2 with ``conv=sep`` uses effconv's separable unit (3x3 depth-wise + BN, 1x1 + BN) and the host's
  PReLU, i.e. EdgeNets' ``DWSepConv``.
* The squeeze layer of DimFuse keeps at least one channel where C // 4 would be 0 (the authors' code fails).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import checkpoint_seq, generate_default_cfgs
from torch import nn

from effconv.models import register
from effconv.models.base import ClassifierNet, init_kaiming, new_layer
from effconv.models.pretrained_cfgs import dataset_cfgs
from effconv.models.units import DICE_HOST_UNITS, check_conv, host_unit, pair, strided
from effconv.ops.common import ConvBnAct, channel_shuffle, interleave
from effconv.ops.dice import first_pointwise

torch.fx.wrap("interleave")  # a leaf where the blocks call it (see effconv.ops.common)

REPEATS = (3, 7, 3)
# [c0, c1, c2, c3, c4, c5] per width: EdgeNets dicenet_config.py (s = 0.1 is commented out there)
DICENET_CHANNELS = {
    0.1: (8, 8, 16, 32, 64, 512),
    0.2: (16, 16, 32, 64, 128, 1024),
    0.5: (24, 24, 48, 96, 192, 1024),
    0.75: (24, 24, 86, 172, 344, 1024),
    1.0: (24, 24, 116, 232, 464, 1024),
    1.25: (24, 24, 144, 288, 576, 1024),
    1.5: (24, 24, 176, 352, 704, 1024),
    1.75: (24, 24, 210, 420, 840, 1024),
    2.0: (24, 24, 244, 488, 976, 1024),
    2.4: (24, 24, 278, 556, 1112, 1280),
}
# EdgeNets shufflenetv2_config.py (ShuffleNetV2's own widths)
SHUFFLENET_CHANNELS = {
    0.1: (8, 8, 16, 32, 64, 512),
    0.5: (24, 24, 48, 96, 192, 1024),
    1.0: (24, 24, 116, 232, 464, 1024),
    1.5: (24, 24, 176, 352, 704, 1024),
    2.0: (24, 24, 244, 488, 976, 2048),
}
CHANNEL_TABLES = {"dicenet": DICENET_CHANNELS, "shufflenet": SHUFFLENET_CHANNELS}


def level_channels(width_mult: float, table: str = "dicenet") -> tuple[int, ...]:
    """[c0, c1, c2, c3, c4, c5] at width ``width_mult``: the authors' table, interpolated between its rows.

    Between two rows (and beyond the first or last two) every width is interpolated linearly in s; c0 = c1
    and c2 round to even numbers, c3 = 2 c2, c4 = 4 c2 (as in every row), c5 to a multiple of 8.
    """
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    if table not in CHANNEL_TABLES:
        raise ValueError(f"unknown channel table '{table}'; choose one of {', '.join(CHANNEL_TABLES)}")
    rows = sorted(CHANNEL_TABLES[table].items())
    for s, channels in rows:
        if math.isclose(s, width_mult):
            return channels
    upper = next((i for i, (s, _) in enumerate(rows) if s > width_mult), len(rows) - 1)
    (s0, low), (s1, high) = rows[max(upper - 1, 0)], rows[max(upper, 1)]
    t = (width_mult - s0) / (s1 - s0)

    def interpolate(i: int, step: int) -> int:
        return max(step, step * round((low[i] + t * (high[i] - low[i])) / step))

    c2 = max(4, interpolate(2, 2))
    c0 = min(interpolate(0, 2), c2 // 2)
    return c0, c0, c2, 2 * c2, 4 * c2, interpolate(5, 8)


def _concat_shuffle(left: torch.Tensor, right: torch.Tensor, equal_halves: bool) -> torch.Tensor:
    """channel_shuffle(cat(left, right), 2): one interleaving copy when the halves are equal, else two."""
    if equal_halves:
        return interleave([left, right])
    return channel_shuffle(torch.cat((left, right), dim=1), 2)


class ChannelSplitBlock(nn.Module):
    """ShuffleNetV2 / ShuffleDiCE block: split, [1x1 -> unit] on the right part, concat, shuffle (2)."""

    def __init__(self, in_ch: int, out_ch: int, size, conv: str, first: str, variant, optional):
        super().__init__()
        self.left = round(0.5 * in_ch)  # the authors' round (banker's rounding on .5, never hit: in_ch even)
        right_in, right_out = in_ch - self.left, out_ch - self.left
        if right_out <= 0:
            raise ValueError(f"block {in_ch} -> {out_ch} channels leaves no channels for its right branch")
        self.branch = nn.Sequential(
            first_pointwise(first, right_in, right_out),
            host_unit(conv, right_out, right_out, 1, size, variant, optional),
        )
        self.equal_halves = self.left == right_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _concat_shuffle(x[:, : self.left], self.branch(x[:, self.left :]), self.equal_halves)


class StridedBlock(nn.Module):
    """C -> 2C at half the resolution: the authors' StridedDICE (conv=dice) or StridedShuffleBlock."""

    def __init__(self, channels: int, size, conv: str, first: str, variant, optional):
        super().__init__()
        c = channels
        if conv == "dice":
            self.left = nn.Sequential(ConvBnAct(c, c, 3, 2, groups=c, act=nn.PReLU), ConvBnAct(c, c, 1, act=nn.PReLU))
            self.right = nn.Sequential(
                host_unit(conv, c, c, 2, size, variant, optional), ConvBnAct(c, c, 1, act=nn.PReLU)
            )
        else:
            self.left = host_unit(conv, c, c, 2, size, variant, optional)
            self.right = nn.Sequential(first_pointwise(first, c, c), host_unit(conv, c, c, 2, size, variant, optional))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _concat_shuffle(self.left(x), self.right(x), True)


class SkeletonNet(ClassifierNet):
    """DiCENet's skeleton (paper Table 8): level1 .. level5, then the grouped or the conv5 head.

    Subclasses build ``level1`` .. ``level5`` and call ``_build_head``. The five levels are the feature
    levels (total strides 2 .. 32), as EdgeNets' detection and segmentation networks take them.
    """

    def _build_head(
        self,
        in_ch: int,
        head_channels: int,
        head: str,
        head_groups: int,
        drop_rate: float | None,
        num_classes: int,
        global_pool: str = "avg",
    ) -> None:
        if head == "grouped" and (in_ch % head_groups or head_channels % head_groups):
            raise ValueError(f"head_groups={head_groups} must divide {in_ch} and {head_channels}")
        grouped = head == "grouped"
        self.head_proj = nn.Conv2d(in_ch, head_channels, 1, groups=head_groups, bias=False) if grouped else None
        self.num_features = in_ch if grouped else head_channels
        if drop_rate is None:  # the authors' rule
            drop_rate = 0.2 if self.width_mult > 1 else (0.1 if grouped else 0.0)
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.head_drop = nn.Dropout(drop_rate)
        init_kaiming(self)
        self.reset_classifier(num_classes, global_pool)
        widths = [*self.channels[:4], self.num_features]  # level5 ends with conv5 in the conv5 head
        self._init_feature_info([(f"level{i + 1}", width, 2) for i, width in enumerate(widths)])

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        return [(f"level{i}", getattr(self, f"level{i}")) for i in range(1, 6)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq([self.level1, self.level2, self.level3, self.level4, self.level5], x)
        x = self.level1(x)
        x = self.level2(x)
        x = self.level3(x)
        x = self.level4(x)
        return self.level5(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.head_proj is not None:  # a 1x1 conv: at every position when the map is not pooled
            x = self.head_proj(x)
        x = self.head_drop(self.flatten(x))
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            pool = SelectAdaptivePool2d(pool_type=global_pool)
            if self.head_proj is not None and pool.feat_mult() != 1:
                raise ValueError(
                    f"global_pool='{global_pool}' changes the pooled width, which the grouped head conv cannot "
                    "take; use avg, max, avgmax or '' (none)"
                )
            flatten = nn.Flatten(1) if global_pool else nn.Identity()
            self.global_pool, self.flatten = pool.train(self.training), flatten.train(self.training)
        if self.head_proj is not None:
            self.head_hidden_size = self.head_proj.out_channels
        else:
            self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.fc = new_layer(self, nn.Linear, self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:  # the authors' classifier is a 1x1 conv: Kaiming normal (fan_out), zero bias
            nn.init.kaiming_normal_(self.fc.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(self.fc.bias)

    def _remove_head(self) -> None:
        self.head_proj = None
        self.reset_classifier(0, "")


class DiCENet(SkeletonNet):
    """ShuffleNetV2 skeleton with a swappable unit; ``conv=dice`` is DiCENet (see the module docstring)."""

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int | Sequence[int] = 224,
        conv: str = "dice",
        spatial: str | None = None,
        fusion: str | None = None,
        first_pointwise: str = "pointwise",
        head: str = "grouped",
        head_groups: int = 4,
        channel_table: str = "dicenet",
        drop_rate: float | None = None,
        global_pool: str = "avg",
    ):
        super().__init__()
        self.in_chans = in_chans
        if head not in ("grouped", "conv5"):
            raise ValueError(f"head must be 'grouped' (DiCENet) or 'conv5' (ShuffleNetV2), got '{head}'")
        self.channels = c0, c1, *levels, c5 = level_channels(width_mult, channel_table)
        self.width_mult, self.img_size = width_mult, pair(img_size)
        variant = {k: v for k, v in (("spatial", spatial), ("fusion", fusion)) if v is not None}
        check_conv(conv, DICE_HOST_UNITS)
        optional = {"act": nn.Identity}  # EdgeNets' DWSepConv: no activation after the depth-wise conv
        size = strided(strided(self.img_size))
        self.level1 = ConvBnAct(in_chans, c0, 3, 2, act=nn.PReLU)
        self.level2 = nn.MaxPool2d(3, 2, 1)
        in_ch = c1
        for index, (width, repeats) in enumerate(zip(levels, REPEATS)):
            blocks = [StridedBlock(in_ch, size, conv, first_pointwise, variant, optional)]
            size = strided(size)
            blocks += [
                ChannelSplitBlock(2 * in_ch if i == 0 else width, width, size, conv, first_pointwise, variant, optional)
                for i in range(repeats)
            ]
            if index == len(levels) - 1 and head == "conv5":
                blocks.append(ConvBnAct(width, c5, 1, act=nn.PReLU))
            setattr(self, f"level{index + 3}", nn.Sequential(*blocks))
            in_ch = width
        self._build_head(in_ch, c5, head, head_groups, drop_rate, num_classes, global_pool)


DICENET_NAMES = {f"dicenet_{round(s * 100):03d}": s for s in DICENET_CHANNELS}
default_cfgs = generate_default_cfgs(
    {
        name: cfg
        for model in [*DICENET_NAMES, "shufflenet_v2"]
        for name, cfg in dataset_cfgs(model, "dicenet", ["imagenet"], 32, "level1.0", "fc").items()
    }
)
for _name, _s in DICENET_NAMES.items():
    register(_name, DiCENet, width_mult=_s)
register("shufflenet_v2", DiCENet, width_mult=1.0, conv="sep", head="conv5", channel_table="shufflenet")
