"""mobilenetv3_small_xsep: timm's MobileNetV3-Small with conv=dw, the §4.2 replacement rule, the 2x2 layers'
padding plan, the small-input strides and the costs of reference-architectures §3.3."""

from __future__ import annotations

import pytest
import timm
import torch

import effconv  # noqa: F401  (registers the models)
from effconv.errors import UserError
from effconv.models import create
from effconv.ops.even_padding import FOUR_GROUPS, PAD_DIRECTIONS
from effconv.ops.xsepconv import XSEPCONV_FORMS, SeparatedDepthwiseConv, XSepConv
from effconv.profile import count_cost

RB, LT, LB, RT = PAD_DIRECTIONS


def build(**knobs):
    return timm.create_model("mobilenetv3_small_xsep", **knobs)


def test_dw_is_timm_mobilenetv3_small_100():
    """Same layers, same state-dict, same init and outputs from the same seed, at ImageNet strides."""
    torch.manual_seed(0)
    ours = build(conv="dw", small_input="none", num_classes=1000).eval()
    torch.manual_seed(0)
    ref = timm.create_model("mobilenetv3_small_100").eval()
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert all(torch.equal(ours_sd[k], ref_sd[k]) for k in ref_sd)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
    assert sum(p.numel() for p in ours.parameters()) == 2_542_856  # timm's 2.54 M


@pytest.mark.parametrize("width,timm_name", [(0.5, "mobilenetv3_small_050"), (0.75, "mobilenetv3_small_075")])
def test_width_multiplier_is_timms(width, timm_name):
    ours, ref = build(conv="dw", width_mult=width, num_classes=1000), timm.create_model(timm_name)
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in ref.state_dict().values()]


# reference-architectures §3.3, measured with this construction; issue 6 allows +-0.5 %
COSTS = [  # small_input, classes, input, DW (M params, M MAdds), XSepConv, Delta MAdds %
    ("stem_block1", 200, 56, (1.7229, 51.63), (1.7050, 49.18), -4.75),  # the paper's Tiny-ImageNet figure
    ("stem_block1", 10, 32, (1.5281, 17.51), (1.5102, 16.71), -4.57),  # our CIFAR/SVHN choice
    ("stem", 10, 32, (1.5281, 5.50), (1.5102, 5.30), -3.64),
    ("none", 10, 32, (1.5281, 2.17), (1.5102, 2.12), -2.31),
]


@pytest.mark.parametrize("small_input,classes,size,dw_target,xsep_target,delta", COSTS)
def test_costs_against_the_reconstruction(small_input, classes, size, dw_target, xsep_target, delta):
    costs = {}
    for dw, target in (("dw", dw_target), ("xsepconv", xsep_target)):
        cost = count_cost(build(conv=dw, num_classes=classes, small_input=small_input), (3, size, size))
        assert cost.params_m == pytest.approx(target[0], rel=5e-3)
        assert cost.madds_m == pytest.approx(target[1], rel=5e-3)
        costs[dw] = cost
    change = 100 * (costs["xsepconv"].madds - costs["dw"].madds) / costs["dw"].madds
    assert change == pytest.approx(delta, abs=0.1 if size == 56 else 0.01)
    # six layers lose (25 - 14) c or (25 - 10) c weights, the two extra BNs per layer included
    assert costs["dw"].params - costs["xsepconv"].params == 7 * (240 + 240 + 120 + 144) + 11 * (576 + 576)


def _depthwise_layers(model):
    """(form, kernel, stride, channels) of every block's depth-wise position, in forward order."""
    found = []
    for stage in model.blocks:
        for block in stage:
            conv = getattr(block, "conv_dw", None)
            if isinstance(conv, (XSepConv, SeparatedDepthwiseConv)):
                row = conv.conv_1xk
                found.append((type(conv).__name__, row.kernel_size[1], row.stride[1], row.in_channels))
            elif conv is not None:
                found.append(("dw", conv.kernel_size[0], conv.stride[0], conv.in_channels))
    return found


def test_replacement_rule_and_padding_plan():
    model = build(conv="xsepconv")
    assert _depthwise_layers(model) == [
        ("dw", 3, 1, 16),  # first block at stride 1 (small_input=stem_block1)
        ("dw", 3, 2, 72), ("dw", 3, 1, 88),
        ("dw", 5, 2, 96), ("XSepConv", 5, 1, 240), ("XSepConv", 5, 1, 240),  # middle stage: k = 5
        ("XSepConv", 5, 1, 120), ("XSepConv", 5, 1, 144),
        ("dw", 5, 2, 288), ("XSepConv", 3, 1, 576), ("XSepConv", 3, 1, 576),  # after it: k = 3
    ]  # fmt: skip
    assert model.conv_stem.stride == (1, 1)
    assert model.even_kernel_padding == [RB, LT, LB, RT, RB, LT]  # N = 6, N mod 4 = 2 (§4.3)
    in_order = [m.padding for m in model.modules() if hasattr(m, "padding") and isinstance(m.padding, str)]
    assert in_order == model.even_kernel_padding
    assert build(conv="xsepconv", padding="original").even_kernel_padding == [FOUR_GROUPS] * 6
    assert build(conv="xsepconv", padding="onesided").even_kernel_padding == [RB] * 6
    assert build(conv="xsepconv_no2x2").even_kernel_padding == []


def test_kernel_seven_knobs():
    down = build(conv="xsepconv", k7_downsample=True)  # Fig. 4
    assert _depthwise_layers(down)[3] == ("XSepConv", 7, 2, 96)  # down-sampling XSepConv, k = 7
    assert down.even_kernel_padding == [RB, LT, LB, RT, RB, LT, LB]  # N = 7 now
    assert _depthwise_layers(build(conv="dw", k7_downsample=True))[3] == ("dw", 7, 2, 96)
    middle = [layer[:2] for layer in _depthwise_layers(build(conv="xsepconv", k7_middle=True))]  # Fig. 5
    assert middle[4:8] == [("XSepConv", 7)] * 4 and middle[9:] == [("XSepConv", 3)] * 2
    assert [layer[:2] for layer in _depthwise_layers(build(conv="dw", k7_middle=True))][4:8] == [("dw", 7)] * 4


@pytest.mark.parametrize("dw", ["dw", *XSEPCONV_FORMS])
def test_every_form_trains_in_channels_last(dw):
    torch.manual_seed(0)
    model = build(conv=dw, width_mult=0.5, num_classes=10).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("knobs,message", [
    ({"conv": "xsep"}, "unknown conv 'xsep'; this network takes dw, xsepconv"),
    ({"padding": "symmetric"}, "padding must be one of improved"),
    ({"small_input": "yes"}, "small_input must be one of stem_block1"),
    ({"width_mult": 0}, "width_mult must be positive"),
    ({"conv": "xsepconv_p", "k7_downsample": True}, "k7_downsample needs a down-sampling form"),
])  # fmt: skip
def test_impossible_knobs_are_one_line_errors(knobs, message):
    with pytest.raises(ValueError, match=message):
        build(**knobs)
    with pytest.raises(UserError, match=message):
        create({"name": "mobilenetv3_small_xsep", **knobs}, num_classes=10)
