"""sacmehta/EdgeNets checkpoints -> effconv's DiCENet and ShuffleNetV2 (``effconv.models.dicenet``).

Classification model-zoo files are bare state dicts (``train_classification.py`` saves
``model.module.state_dict()``). They pair with ours by position once three registration differences are undone:

* a DiCE unit (EdgeNets ``DICE``) registers its width-wise kernel before the height-wise one; ours the other
  way round. Both are (H or W, 1, 3, 3), equal at square build sizes, so a plain positional copy would load
  and compute the wrong function: inside a unit the tensors are matched by name (``DICE_NAMES``);
* a ShuffleNetV2 strided block (``StridedShuffleBlock``) registers ``layer_right`` before ``layer_left``;
* the classifier is a 1x1 conv (1000, C, 1, 1); ours is ``nn.Linear`` (the pairing drops the singletons).

The BN and PReLU over a DimConv's 3C outputs (``br_act``) run before EdgeNets' 3-way shuffle, so their channels
are ordered [C depth | C height | C width]; ours run after the interleave (depth_0, height_0, width_0,
depth_1, ...): channel 3i + b of ours is channel bC + i of theirs (``interleaved``).

Segmentation checkpoints (``model/segmentation``) hold the classification network under ``base_net.`` without
level5 and the classifier (the segmentation model deletes them), beside the segmentation head. They
initialise levels 1-4 (level2 is a max-pool); level5 and the head keep the model's initialisation, and the
segmentation head, which has no counterpart here, is left out.
"""

from __future__ import annotations

import torch

from effconv.models.dicenet import DiCENet
from effconv.models.formats.layout import (
    Items,
    Layout,
    LayoutMismatch,
    classifier_prefixes,
    move_before,
    pair_by_position,
)

# EdgeNets DICE tensor name -> ours (DiceUnit), for the tensors whose order differs or that are checked by name
DICE_NAMES = {
    "conv_channel.weight": "spatial.weight_depth",
    "conv_height.weight": "spatial.weight_height",
    "conv_width.weight": "spatial.weight_width",
    "br_act.br.0.": "spatial.norm.",
    "br_act.br.1.": "spatial.act.",
    "weight_avg_layer.cbr.": "fusion.local.",
    "proj_layer.cbr.": "fusion.spatial.",
    "linear_comb_layer.": "fusion.gate.",
}
SEGMENTATION_PREFIX = "base_net."
SEGMENTATION_LEVELS = ("level1.", "level2.", "level3.", "level4.")


def interleaved(tensor: torch.Tensor) -> torch.Tensor:
    """[C depth | C height | C width] -> (depth_i, height_i, width_i) per channel i."""
    return tensor.reshape(3, -1).t().reshape(-1)


def _height_before_width(items: Items) -> Items:
    position = {key: i for i, (key, _) in enumerate(items)}
    items = list(items)
    for key, i in list(position.items()):
        if key.endswith("conv_width.weight"):
            j = position.get(key.replace("conv_width.weight", "conv_height.weight"))
            if j is not None and j > i:
                items[i], items[j] = items[j], items[i]
    return items


def _left_before_right(items: Items) -> Items:
    return move_before(items, lambda k: ".layer_left." in k, lambda k: ".".join(k.split(".")[:2]))


def _in_our_order(state_dict) -> Items:
    items = [(k, interleaved(v) if ".br_act.br." in k and v.ndim == 1 else v) for k, v in state_dict.items()]
    return _left_before_right(_height_before_width(items))


def _check_dice_names(paired_keys: list[tuple[str, str]]) -> None:
    for theirs, ours in paired_keys:
        for name, own_name in DICE_NAMES.items():
            if name in theirs and own_name not in ours:
                raise LayoutMismatch(f"'{theirs}' pairs with '{ours}', not with a DiCE unit's {own_name}")


def _pair(items: Items, targets: Items, model) -> dict[str, torch.Tensor]:
    paired = pair_by_position(items, targets, classifier_prefixes(model))
    _check_dice_names(list(zip([k for k, _ in items], paired)))
    return paired


def _matches_classification(state_dict) -> bool:
    return "level1.cbr.0.weight" in state_dict


def _convert_classification(state_dict, model):
    return _pair(_in_our_order(state_dict), list(model.state_dict().items()), model)


def _matches_segmentation(state_dict) -> bool:
    return f"{SEGMENTATION_PREFIX}level1.cbr.0.weight" in state_dict


def _convert_segmentation(state_dict, model):
    base = {k[len(SEGMENTATION_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(SEGMENTATION_PREFIX)}
    targets = [(k, v) for k, v in model.state_dict().items() if k.startswith(SEGMENTATION_LEVELS)]
    return _pair(_in_our_order(base), targets, model)


CLASSIFICATION = Layout(
    "edgenets",
    "a sacmehta/EdgeNets classification state dict",
    (DiCENet,),
    _matches_classification,
    _convert_classification,
)
SEGMENTATION = Layout(
    "edgenets_segmentation",
    "a sacmehta/EdgeNets DiCENet segmentation state dict (levels 1-4 under 'base_net.')",
    (DiCENet,),
    _matches_segmentation,
    _convert_segmentation,
    untrained=("level5.", "head_proj.", "fc."),
)
