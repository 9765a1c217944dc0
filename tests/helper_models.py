"""Test-only networks, registered with timm under names no real model uses."""

from __future__ import annotations

import torch
from timm.models import generate_default_cfgs
from torch import nn

from effconv.models import our_models, register
from effconv.models.base import ClassifierNet
from effconv.models.pretrained_cfgs import dataset_cfgs


class TinyMLP(ClassifierNet):
    """A BN-free network (flatten -> linear -> ReLU -> linear) for exact optimizer/accumulation checks.

    ``norm=True`` puts a BatchNorm1d after the hidden linear layer: a small, well-conditioned BN network for the
    SyncBN checks. ``nan_on_call=k`` makes the k-th training forward return NaN, to test the non-finite stop.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        hidden: int = 32,
        drop_rate: float = 0.0,
        norm: bool = False,
        nan_on_call: int | None = None,
    ):
        super().__init__()
        layers = [nn.Flatten(), nn.Linear(in_chans * img_size * img_size, hidden)]
        self.features = nn.Sequential(*layers, *([nn.BatchNorm1d(hidden)] if norm else []), nn.ReLU())
        self.num_features = hidden
        self._init_head(num_classes, drop_rate)
        self.nan_on_call = nan_on_call
        self.calls = 0

    def forward_head(self, x, pre_logits: bool = False):
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.nan_on_call is not None and self.calls >= self.nan_on_call:
                out = out * torch.tensor(float("nan"))
        return out


default_cfgs = generate_default_cfgs(dataset_cfgs("test_tiny_mlp", None, ["digits"], None, None, "fc"))
if "test_tiny_mlp" not in our_models():
    register("test_tiny_mlp", TinyMLP)
