"""timm's uniform model interface, shared by our networks.

``forward_features`` -> ``forward_head`` (global pool, dropout, classifier), ``get_classifier``,
``reset_classifier``, ``num_classes``, ``num_features``: what timm's tools and our fine-tuning rely on.
Networks with a different head (DiCENet's grouped head, MicroNet's two-FC head) override the head methods.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ClassifierNet(nn.Module):
    """Subclasses build their layers, set ``num_features`` and call ``_init_head``."""

    num_classes: int
    num_features: int

    def _init_head(self, num_classes: int, drop_rate: float) -> None:
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3)) if x.ndim == 4 else x
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def init_kaiming(module: nn.Module, mode: str = "fan_out", linear_std: float | None = None) -> None:
    """Kaiming-normal convs, unit BN, zero biases; linear layers normal(std) or PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def uniform_linear_init(linear: nn.Linear) -> None:
    """Uniform +-1/sqrt(out) (TensorFlow's dense init used by the MnasNet/MixNet family)."""
    bound = 1.0 / math.sqrt(linear.out_features)
    nn.init.uniform_(linear.weight, -bound, bound)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
