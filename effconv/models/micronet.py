"""MicroNet (Li, Chen, Dai, Chen, Liu, Yuan, Liu, Zhang, Vasconcelos, "MicroNet: Improving Image
Recognition with Extremely Low FLOPs", ICCV 2021). Reference code: github.com/liyunsheng13/micronet
(``backbone/micronet.py``, ``backbone/microconfig.py``, ``backbone/activation.py``, ``scripts/*.sh``);
measured tables in ``shared/specs/reference-architectures.md`` §2.

A model is a row of data (``CONFIGS``): the stem's factor pair, one ``Row`` per Micro-Block (kind, kernel,
stride, output width, squeeze-reduction factor), the expansion R, the classifier width, dropout and the
Dynamic Shift-Max initial values. Group counts are not stored: ``group_pair`` (Eq. 3 with the product rule,
effconv/ops/micro_factorized.py) reproduces every pair the authors hard-code, and also gives the groups of
the ablation variants (lambda, width) for which no configuration exists.

Blocks, as the authors build them (the paper's Fig. 4):

* Micro-Block-A ("lite", Fig. 2 right): Micro-Factorized depthwise k x 1 (x2 channels) then 1 x k (x2) ->
  A2 -> shuffle -> group 1x1 compress (G_c) -> A3 -> shuffle.
* Micro-Block-B/C ("regular"): group 1x1 expand (G_e, R x input) -> A1 -> shuffle -> Micro-Factorized
  depthwise -> A2 -> shuffle -> group 1x1 compress (G_c) -> A3 -> shuffle; residual when stride 1 and the
  width is kept. The paper's Micro-Factorized pointwise conv is the pair (compress of block i, expand of
  block i+1) with A3 and the shuffles between them.
* Head: group 1x1 expand (R x input) -> A3. Classifier: ReLU6 -> global pool -> h-swish -> Linear + BN1d +
  h-swish -> dropout -> Linear + BN1d + h-swish (on the logits, as the authors do).

Activation slots: A1/A2 use K fusions and a max (K=1: the fusion then ReLU6, Table 6); A3 and the head use a
single fusion (K=1, no max), as in the code. A slot that is not dynamic is ReLU6 (A1/A2) or nothing (A3),
the authors' ``y = 0``.

Deviations and choices (the defaults follow the authors' code, DESIGN §4; reference-architectures §2.4):

1. Code over paper: hard-sigmoid coefficients around fixed initial values (paper: sigmoid); the partner
   shift moves one group and one position (``shift="paper"`` gives Eq. 4's plain group shift); A3/head are
   K=1; the first A-block of M0-M2 has ReLU6 at A2; M3 has only A2 dynamic, A1 = ReLU6 and no A3; the stem
   is ReLU6 after a channel shuffle; the classifier has BN1d + h-swish after both FCs; M3's kernels are the
   code's (5 where Table 1 prints 3 for two rows); dropout 0.1 for M2 and M3 (paper: 0.05 for M2).
2. Groups come from ``group_pair`` rather than a table; it equals the authors' pairs for M0-M3 (tested).
3. Beyond the authors' J = 2: shift j moves j groups and j positions; a third fusion (K = 3) starts as the
   identity. The authors' ``MaxGroupPooling`` stem is never used by an official model and is absent.
4. Ablation knobs the paper describes without configurations: ``groups=<G>`` (fixed G, Table 3a),
   ``lambda`` (Table 3b), ``lite_levels`` (Table 3c: "low" = the authors' A-blocks, "high" = the B/C blocks),
   ``activation`` (Tables 2, 4: dyshiftmax | static | dyrelu | se_relu | relu), ``act_slots`` (Table 5),
   ``J``/``K`` (Table 6), ``conv`` (a unit of effconv.ops.UNITS: ``micro_dw`` by default, ``dw`` for Table 2's
   MobileNet rows), ``width_mult`` / ``fc_width`` / ``dy_reduction`` / ``stem`` (to hold an ablation at the
   paper's cost, and the # variants). A block switched
   between lite and regular keeps its hidden width. Dynamic ReLU and SE use the same squeeze width as Dynamic
   Shift-Max (effconv/ops/dynamic_relu.py). Fixed G rounds block widths to multiples of lcm(4, G).
5. ``micronet_m1s/m2s/m3s`` (the paper's M1#/M2#/M3#, no configuration published): the same blocks, scaled
   widths, a narrower classifier and a larger Dynamic Shift-Max squeeze reduction (``SHARP_VARIANTS``).

Knob names: ``lambda`` is a Python keyword, so the constructor argument is ``lambda_``; the model config key
and ``timm.create_model`` kwarg ``lambda`` is accepted and mapped. ``dropout`` is accepted for ``drop_rate``.

timm's interface: feature levels at the stem and at the last block of each resolution (total strides 2 ..
32; the head's 1x1 expand is the tail); ``drop_path_rate`` drops the residual branch of the blocks that have
one; ``global_pool=''`` keeps the map unpooled and applies the two FC layers at every position (as timm's
MLP heads turn into 1x1 convs), so ``num_classes=0, global_pool=''`` gives (N, fc_width, H, W).
"""

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from timm.layers import DropPath, SelectAdaptivePool2d, SqueezeExcite
from timm.models import checkpoint_seq, generate_default_cfgs
from torch import nn

