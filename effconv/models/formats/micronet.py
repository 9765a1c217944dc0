"""liyunsheng13/micronet checkpoints -> effconv's MicroNet.

``main.py`` saves ``{'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}`` of a model trained inside
``nn.DataParallel`` (``module.`` keys); its evaluation path also takes a bare state dict, so the released
``micronet-m*.pth`` files may be either (both reach this converter as a plain state dict: the file reader
takes ``state_dict`` out of the training dict and strips ``module.``). Once stripped, the tensors pair with
ours one to one, in order, with equal shapes; only the names differ (``features.0.stem.0.conv.0.weight`` ->
``stem.0.weight``, the first classifier ``SwishLinear`` -> ``pre_logits``, the last -> ``classifier``).
"""

from __future__ import annotations

from effconv.models.formats.layout import Layout, classifier_prefixes, pair_by_position
from effconv.models.micronet import MicroNet


def _matches(state_dict) -> bool:
    return any(key.startswith("features.0.stem.") for key in state_dict)


def _convert(state_dict, model):
    return pair_by_position(list(state_dict.items()), list(model.state_dict().items()), classifier_prefixes(model))


LAYOUT = Layout(
    "micronet",
    "a liyunsheng13/micronet MicroNet state dict (training dict or bare, 'module.' optional)",
    (MicroNet,),
    _matches,
    _convert,
)
