"""timm's uniform model interface, shared by our networks.

* Classification: ``forward_features`` -> ``forward_head`` (global pool, dropout, classifier),
  ``get_classifier``, ``reset_classifier(num_classes, global_pool)``, ``num_classes``, ``num_features``,
  ``head_hidden_size`` (the pre-logits width).
* Feature extraction: ``feature_info`` (module, channels, total stride of each level),
  ``forward_intermediates`` and ``prune_intermediate_layers``, which timm's ``features_only=True`` uses
  (``FeatureGetterNet``); the levels are module outputs, so timm's hook and fx extractors find them too.
* ``set_grad_checkpointing``.

A network lists the layers ``forward_features`` runs (``feature_layers``: module name and module, in order;
by default the children of ``self.features``) and marks its levels with ``_init_feature_info``: the last
layer at each resolution, as timm marks stage ends. Layers after the last level (a final 1x1 conv, a final
ReLU) are the network's tail: part of ``forward_features``, of no level.

Networks with a different head (DiCENet's grouped head, MicroNet's two-FC head) override the head methods.
"""

import math
from collections.abc import Sequence

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint


class ClassifierNet(nn.Module):
    """Subclasses build their layers, set ``num_features``, call ``_init_head`` and ``_init_feature_info``."""

    def _init_head(self, num_classes: int, drop_rate: float, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.head_drop = nn.Dropout(drop_rate)
        self.reset_classifier(num_classes, global_pool)

    def _init_feature_info(self, layers: Sequence[tuple[str, int, int]]) -> None:
        """``feature_info`` from the layers of the network's stages: (module name, output channels, stride)."""
        self.feature_info = feature_levels(layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.features, x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for ``num_classes`` (0: none); ``global_pool`` '' keeps the feature map unpooled,
        'avg' / 'max' / 'avgmax' / 'catavgmax' pool it (timm's ``SelectAdaptivePool2d``); None keeps the pooling.
        New modules take the model's device, dtype and training mode."""
        self.num_classes = num_classes
        if global_pool is not None:
            pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))  # "": keep the map
            self.global_pool = pool.train(self.training)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.fc = new_layer(self, nn.Linear, self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them."""
        self.grad_checkpointing = enable

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        """The layers ``forward_features`` runs, in order, with their module names."""
        return [(f"features.{i}", layer) for i, layer in enumerate(self.features)]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's API: the outputs of the levels ``indices`` selects (None: all; an int n: the last n; a list,
        negative entries counted from the end), in forward order, and unless ``intermediates_only`` the final
        features first: ``forward_features``, or with ``stop_early`` the output of the last level taken (no
        layer after it runs; the tail runs only after the last level). ``norm`` changes nothing: no network
        here ends its stages with a norm layer."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW' (these are convolutional feature maps), got '{output_fmt}'")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        positions = self._level_positions()
        taps = {positions[i] for i in take_indices}
        layers = self.feature_layers()
        if stop_early and max_index < len(positions) - 1:
            layers = layers[: positions[max_index] + 1]
        intermediates = []
        for i, (_, layer) in enumerate(layers):
            x = checkpoint(layer, x, use_reentrant=False) if self.grad_checkpointing else layer(x)
            if i in taps:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
        self, indices: int | list[int] | None = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop what the levels ``indices`` do not need (timm's rule): the layers after the last of them, the tail
        with the head or the norm (``prune_head`` / ``prune_norm``), the head with ``prune_head`` or when layers
        went; the network's features then end at that level. Returns the levels' absolute indices (what timm's
        ``FeatureGetterNet`` asks for)."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        layers = self.feature_layers()
        keep_all = max_index == len(self.feature_info) - 1 and not (prune_head or prune_norm)
        cut = len(layers) if keep_all else self._level_positions()[max_index] + 1
        for name, _ in layers[cut:]:
            parent, _, child = name.rpartition(".")
            setattr(self.get_submodule(parent) if parent else self, child, nn.Identity())
        if cut < len(layers):
            self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_head or cut < len(layers):
            self._remove_head()
        return take_indices

    def _remove_head(self) -> None:
        """The head of a pruned network: none (its forward returns the unpooled feature map)."""
        self.reset_classifier(0, "")

    def _level_positions(self) -> list[int]:
        names = [name for name, _ in self.feature_layers()]
        return [names.index(level["module"]) for level in self.feature_info]


def new_layer(model: nn.Module, layer: type[nn.Module], *args) -> nn.Module:
    """``layer(*args)`` on the device and in the dtype of ``model``'s parameters, in its training mode."""
    parameter = next(model.parameters(), None)
    where = {} if parameter is None else {"device": parameter.device, "dtype": parameter.dtype}
    return layer(*args, **where).train(model.training)


def feature_levels(layers: Sequence[tuple[str, int, int]]) -> list[dict]:
    """timm's ``feature_info`` from a network's stage layers in forward order, as (module name, output
    channels, stride): a level at the last layer of each resolution, i.e. before every down-sampling layer
    and at the end, with its total stride as ``reduction``."""
    levels, reduction = [], 1
    for i, (name, channels, stride) in enumerate(layers):
        reduction *= stride
        if i + 1 == len(layers) or layers[i + 1][2] > 1:
            levels.append({"module": name, "num_chs": channels, "reduction": reduction})
    return levels


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


def drop_path_rates(drop_path_rate: float, blocks: int) -> list[float]:
    """timm's stochastic-depth schedule: the rate rises linearly from 0 (first residual block) to
    ``drop_path_rate`` (last), as in timm's ConvNeXt and Swin."""
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    return [drop_path_rate * i / max(blocks - 1, 1) for i in range(blocks)]