from effconv.models import register
from effconv.models.base import ClassifierNet, drop_path_rates, init_kaiming
from effconv.models.pretrained_cfgs import dataset_cfgs
from effconv.models.units import MICRONET_UNITS, build_unit, check_conv
from effconv.ops.common import channel_shuffles, make_divisible
from effconv.ops.dynamic_relu import DynamicReLU
from effconv.ops.dynamic_shift_max import DynamicShiftMax, StaticShiftMax, squeeze_width
from effconv.ops.micro_factorized import GroupPointwise, group_pair, nearest_divisor

torch.fx.wrap("channel_shuffles")  # a leaf where the blocks call it (see effconv.ops.common)

ACTIVATIONS = ("dyshiftmax", "static", "dyrelu", "se_relu", "relu")
SLOTS = ("A1", "A2", "A3")
LEVELS = ("low", "high")
BASE_REDUCTION = 8  # the scripts' MODEL.ACTIVATION.REDUCTION


@dataclass(frozen=True)
class Row:
    kind: str  # "A": lite (Micro-Block-A); "C": regular (Micro-Block-B/C)
    kernel: int
    stride: int
    out: int
    squeeze: int = 1  # r: Dynamic Shift-Max squeeze reduction 8 r (A3: 4 r)
    expansion: int = 0  # hidden = expansion x input; 0: the kind's own (A: 4 = 2 x 2 depthwise, C: R)


@dataclass(frozen=True)
class MicroNetConfig:
    stem: tuple[int, int]  # 3 -> g1 (3x1 conv) -> g1*g2 (1x3 conv, g1 groups)
    rows: tuple[Row, ...]
    expansion: int  # R: hidden width = R x input in regular blocks and the head
    fc_width: int  # the classifier's hidden width (OUT_CH)
    drop_rate: float
    init_a: tuple[float, ...] = (1.0, 1.0)  # A1/A2 fusions start as init_a[k] x + init_b[k] x_shift
    init_b: tuple[float, ...] = (0.0, 0.0)
    act_slots: tuple[str, ...] = SLOTS
    first_a2_dynamic: bool = False  # M0-M2: the first block's A2 is ReLU6
    head_squeeze: int = 2
    dy_reduction: float = 1.0  # multiplies every squeeze reduction (the # variants)
    width_mult: float = 1.0  # block widths (the # variants)


def _rows(*spec) -> tuple[Row, ...]:
    return tuple(Row(*r) for r in spec)


