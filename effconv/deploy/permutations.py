"""Channel permutations (MicroNet's shuffles) folded into the layer that produces their input.

A channel shuffle moves every value once: a full pass over the activation for no arithmetic. When the only
reader of a layer's output is the shuffle, the layer can produce the permuted channels itself:

* after a Shift-Max in its inference form (``ShiftMaxInference``): the permutation goes into its gather
  indices and coefficient rows (``permute_output``), so the shuffle costs nothing;
* after a dense conv or linear layer (groups = 1), or MicroNet's composed stem conv: its output rows are
  permuted.

A permutation whose input is read by anything else (a residual branch, the two halves of a ShuffleNet split)
stays where it is: folding it would hand the other reader permuted channels.
"""

from __future__ import annotations

import torch
from torch import nn

from effconv.deploy.dataflow import Dataflow, replace_module
from effconv.deploy.separable import ComposedSeparableConv
from effconv.deploy.shift_max import ShiftMaxInference
from effconv.models.micronet import ChannelShuffles


@torch.no_grad()
def channel_order(module: nn.Module, channels: int) -> torch.Tensor | None:
    """``order`` with module(x) == x[:, order] for a pure channel permutation, else None."""
    probe = torch.arange(channels, dtype=torch.float64).view(1, channels, 1, 1)
    out = module(probe)
    if out.shape != probe.shape:
        return None
    order = out.view(-1).round().long()
    if not torch.equal(order.sort().values, torch.arange(channels)):
        return None
    return order


def _permute_rows(layer: nn.Module, order: torch.Tensor) -> nn.Module | None:
    if isinstance(layer, nn.Conv2d) and layer.groups == 1:
        out = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            1,
            layer.bias is not None,
            layer.padding_mode,
        )
    elif isinstance(layer, nn.Linear):
        out = nn.Linear(layer.in_features, layer.out_features, layer.bias is not None)
    else:
        return None
    if type(layer) not in (nn.Conv2d, nn.Linear):  # a subclass may do more than its weights say
        return None
    out = out.to(layer.weight)
    with torch.no_grad():
        out.weight.copy_(layer.weight[order])
        if layer.bias is not None:
            out.bias.copy_(layer.bias[order])
    return out


def fold_permutations(model: nn.Module, flow: Dataflow) -> int:
    """Fold every foldable channel shuffle into its producer; returns the count."""
    folded = 0
    for shuffle in [m for m in model.modules() if isinstance(m, ChannelShuffles) and m.groups]:
        source = flow.first_input.get(id(shuffle))
        producer = flow.producer.get(id(source)) if source is not None else None
        if producer is None or not flow.feeds(producer, shuffle):
            continue
        order = channel_order(shuffle, source.shape[1])
        if order is None:
            continue
        if isinstance(producer, ShiftMaxInference) or (
            isinstance(producer, ComposedSeparableConv) and producer.groups == 1
        ):
            producer.permute_output(order)
        else:
            permuted = _permute_rows(producer, order)
            if permuted is None:
                continue
            replace_module(model, producer, permuted)
        replace_module(model, shuffle, nn.Identity())
        folded += 1
    return folded
