"""guoqingbao/Multiception state dicts -> effconv's CIFAR ResNets, SE-ResNet, Shake-Shake and MobileNetV2-STL10.

The authors' ``main.py`` never saves a checkpoint; what exists is the ``state_dict()`` of the
``nn.DataParallel`` model it trains (``module.`` keys, stripped by the file reader). Their ResNet-20/50 and
MobileNetV2 register the same tensors as ours in the same order. The other differences:

* SE-ResNet: ``SELayer.fc.0`` / ``fc.2`` are bias-free ``nn.Linear`` (C/r, C) and (C, C/r); ours are timm's
  ``SEModule`` 1x1 convs with two more singleton dimensions (the pairing adds them).
* ShakeNet: each ``ShakeBlock`` registers ``shortcut`` before ``branch1`` / ``branch2`` (ours after), and
  holds a ``Shortcut`` even where input and output widths are equal, where it is never called
  (``self.equal_io and None or Shortcut(...)``). Those tensors go to ``unused_shortcut`` when the model was
  built with ``unused_shortcuts=True``, and are dropped otherwise (the function is the same).
"""

from __future__ import annotations

from effconv.models.cifar_resnet import CifarResNet
from effconv.models.formats.layout import Items, Layout, classifier_prefixes, move_before, pair_by_position
from effconv.models.mobilenetv2_stl10 import MobileNetV2Stl10
from effconv.models.shakeshake import ShakeResNet


def _matches(state_dict) -> bool:
    resnet = "conv1.weight" in state_dict and "fc.weight" in state_dict  # resnet.py, senet.py
    mobilenet = "features.0.0.weight" in state_dict and "classifier.1.weight" in state_dict  # mobilenet.py
    shakenet = "c_in.weight" in state_dict and "fc_out.weight" in state_dict  # shakenet.py
    return resnet or mobilenet or shakenet


def _block(key: str) -> str:
    return ".".join(key.split(".")[:2])  # layer<i>.<j>


def _is_unused_shortcut(key: str, state_dict) -> bool:
    """A shortcut of a block with equal input and output widths (conv1: (out/2, in, 1, 1) with in == out)."""
    if ".shortcut." not in key:
        return False
    conv1 = state_dict[key.split(".shortcut.")[0] + ".shortcut.conv1.weight"]
    return conv1.shape[1] == 2 * conv1.shape[0]


def _shake_order(state_dict, model) -> Items:
    items = list(state_dict.items())
    if "c_in.weight" not in state_dict:
        return items
    items = move_before(items, lambda k: ".shortcut." not in k, _block)
    if not any(".unused_shortcut." in k for k in model.state_dict()):
        items = [(k, v) for k, v in items if not _is_unused_shortcut(k, state_dict)]
    return items


def _convert(state_dict, model):
    return pair_by_position(
        _shake_order(state_dict, model), list(model.state_dict().items()), classifier_prefixes(model)
    )


LAYOUT = Layout(
    "multiception",
    "a guoqingbao/Multiception ResNet / SE-ResNet / ShakeNet / MobileNetV2 state dict ('module.' optional)",
    (CifarResNet, ShakeResNet, MobileNetV2Stl10),
    _matches,
    _convert,
)