# The authors' configurations (microconfig.py + scripts), one tuple per block: kind, k, stride, out, r.
CONFIGS: dict[str, MicroNetConfig] = {
    "m0": MicroNetConfig(
        stem=(2, 2),
        expansion=4,
        fc_width=640,
        drop_rate=0.05,
        rows=_rows(
            ("A", 3, 2, 8),
            ("A", 3, 2, 12),
            ("A", 5, 2, 16),
            ("C", 5, 1, 32),
            ("C", 5, 2, 64),
            ("C", 3, 1, 96, 2),
        ),
    ),
    "m1": MicroNetConfig(
        stem=(3, 2),
        expansion=6,
        fc_width=960,
        drop_rate=0.05,
        rows=_rows(
            ("A", 3, 2, 8),
            ("A", 3, 2, 16),
            ("A", 5, 2, 16),
            ("C", 5, 1, 32),
            ("C", 5, 2, 64),
            ("C", 3, 1, 96, 2),
        ),
    ),
    "m2": MicroNetConfig(
        stem=(4, 2),
        expansion=6,
        fc_width=1024,
        drop_rate=0.1,
        rows=_rows(
            ("A", 3, 2, 12),
            ("A", 3, 2, 16),
            ("A", 3, 1, 24),
            ("C", 5, 2, 32),
            ("C", 5, 1, 32, 2),
            ("C", 5, 1, 64, 2),
            ("C", 5, 2, 96, 2),
            ("C", 3, 1, 128, 2),
        ),
    ),
    "m3": MicroNetConfig(
        stem=(4, 3),
        expansion=6,
        fc_width=1024,
        drop_rate=0.1,
        init_a=(1.0, 0.5),
        init_b=(0.0, 0.5),
        act_slots=("A2",),
        first_a2_dynamic=True,
        rows=_rows(
            ("A", 3, 2, 16),
            ("A", 3, 2, 24),
            ("A", 3, 1, 24),
            ("C", 5, 2, 32),
            ("C", 5, 1, 32, 2),
            ("C", 5, 1, 64, 2),
            ("C", 5, 1, 80, 2),
            ("C", 5, 1, 80, 2),
            ("C", 5, 2, 120, 2),
            ("C", 5, 1, 120, 2),
            ("C", 3, 1, 144, 2),
        ),
    ),
}

# The paper's M1#/M2#/M3# (Table 7): "similar structure to M_x, only shrinking the model size by reducing
# network width and parameters in dynamic Shift-Max". No configuration was published. Rule: M_x's blocks with
# (1) the Dynamic Shift-Max squeeze reduction doubled (half the hyper-function parameters), (2) a narrower
# classifier (it holds most parameters: 1.5-1.9 M of M1-M3) and (3) block widths scaled (stem kept), the last
# two picked on a grid (fc_width 512..768 step 64 x width_mult 0.75..1.0 step 0.05) as the point nearest the
# paper's params and MAdds: 1.2 M / 5 M, 1.4 M / 11 M, 1.6 M / 20 M, all within 3% (tests pin them).
SHARP_VARIANTS = {
    "m1s": replace(CONFIGS["m1"], dy_reduction=2.0, fc_width=768, width_mult=0.8),
    "m2s": replace(CONFIGS["m2"], dy_reduction=2.0, fc_width=640, width_mult=0.9),
    "m3s": replace(CONFIGS["m3"], dy_reduction=2.0, fc_width=640, width_mult=0.95),
}


class ChannelShuffles(nn.Module):
    """The authors' consecutive channel shuffles (ShuffleNet shuffle with each group count in turn)."""

    groups: list[int]  # may be empty: TorchScript needs the element type

    def __init__(self, *groups: int):
        super().__init__()
        self.groups = [g for g in groups if g > 1]

    def forward(self, x):
        return channel_shuffles(x, self.groups)  # one copy (or none) where the shuffles compose

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


@dataclass(frozen=True)
class SlotSpec:
    """What one activation slot gets: the module family, its fusions, shift groups and squeeze reduction."""

    dynamic: bool
    max_slot: bool  # A1/A2: K fusions + max; A3/head: one fusion
    channels: int
    groups: int
    reduction: float


