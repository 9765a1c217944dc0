"""The inference path (effconv/deploy): every rewrite computes the same function as the model it rewrites.

Eval mode, float64, relative difference (max |rewritten - original| / max |original|) <= 1e-9, on every
family each rewrite applies to. BatchNorm statistics and affine parameters are randomised first: fresh ones
(mean 0, variance 1, weight 1, bias 0) would make a wrong fold look right.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.layers import MixedConv2d
from torch import nn

import effconv  # noqa: F401  (registers the models)
from effconv.deploy import inference_path
from effconv.deploy.batchnorm import fold_batchnorm
from effconv.deploy.dataflow import trace_dataflow
from effconv.deploy.dice import DiceUnitInference, rewrite_dice
from effconv.deploy.mixconv import RUNTIME_FORMS, choose_mixconv_forms, padded_conv
from effconv.deploy.permutations import channel_order, fold_permutations
from effconv.deploy.separable import ComposedSeparableConv, compose_separable
from effconv.deploy.shift_max import ShiftMaxInference, rewrite_shift_max
from effconv.models.micronet import ChannelShuffles
from effconv.ops.dice import DiceUnit
from effconv.ops.dynamic_shift_max import DynamicShiftMax, StaticShiftMax
from effconv.ops.mixconv import MixConv, MixConvUnit

TOLERANCE = 1e-9


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            shape = m.running_mean.shape
            m.running_mean.copy_(torch.rand(shape, generator=generator, dtype=m.running_mean.dtype) - 0.5)
            m.running_var.copy_(torch.rand(shape, generator=generator, dtype=m.running_var.dtype) + 0.5)
            if m.weight is not None:
                m.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
                m.bias.data.copy_(torch.rand(shape, generator=generator) - 0.5)
    return model


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def build(name: str, size: int, **knobs) -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, **knobs).double()
    with torch.no_grad():
        randomise_norms(model)
    return model.eval()


def check_equivalent(original: nn.Module, rewritten: nn.Module, size: int, batch: int = 2) -> None:
    x = torch.randn(batch, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = original(x), rewritten(x)
    assert relative_difference(got, expected) <= TOLERANCE


# one network per family (model file), plus timm's baselines and the swappable units in a host, at a size
# where each runs (DiCENet is built for it)
FAMILIES = {
    "resnet20_cifar": (32, {}),
    "seresnet56_cifar": (32, {}),
    "shakeshake26_2x96d_cifar": (32, {"base_width": 16}),
    "dicenet_050": (64, {"img_size": 64}),
    "shufflenet_v2": (64, {"img_size": 64}),
    "resnet_dw": (64, {"img_size": 64}),
    "micronet_m0": (64, {}),
    "micronet_m3": (64, {}),
    "mobilenet_v1": (64, {"width_mult": 0.25}),
    "mobilenetv1_mix": (64, {"width_mult": 0.25}),
    "mobilenetv2_mix": (64, {"width_mult": 0.35}),
    "mobilenetv2_stl10": (32, {}),
    "mobilenetv3_small_xsep": (32, {}),
    "mnv3_small_035": (64, {}),
    "mobilenetv3_small_050": (64, {}),
    "mixnet_s": (64, {}),
    "resnet20_cifar-multiception": (32, {"conv": "multiception"}),
    "mobilenet_v1-dice": (64, {"conv": "dice", "width_mult": 0.25, "img_size": 64}),
    "mobilenet_v1-mixconv_sep": (64, {"conv": "mixconv_sep", "width_mult": 0.25}),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_inference_path_is_equivalent(family):
    """All rewrites together, for the ONNX Runtime forms (and the other runtimes' where MixConv differs)."""
    size, knobs = FAMILIES[family]
    model = build(family.split("-")[0], size, **knobs)
    norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    has_mixconv = any(isinstance(m, (MixConv, MixedConv2d)) for m in model.modules())
    for runtime in ("onnx", "eager", "inductor") if has_mixconv else ("onnx",):
        rewritten = inference_path(model, (3, size, size), runtime)
        left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in rewritten.modules())
        assert rewritten.deploy_rewrites["batchnorms"] > 0 and left < norms
        assert not any(p.requires_grad for p in rewritten.parameters())
        check_equivalent(model, rewritten, size)
    assert all(p.requires_grad for p in model.parameters())  # the original is left alone


