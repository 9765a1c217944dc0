"""One unit table, one knob: every network that swaps its spatial unit takes ``conv=<name of effconv.ops.UNITS>``,
and a name builds the same operator in every network."""

import pytest
import torch

from effconv import models
from effconv.config import check_group_choices
from effconv.errors import UserError
from effconv.models.micronet import MicroNet
from effconv.ops.mixconv import MixConvUnit
from effconv.ops.multiception_baselines import MixConvSeparable
from effconv.ops.separable import DepthwiseConv
from effconv.profile import count_cost


def units_of(model, cls) -> list:
    return [m for m in model.modules() if type(m) is cls]


def test_a_unit_name_is_one_operator_in_every_network():
    mix = models.create({"name": "mobilenetv1_mix", "conv": "mixconv", "groups": 2, "width_mult": 0.25}, 10)
    sep = models.create({"name": "resnet20_cifar", "conv": "mixconv_sep"}, 10)
    assert len(units_of(mix, MixConvUnit)) == 13 and not units_of(mix, MixConvSeparable)
    assert len(units_of(sep, MixConvSeparable)) == 9 and not units_of(sep, MixConvUnit)
    # the depth-wise MixConv cannot change the width of ResNet-20's stage entries: the error names its other form
    with pytest.raises(UserError, match=r"keeps the width: in_ch=16 != out_ch=32; .* use conv=mixconv_sep$"):
        models.create({"name": "resnet20_cifar", "conv": "mixconv"}, 10)


def test_mobilenet_mix_swaps_in_other_depthwise_units():
    """conv=dw is the same network as MixConv with one group (same params and MAdds); xsepconv fits too."""
    base = {"name": "mobilenetv2_mix", "width_mult": 0.35, "kernel": 5}
    mixconv, dw = (models.create({**base, "conv": conv}, 10) for conv in ("mixconv", "dw"))
    assert len(units_of(dw, DepthwiseConv)) == 17
    a, b = (count_cost(m, (3, 32, 32)) for m in (mixconv, dw))
    assert (a.params, a.madds) == (b.params, b.madds)
    xsep = models.create({**base, "conv": "xsepconv", "kernel": None}, 10)
    assert xsep(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_micronet_conv_dw_is_a_kxk_depthwise_with_channel_multiplier():
    """Table 2's MobileNet rows: a k x k depth-wise conv (lite blocks: x4 channels) instead of Micro-Factorized."""
    net = MicroNet("m0", conv="dw", num_classes=10)
    lite = net.blocks[0].depthwise
    assert type(lite) is DepthwiseConv and lite[0].groups == lite[0].in_channels == lite[0].out_channels // 4
    default = MicroNet("m0", num_classes=10)
    assert type(default.blocks[0].depthwise).__name__ == "MicroFactorizedDepthwiseUnit"


def test_renamed_knobs_name_the_new_one():
    with pytest.raises(UserError, match=r"^model mobilenetv3_small_xsep: dw is now conv \(the same values: dw, "):
        models.create({"name": "mobilenetv3_small_xsep", "dw": "xsepconv"}, 10)
    with pytest.raises(UserError, match=r"^model\.depthwise is now model\.conv \(depthwise=micro is conv=micro_dw"):
        check_group_choices(["model=micronet_m1", "model.depthwise=micro"])