class ActivationFactory:
    """Builds the activation of a slot from the network's knobs (Tables 2, 4, 5, 6)."""

    def __init__(self, kind: str, J: int, K: int, init_a, init_b, shift: str):
        if kind not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got '{kind}'")
        if J < 1 or K < 1:
            raise ValueError(f"J and K must be >= 1 (got J={J}, K={K})")
        self.kind, self.J, self.K, self.init_a, self.init_b, self.shift = kind, J, K, init_a, init_b, shift

    def __call__(self, slot: SlotSpec) -> nn.Module:
        if not slot.dynamic or self.kind == "relu":
            return nn.ReLU6(inplace=True) if slot.max_slot else nn.Identity()
        K = self.K if slot.max_slot else 1
        init_a, init_b = (self.init_a, self.init_b) if slot.max_slot else ((1.0,), (0.0,))
        squeeze = squeeze_width(slot.channels, slot.reduction)
        if self.kind == "dyshiftmax":
            act = DynamicShiftMax(
                slot.channels,
                slot.groups,
                self.J,
                K,
                squeeze=squeeze,
                init_a=init_a,
                init_b=init_b,
                shift=self.shift,
            )
        elif self.kind == "static":
            act = StaticShiftMax(slot.channels, slot.groups, self.J, K, init_a=init_a, init_b=init_b, shift=self.shift)
        elif self.kind == "dyrelu":
            act = DynamicReLU(slot.channels, K, squeeze=squeeze)
        else:  # se_relu: SE gate (counted as no multiplies, DESIGN §3), ReLU6 in the max slots
            act = SqueezeExcite(slot.channels, rd_channels=squeeze, act_layer=nn.ReLU, gate_layer="hard_sigmoid")
            return nn.Sequential(act, nn.ReLU6(inplace=True)) if slot.max_slot else act
        # Table 6: "we add a ReLU when K=1 as only one element is left in the max operator"
        return nn.Sequential(act, nn.ReLU6(inplace=True)) if slot.max_slot and K == 1 else act


def describe_activation(act: nn.Module) -> str:
    """Short tag used by the per-block tables: ReLU6, DY(K,G,sq), static(K,G), DYReLU(K,sq), SE(sq), –."""
    parts = list(act) if isinstance(act, nn.Sequential) else [act]
    tags = []
    for m in parts:
        if isinstance(m, DynamicShiftMax):
            tags.append(f"DY({m.K},{m.groups},{m.coefficients.fc1.out_features})")
        elif isinstance(m, StaticShiftMax):
            tags.append(f"static({m.K},{m.groups})")
        elif isinstance(m, DynamicReLU):
            tags.append(f"DYReLU({m.K},{m.coefficients.fc1.out_features})")
        elif isinstance(m, SqueezeExcite):
            tags.append(f"SE({m.fc1.out_channels})")
        elif isinstance(m, nn.ReLU6):
            tags.append("ReLU6")
    return "+".join(tags) or "–"


def _depthwise(channels: int, kernel: int, stride: int, multipliers, conv: str) -> nn.Module:
    """The block's depth-wise unit (``conv``): channels x m1 x m2 outputs; Micro-Factorized by default."""
    out = channels * multipliers[0] * multipliers[1]
    return build_unit(conv, channels, out, stride, kernel, optional={"multipliers": tuple(multipliers)})