def test_bn_is_not_folded_into_a_conv_whose_output_is_read_twice():
    class TwoReaders(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    model = randomise_norms(TwoReaders().double()).eval()
    rewritten = copy.deepcopy(model)
    sample = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert fold_batchnorm(rewritten, trace_dataflow(rewritten, sample)) == 0
    check_equivalent(model, rewritten, 8)


SHIFT_MAX_VARIANTS = {
    "K2J2": {"J": 2, "K": 2},
    "K1": {"J": 2, "K": 1},
    "J3K3": {"J": 3, "K": 3},
    "paper-shift": {"J": 2, "K": 2, "shift": "paper"},
}


@pytest.mark.parametrize("variant", SHIFT_MAX_VARIANTS)
@pytest.mark.parametrize("static", [False, True])
def test_shift_max_inference_form_with_folded_permutation(variant, static):
    torch.manual_seed(0)
    knobs = SHIFT_MAX_VARIANTS[variant]
    source = (StaticShiftMax if static else DynamicShiftMax)(24, 4, **knobs).double().eval()
    with torch.no_grad():  # coefficients away from their initial values, some clamped
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    x = torch.randn(3, 24, 5, 6, dtype=torch.float64)
    inference = ShiftMaxInference(source)
    shuffle = ChannelShuffles(4, 3)
    order = channel_order(shuffle, 24)
    assert order is not None and not torch.equal(order, torch.arange(24))
    with torch.no_grad():
        expected = source(x)
        assert relative_difference(inference(x), expected) <= TOLERANCE
        inference.permute_output(order)
        assert inference.gather_first
        assert relative_difference(inference(x), shuffle(expected)) <= TOLERANCE


def test_micronet_shuffles_fold_into_shift_max():
    model = build("micronet_m0", 64)
    rewritten = copy.deepcopy(model)
    sample = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert rewrite_shift_max(rewritten) == sum(isinstance(m, DynamicShiftMax) for m in model.modules())
        folded = fold_permutations(rewritten, trace_dataflow(rewritten, sample))
    assert folded >= 10  # every shuffle that directly follows a Shift-Max
    check_equivalent(model, rewritten, 64)


def test_separable_pairs_compose_exactly_at_any_width():
    """MicroNet's stem and Micro-Factorized depthwise pairs as one k x k conv plus the border row of A's bias."""
    model = build("micronet_m0", 64)
    rewritten = copy.deepcopy(model)
    sample = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        fold_batchnorm(rewritten, trace_dataflow(rewritten, sample))
        composed = compose_separable(rewritten, trace_dataflow(rewritten, sample), depthwise=True)
    assert composed == 7  # the stem and the six blocks' depthwise pairs
    assert isinstance(rewritten.stem[2], ComposedSeparableConv) and rewritten.stem[2].weight.shape[-2:] == (3, 3)
    for size in (64, 37, 50):  # odd widths put the second conv's kernel over the right border too
        check_equivalent(model, rewritten, size)


def test_dice_unit_inference_form_strided_and_resampled():
    torch.manual_seed(0)
    for stride, runtime_size in ((1, 12), (2, 12), (1, 9), (1, 16)):
        unit = randomise_norms(DiceUnit(8, 16, stride, input_size=12).double()).eval()
        with torch.no_grad():
            for prelu in (m for m in unit.modules() if isinstance(m, nn.PReLU)):
                prelu.weight.uniform_(-0.5, 0.5)
        wrapper = nn.Sequential(unit)
        assert rewrite_dice(wrapper) == 1 and isinstance(wrapper[0], DiceUnitInference)
        x = torch.randn(2, 8, runtime_size, runtime_size, dtype=torch.float64)
        with torch.no_grad():
            assert relative_difference(wrapper(x), unit(x)) <= TOLERANCE
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            assert relative_difference(wrapper(x_nhwc), unit(x)) <= TOLERANCE


def test_mixconv_forms_per_runtime():
    torch.manual_seed(0)
    unit = randomise_norms(MixConvUnit(12, 12, 1, [3, 5, 7]).double()).eval()
    host = nn.Sequential(unit)
    x = torch.randn(2, 12, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        expected = host(x)
        for form in ("padded", "split"):
            rewritten = copy.deepcopy(host)
            with pytest.MonkeyPatch.context() as patch:
                patch.setitem(RUNTIME_FORMS, "onnx", form)
                assert choose_mixconv_forms(rewritten, "onnx") == 1
            assert next(m for m in rewritten.modules() if isinstance(m, MixConv)).impl == form
            assert relative_difference(rewritten(x), expected) <= TOLERANCE
        timm_mixed = MixedConv2d(12, 12, [3, 5, 7], stride=2, padding="", depthwise=True).double().eval()
        single = padded_conv(timm_mixed)
        assert single is not None and single.groups == 12 and single.kernel_size == (7, 7)
        assert relative_difference(single(x), timm_mixed(x)) <= TOLERANCE
