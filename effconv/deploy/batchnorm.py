"""BatchNorm folded into the convolution or linear layer that feeds it.

In eval mode a BatchNorm is a per-channel affine map y = s x + t with s = gamma / sqrt(var + eps) and
t = beta - s mean, so conv -> BN equals one conv with weights scaled by s and bias s b + t: one pass over the
activation fewer. torch's ``fuse_conv_bn_eval`` / ``fuse_linear_bn_eval`` do the arithmetic; what they cannot
know is whether the fold is allowed. It is when the BN's input is exactly the layer's output and nothing else
reads that output (``effconv.deploy.dataflow``), which a traced forward pass decides for any network.

Producers handled: ``nn.Conv2d`` (and subclasses such as timm's ``Conv2dSame``, which pads before the conv),
``nn.Linear`` (BatchNorm1d), timm's ``MixedConv2d`` (each kernel group's conv takes its slice of the BN) and
effconv's ``MixConv`` (weights scaled per group; the shift t stays as a ``ChannelBias``, since the operator has
no bias). Consumers: ``nn.BatchNorm1d/2d`` and timm's ``BatchNormAct2d``, whose activation stays.
"""

from __future__ import annotations

import copy

import torch
from timm.layers import BatchNormAct2d, MixedConv2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from effconv.deploy.dataflow import Dataflow, replace_module
from effconv.ops.mixconv import MixConv


class ChannelBias(nn.Module):
    """x + b per channel: what is left of a BatchNorm folded into a layer that has no bias of its own."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("bias", bias.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, t) with bn(x) = s x + t in eval mode."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


def _after_bn(bn: nn.Module) -> nn.Module:
    """What replaces a folded BN: nothing, or the activation timm's BatchNormAct2d applies after it."""
    if isinstance(bn, BatchNormAct2d):
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def _folded(layer: nn.Module, bn: nn.Module) -> nn.Module | None:
    """``layer`` with ``bn`` folded in, or None when this pair cannot be folded."""
    if not bn.track_running_stats or bn.running_mean is None:
        return None
    if isinstance(layer, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and layer.out_channels == bn.num_features:
        return fuse_conv_bn_eval(layer, bn)
    if isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d) and layer.out_features == bn.num_features:
        return fuse_linear_bn_eval(layer, bn)
    if isinstance(layer, MixedConv2d) and isinstance(bn, nn.BatchNorm2d):
        return _fold_mixed_conv(layer, bn)
    return None


def _fold_mixed_conv(layer: MixedConv2d, bn: nn.BatchNorm2d) -> MixedConv2d | None:
    """timm's MixedConv2d is one conv per kernel group, outputs concatenated: each takes its slice of the BN."""
    if not all(isinstance(conv, nn.Conv2d) for conv in layer.values()):
        return None
    scale, shift = bn_scale_shift(bn)
    folded, start = copy.deepcopy(layer), 0
    with torch.no_grad():
        for name, conv in layer.items():
            part = slice(start, start + conv.out_channels)
            start += conv.out_channels
            folded[name] = scaled_conv(conv, scale[part], shift[part])
    return folded


def scaled_conv(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """A copy of ``conv`` computing scale * conv(x) + shift per output channel."""
    out = copy.deepcopy(conv)
    with torch.no_grad():
        out.weight.mul_(scale.view(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        out.bias = nn.Parameter(bias.clone())
    return out


def _fold_mixconv(layer: MixConv, bn: nn.BatchNorm2d) -> tuple[nn.Module, nn.Module]:
    """MixConv has no bias: its weights take the scale, a ChannelBias replaces the BN."""
    scale, shift = bn_scale_shift(bn)
    folded, start = copy.deepcopy(layer), 0
    with torch.no_grad():
        for weight in folded.weights:
            weight.mul_(scale[start : start + weight.shape[0]].view(-1, 1, 1, 1))
            start += weight.shape[0]
    return folded, ChannelBias(shift)


BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def fold_batchnorm(model: nn.Module, flow: Dataflow) -> int:
    """Fold every BatchNorm whose input only it reads into the layer producing that input; returns the count."""
    folded = 0
    for bn in [m for m in model.modules() if isinstance(m, BN_TYPES)]:
        source = flow.first_input.get(id(bn))
        layer = flow.producer.get(id(source)) if source is not None else None
        if layer is None or bn.training or not flow.feeds(layer, bn):
            continue
        if not all(flow.reads_only_inside(m) for m in (*layer.modules(), bn)):
            continue
        if isinstance(layer, MixConv) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            new_layer, new_bn = _fold_mixconv(layer, bn)
        else:
            new_layer = _folded(layer, bn)
            new_bn = _after_bn(bn)
        if new_layer is None:
            continue
        replace_module(model, layer, new_layer)
        replace_module(model, bn, new_bn)
        folded += 1
    return folded