class LiteBlock(nn.Module):
    """Micro-Block-A: depthwise channel expansion (x2 then x2 in the authors' models), then one group-adaptive
    compress conv (Fig. 4a)."""

    def __init__(self, in_ch, out_ch, kernel, stride, g_c, acts, conv="micro_dw", multipliers=(2, 2), drop_path=0.0):
        super().__init__()
        self.kind, self.kernel, self.stride = "A", kernel, stride
        self.in_ch, self.hidden, self.out_ch = in_ch, in_ch * multipliers[0] * multipliers[1], out_ch
        a2, a3 = acts
        self.depthwise = _depthwise(in_ch, kernel, stride, multipliers, conv)
        self.act2 = a2.build
        self.shuffle2 = ChannelShuffles(in_ch, self.hidden // 2 if a2.dynamic else 1)
        self.compress = GroupPointwise(self.hidden, out_ch, g_c)
        self.act3 = a3.build
        self.shuffle3 = ChannelShuffles(g_c, out_ch // 2 if a3.dynamic and out_ch % 2 == 0 else 1)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.residual else nn.Identity()

    def forward(self, x):
        out = self.shuffle2(self.act2(self.depthwise(x)))
        out = self.shuffle3(self.act3(self.compress(out)))
        return self.drop_path(out) + x if self.residual else out


class RegularBlock(nn.Module):
    """Micro-Block-B/C: expand, Micro-Factorized depthwise, compress (Fig. 4b/c)."""

    def __init__(self, in_ch, out_ch, kernel, stride, hidden, g_e, g_c, acts, conv="micro_dw", drop_path=0.0):
        super().__init__()
        self.kind, self.kernel, self.stride = "C", kernel, stride
        self.in_ch, self.hidden, self.out_ch = in_ch, hidden, out_ch
        a1, a2, a3 = acts
        self.expand = GroupPointwise(in_ch, hidden, g_e)
        self.act1 = a1.build
        self.shuffle1 = ChannelShuffles(g_e)
        self.depthwise = _depthwise(hidden, kernel, stride, (1, 1), conv)
        self.act2 = a2.build
        # the authors' even/odd split after A2: C/4 groups when A1 and A2 are both dynamic, none when neither
        split = 4 if a1.dynamic and a2.dynamic else 2 if a1.dynamic or a2.dynamic else hidden
        self.shuffle2 = ChannelShuffles(hidden // split)
        self.compress = GroupPointwise(hidden, out_ch, g_c)
        self.act3 = a3.build
        self.shuffle3 = ChannelShuffles(g_c, out_ch // 2 if a3.dynamic else 1)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.residual else nn.Identity()

    def forward(self, x):
        out = self.shuffle1(self.act1(self.expand(x)))
        out = self.shuffle2(self.act2(self.depthwise(out)))
        out = self.shuffle3(self.act3(self.compress(out)))
        return self.drop_path(out) + x if self.residual else out


class HeadExpand(nn.Sequential):
    """The last row: group 1x1 expand (R x input) + its A3-type activation."""

    def __init__(self, in_ch, out_ch, g_e, act):
        super().__init__()
        self.expand = GroupPointwise(in_ch, out_ch, g_e)
        self.act3 = act


@dataclass
class _Slot:
    dynamic: bool
    build: nn.Module


class MicroNet(ClassifierNet):
    """MicroNet M0-M3 and their ablation variants; see the module docstring."""

    def __init__(
        self,
        config: str | MicroNetConfig = "m2",
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: str = "dyshiftmax",
        J: int = 2,
        K: int = 2,
        act_slots=None,
        groups="adaptive",
        lambda_: float = 1.0,
        lite_levels=("low",),
        width_mult: float | None = None,
        fc_width: int | None = None,
        dy_reduction: float | None = None,
        conv: str = "micro_dw",
        shift: str = "authors",
        stem=None,
        drop_rate: float | None = None,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
        **aliases,
    ):
        super().__init__()
        self.in_chans = in_chans
        if "lambda" in aliases:
            lambda_ = aliases.pop("lambda")
        if "dropout" in aliases:
            drop_rate = aliases.pop("dropout")
        if aliases:
            raise TypeError(f"MicroNet.__init__() got an unexpected keyword argument '{next(iter(aliases))}'")
        cfg = _resolve_config(config)
        self.config = cfg
        slots = cfg.act_slots if act_slots is None else _parse_choices(act_slots, SLOTS, "act_slots")
        levels = _parse_choices(lite_levels, LEVELS, "lite_levels")
        fixed_groups = _parse_groups(groups)
        if lambda_ <= 0:
            raise ValueError(f"lambda must be > 0 (got {lambda_})")
        check_conv(conv, MICRONET_UNITS)
        width_mult = cfg.width_mult if width_mult is None else width_mult
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0 (got {width_mult})")
        factory = ActivationFactory(activation, J, K, cfg.init_a, cfg.init_b, shift)
        reduction_mult = cfg.dy_reduction if dy_reduction is None else dy_reduction

        rows = _plan_rows(cfg, levels, width_mult, fixed_groups)
        g1, g2 = cfg.stem if stem is None else (int(stem[0]), int(stem[1]))
        plan = _plan_groups(g1 * g2, cfg.expansion, rows, fixed_groups, lambda_)
        self.stem = _stem(in_chans, g1, g2)

        def slot(name, channels, groups, reduction, max_slot=True, *, index) -> _Slot:
            dynamic = name in slots and not (index == 0 and name == "A2" and not cfg.first_a2_dynamic)
            spec = SlotSpec(dynamic, max_slot, channels, groups, reduction * reduction_mult)
            return _Slot(dynamic and activation != "relu", factory(spec))

        blocks, in_ch = [], g1 * g2
        levels = [("stem", in_ch, 2)]  # (module, channels, stride) of the stage layers
        rates = drop_path_rates(drop_path_rate, len(rows))
        for i, (row, (g_e, g_c)) in enumerate(zip(rows, plan)):
            blocks.append(_block(row, in_ch, g_e, g_c, functools.partial(slot, index=i), conv, rates[i]))
            levels.append((f"blocks.{i}", row.out, row.stride))
            in_ch = row.out
        head_ch, head_groups = cfg.expansion * in_ch, plan[-1][0]
        head_act = slot("A3", head_ch, head_groups, BASE_REDUCTION * cfg.head_squeeze, max_slot=False, index=len(rows))
        blocks.append(HeadExpand(in_ch, head_ch, head_groups, head_act.build))
        self.blocks = nn.Sequential(*blocks)
        self.num_features = head_ch
        self.head_hidden_size = fc_width or cfg.fc_width
        self.global_pool = _pool(global_pool)
        self.pre_logits = _swish_linear(head_ch, self.head_hidden_size)
        self.num_classes = num_classes
        self.drop_rate = cfg.drop_rate if drop_rate is None else drop_rate
        self.head_drop = nn.Dropout(self.drop_rate)
        self.classifier = _classifier(self.head_hidden_size, num_classes)
        self.grad_checkpointing = False
        init_kaiming(self, mode="fan_out", linear_std=0.01)
        self._init_feature_info(levels)

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem)] + [(f"blocks.{i}", block) for i, block in enumerate(self.blocks)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.hardswish(self.global_pool(F.relu6(x)))  # the authors' head: ReLU6, pool, h-swish
        if self.global_pool.pool_type != "":
            x = self.head_drop(self.pre_logits(x))
            return x if pre_logits else self.classifier(x)
        # unpooled: the FC layers (and their BatchNorm1d) act on the vector at every position
        n, h, w = x.shape[0], x.shape[2], x.shape[3]
        x = self.head_drop(self.pre_logits(x.permute(0, 2, 3, 1).flatten(0, 2)))
        if not pre_logits:
            x = self.classifier(x)
        return x.reshape(n, h, w, -1).permute(0, 3, 1, 2)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = _pool(global_pool).train(self.training)
        parameter = next(self.parameters())
        classifier = _classifier(self.head_hidden_size, num_classes, device=parameter.device, dtype=parameter.dtype)
        init_kaiming(classifier, linear_std=0.01)
        self.classifier = classifier.train(self.training)  # its BatchNorm1d takes the model's mode

    def _remove_head(self) -> None:
        self.pre_logits = nn.Identity()
        self.head_hidden_size = self.num_features
        self.reset_classifier(0, "")

    def block_table(self) -> list[dict]:
        """One dict per block (type, k, s, in, hidden, out, G_e, G_c, A1, A2, A3, skip): the spec's tables."""
        table, seen_lite = [], False
        for block in self.blocks:
            if isinstance(block, HeadExpand):
                conv = block.expand[0]
                row = {
                    "type": "head",
                    "k": None,
                    "s": 1,
                    "inp": conv.in_channels,
                    "hidden": None,
                    "out": conv.out_channels,
                    "G_e": conv.groups,
                    "G_c": None,
                    "A1": "–",
                    "A2": "–",
                    "A3": describe_activation(block.act3),
                    "skip": False,
                }
                table.append(row)
                continue
            regular = block.kind == "C"
            row = {
                "type": "A" if not regular else ("B" if seen_lite else "C"),
                "k": block.kernel,
                "s": block.stride,
                "inp": block.in_ch,
                "hidden": block.hidden,
                "out": block.out_ch,
                "G_e": block.expand.groups if regular else None,
                "G_c": block.compress.groups,
                "A1": describe_activation(block.act1) if regular else "–",
                "A2": describe_activation(block.act2),
                "A3": describe_activation(block.act3),
                "skip": block.residual,
            }
            seen_lite = not regular
            table.append(row)
        return table


def _pool(global_pool: str) -> SelectAdaptivePool2d:
    pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
    if pool.feat_mult() != 1:
        raise ValueError(f"global_pool='{global_pool}' changes the pooled width; use avg, max, avgmax or '' (none)")
    return pool


def _swish_linear(in_features: int, out_features: int, **device_dtype) -> nn.Sequential:
    """The authors' SwishLinear: Linear + BatchNorm1d + h-swish."""
    return nn.Sequential(
        nn.Linear(in_features, out_features, **device_dtype),
        nn.BatchNorm1d(out_features, **device_dtype),
        nn.Hardswish(),
    )


def _classifier(in_features: int, num_classes: int, **device_dtype) -> nn.Module:
    return _swish_linear(in_features, num_classes, **device_dtype) if num_classes > 0 else nn.Identity()


def _stem(in_chans: int, g1: int, g2: int) -> nn.Sequential:
    """3x1 conv (stride 2,1), 1x3 group conv (stride 1,2) expanding x g2, shuffle, ReLU6 (the authors')."""
    return nn.Sequential(
        nn.Conv2d(in_chans, g1, (3, 1), (2, 1), (1, 0), bias=False),
        nn.BatchNorm2d(g1),
        nn.Conv2d(g1, g1 * g2, (1, 3), (1, 2), (0, 1), groups=g1, bias=False),
        nn.BatchNorm2d(g1 * g2),
        ChannelShuffles(g1),
        nn.ReLU6(inplace=True),
    )


def _block(row: Row, in_ch: int, g_e: int, g_c: int, slot, conv: str, drop_path: float = 0.0) -> nn.Module:
    """One Micro-Block; ``slot(name, channels, shift_groups, reduction, max_slot)`` builds its activations."""
    r = BASE_REDUCTION * row.squeeze
    hidden = row.expansion * in_ch
    if row.kind == "A":
        multipliers = (2, row.expansion // 2) if row.expansion % 2 == 0 else (row.expansion, 1)
        acts = (slot("A2", hidden, in_ch, r), slot("A3", row.out, g_c, r / 2, max_slot=False))
        return LiteBlock(in_ch, row.out, row.kernel, row.stride, g_c, acts, conv, multipliers, drop_path)
    shift_groups = hidden // g_e if g_e != 1 else 1  # A2, after the depthwise (the authors' rule)
    acts = (
        slot("A1", hidden, g_e, r),
        slot("A2", hidden, shift_groups, r),
        slot("A3", row.out, g_c, r / 2 if row.out < hidden else r, max_slot=False),
    )
    return RegularBlock(in_ch, row.out, row.kernel, row.stride, hidden, g_e, g_c, acts, conv, drop_path)


def _resolve_config(config) -> MicroNetConfig:
    if isinstance(config, MicroNetConfig):
        return config
    known = {**CONFIGS, **SHARP_VARIANTS}
    if config not in known:
        raise ValueError(f"unknown MicroNet configuration '{config}'; known: {', '.join(sorted(known))}")
    return known[config]


def _parse_choices(value, allowed: Sequence[str], name: str) -> tuple[str, ...]:
    """A list, or a string like 'A1,A2' / 'A1A2' / 'low+high' / 'none', as a tuple of allowed names."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return ()
    if isinstance(value, str):
        found = [a for a in allowed if a.lower() in value.lower()]
        rest = value.lower()
        for a in found:
            rest = rest.replace(a.lower(), "")
        if rest.strip(" ,+;_-"):
            raise ValueError(f"{name}='{value}' has unknown parts; give a list of {', '.join(allowed)}, or none")
        return tuple(found)
    values = tuple(str(v) for v in value)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name} takes {', '.join(allowed)}; got {', '.join(unknown)}")
    return values


def _parse_groups(groups) -> int | None:
    if groups in ("adaptive", None):
        return None
    try:
        value = int(groups)
    except (TypeError, ValueError):
        raise ValueError(f"groups must be 'adaptive' or a positive integer; got '{groups}'") from None
    if value < 1:
        raise ValueError(f"groups must be 'adaptive' or a positive integer; got {value}")
    return value


def _plan_rows(cfg: MicroNetConfig, levels, width_mult: float, fixed_groups: int | None) -> list[Row]:
    """Apply lite_levels and width_mult (block widths; the stem is a separate knob).

    A block switched between lite and regular keeps its hidden width (the paper's C of Table 1): an A-row
    becomes expand 1x1 to 4x its input, a C-row becomes a depthwise expansion x2 then x(R/2).
    """
    rows = []
    quantum = 4 if fixed_groups is None else math.lcm(4, fixed_groups)
    for row in cfg.rows:
        level = "low" if row.kind == "A" else "high"
        scaled = width_mult != 1.0 or row.out % quantum
        out = make_divisible(row.out * width_mult, quantum) if scaled else row.out
        expansion = row.expansion or (4 if row.kind == "A" else cfg.expansion)
        rows.append(replace(row, kind="A" if level in levels else "C", out=out, expansion=expansion))
    return rows


def _plan_groups(stem_ch: int, expansion: int, rows: list[Row], fixed: int | None, lam: float) -> list[tuple[int, int]]:
    """(G_e, G_c) per block and, last, (G_e of the head, 0): Eq. 3 pairs across block boundaries."""
    widths = [stem_ch] + [r.out for r in rows]
    hidden = [r.expansion * widths[i] for i, r in enumerate(rows)]
    if fixed is not None:
        return [(fixed if r.kind == "C" else 0, fixed) for r in rows] + [(fixed, 0)]
    plan = []
    g_e = nearest_divisor(stem_ch, lam * math.sqrt(stem_ch)) if rows[0].kind == "C" else 0
    for i, row in enumerate(rows):
        nxt_hidden = hidden[i + 1] if i + 1 < len(rows) else expansion * row.out
        nxt_expands = i + 1 == len(rows) or rows[i + 1].kind == "C"
        g_c, g_next = group_pair(hidden[i], row.out, nxt_hidden if nxt_expands else row.out, lam)
        plan.append((g_e, g_c))
        g_e = g_next if nxt_expands else 0
    return plan + [(g_e, 0)]


VARIANTS = ("m0", "m1", "m2", "m3", "m1s", "m2s", "m3s")
default_cfgs = generate_default_cfgs(
    {
        name: cfg
        for variant in VARIANTS
        for name, cfg in dataset_cfgs(
            f"micronet_{variant}", "micronet", ["imagenet"], 32, "stem.0", ("classifier.0", "classifier.1")
        ).items()
    }
)
for _name in VARIANTS:
    register(f"micronet_{_name}", MicroNet, config=_name)
