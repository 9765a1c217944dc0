"""XSepConv operators: the paper's cost formulas (§3.1), receptive field k + 1, padding strategies (§3.2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effconv.ops import create_unit
from effconv.ops.even_padding import (
    FOUR_GROUPS,
    PAD_DIRECTIONS,
    EvenKernelDepthwiseConv2d,
    pad_then_conv,
    padding_plan,
)
from effconv.ops.xsepconv import SeparatedDepthwiseConv, XSepConv, XSepConvBehind, XSepConvParallel
from effconv.profile import count_cost

RB, LT, LB, RT = PAD_DIRECTIONS


def _depthwise(channels, kernel_size, stride=1):
    return nn.Conv2d(channels, channels, kernel_size, stride, kernel_size // 2, groups=channels, bias=False)


# ---------------------------------------------------------------- the 2x2 conv and its padding


@pytest.mark.parametrize("padding", [*PAD_DIRECTIONS, FOUR_GROUPS])
@pytest.mark.parametrize("kernel_size,channels,channels_last", [(2, 8, False), (2, 6, True), (4, 5, False)])
def test_zero_extended_kernel_equals_pad_then_conv(padding, kernel_size, channels, channels_last):
    torch.manual_seed(0)
    conv = EvenKernelDepthwiseConv2d(channels, kernel_size, padding)
    x = torch.randn(2, channels, 7, 9)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    fast, ref = conv(x), pad_then_conv(x, conv.weight, padding)
    assert fast.shape == x.shape
    torch.testing.assert_close(fast, ref)
    upstream = torch.randn_like(ref)
    for g_fast, g_ref in zip(
        torch.autograd.grad(fast, (x, conv.weight), upstream),
        torch.autograd.grad(ref, (x, conv.weight), upstream),
    ):
        torch.testing.assert_close(g_fast, g_ref)


def test_reference_padding_reads_the_pixels_its_direction_names():
    """Right-bottom padding: y[i, j] = sum w[a, b] x[i + a, j + b]; left-top: x[i - 1 + a, j - 1 + b]."""
    torch.manual_seed(0)
    x, w = torch.randn(1, 1, 5, 6), torch.randn(1, 1, 2, 2)
    padded = torch.zeros(1, 1, 7, 8)
    padded[..., 1:6, 1:7] = x  # one zero on every side; index (i + 1, j + 1) holds x[i, j]
    for direction, offset in ((RB, 1), (LT, 0)):
        expected = sum(
            w[0, 0, a, b] * padded[..., offset + a : offset + a + 5, offset + b : offset + b + 6]
            for a in range(2)
            for b in range(2)
        )
        torch.testing.assert_close(pad_then_conv(x, w, direction), expected)


def test_padding_plans():
    assert padding_plan("improved", 4) == [RB, LT, LB, RT]  # D[i mod 4] (§3.2)
    six = padding_plan("improved", 6)
    assert six == [RB, LT, LB, RT, RB, LT]  # N mod 4 = 2: the last two are opposite
    assert padding_plan("improved", 5) == [RB, LT, LB, RT, FOUR_GROUPS]  # N mod 4 = 1: last one symmetric
    assert padding_plan("original", 3) == [FOUR_GROUPS] * 3
    assert padding_plan("onesided", 3) == [RB] * 3
    with pytest.raises(ValueError, match="improved, original, onesided"):
        padding_plan("symmetric", 4)
    with pytest.raises(ValueError, match="even-kernel padding"):
        EvenKernelDepthwiseConv2d(4, 2, "up")
    with pytest.raises(ValueError, match="even kernel"):
        EvenKernelDepthwiseConv2d(4, 3)


def accumulated_shift(plan: list[str], channels: int = 8, size: int = 21) -> torch.Tensor:
    """(row, col) shift of each channel's response to a centred impulse through ``plan``'s 2x2 layers.

    Every layer is identity-initialised in the only way a 2x2 kernel can be without a direction of its own:
    all four taps 1/4. The response's centre of mass then moves by the padding alone, half a pixel per
    layer away from the side padded with the extra zero.
    """
    layers = nn.Sequential(*[EvenKernelDepthwiseConv2d(channels, 2, p) for p in plan])
    for layer in layers:
        nn.init.constant_(layer.weight, 0.25)
    x = torch.zeros(1, channels, size, size)
    x[..., size // 2, size // 2] = 1.0
    with torch.no_grad():
        y = layers(x)[0]
    index = torch.arange(size, dtype=y.dtype)
    mass = y.sum((1, 2))
    rows = (y * index.view(1, -1, 1)).sum((1, 2)) / mass
    cols = (y * index.view(1, 1, -1)).sum((1, 2)) / mass
    return torch.stack([rows, cols], 1) - size // 2


def test_improved_padding_cancels_the_shift_of_four_layers():
    assert accumulated_shift(padding_plan("improved", 4)).abs().max() < 1e-6
    assert accumulated_shift(padding_plan("improved", 8)).abs().max() < 1e-6
    # N mod 4 = 2 (the paper's network): the last two are opposite, so the shift cancels too
    assert accumulated_shift(padding_plan("improved", 6)).abs().max() < 1e-6


def test_one_sided_and_original_padding_accumulate_shift():
    """The shift problem (Wu et al.) and §3.2's "red line": a path through one group of every layer."""
    one_sided = accumulated_shift(padding_plan("onesided", 4))
    torch.testing.assert_close(one_sided, torch.full((8, 2), -2.0))  # drift to the left-top
    original = accumulated_shift(padding_plan("original", 4))  # depth-wise: a channel stays in its group
    expected = torch.tensor([[-2.0, -2.0]] * 2 + [[2.0, 2.0]] * 2 + [[-2.0, 2.0]] * 2 + [[2.0, -2.0]] * 2)
    torch.testing.assert_close(original, expected)
    assert original.mean(0).abs().max() < 1e-6  # ... while the layer's output as a whole is centred


def test_improved_padding_leaves_at_most_one_pixel_when_n_is_not_a_multiple_of_four():
    five = accumulated_shift(padding_plan("improved", 5))  # last layer: four groups
    assert five.abs().max() == pytest.approx(0.5) and five.mean(0).abs().max() < 1e-6
    seven = accumulated_shift(padding_plan("improved", 7))  # net: one left-bottom layer
    torch.testing.assert_close(seven, torch.tensor([[-0.5, 0.5]] * 8))


# ---------------------------------------------------------------- costs (§3.1)

C, H, W = 16, 12, 10


def _weights(module):
    return sum(p.numel() for name, p in module.named_parameters() if "conv" in name)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_xsepconv_cost(k):
    op = XSepConv(C, k)
    cost = count_cost(op, (C, H, W))
    assert cost.madds == 4 * H * W * C + 2 * k * H * W * C
    assert _weights(op) == 4 * C + 2 * k * C
    assert cost.params == 4 * C + 2 * k * C + 2 * (2 * C)  # two BNs of its own; the host's BN follows
    depthwise = count_cost(_depthwise(C, k), (C, H, W))
    assert cost.madds / depthwise.madds == pytest.approx((4 + 2 * k) / k**2)
    if k == 5:
        assert cost.madds / depthwise.madds == pytest.approx(0.56)  # the paper's "saves 44 %"


@pytest.mark.parametrize("k", [5, 7])
def test_downsampling_xsepconv_cost(k):
    op = XSepConv(C, k, stride=2)
    assert op(torch.zeros(1, C, H, W)).shape == (1, C, H // 2, W // 2)
    cost = count_cost(op, (C, H, W))
    assert cost.madds == 4 * H * W * C + k * H * W * C // 2 + k * H * W * C // 4
    depthwise = count_cost(_depthwise(C, k, stride=2), (C, H, W)).madds
    assert (cost.madds < depthwise) == (k >= 7)  # §3.1: worth it only from k = 7


def test_ablation_costs():
    """Table 3: B and P cost what XSepConv costs; Table 2: without the 2x2 conv saves its 4hwc and a BN."""
    k = 5
    xsep = count_cost(XSepConv(C, k), (C, H, W))
    for form in (XSepConvBehind, XSepConvParallel):
        cost = count_cost(form(C, k), (C, H, W))
        assert (cost.params, cost.madds) == (xsep.params, xsep.madds)
    separated = SeparatedDepthwiseConv(C, k)
    cost = count_cost(separated, (C, H, W))
    assert cost.madds == 2 * k * H * W * C and _weights(separated) == 2 * k * C
    assert cost.params == 2 * k * C + 2 * C


# ---------------------------------------------------------------- receptive field (§3.1: k + 1)


def receptive_field(module: nn.Module, channels: int = 4, size: int = 19) -> tuple[int, int]:
    """Height and width of the input pixels the centre output pixel depends on (non-zero input gradient)."""
    torch.manual_seed(0)
    module.eval()
    x = torch.randn(1, channels, size, size, requires_grad=True)
    y = module(x)
    y[..., y.shape[-2] // 2, y.shape[-1] // 2].sum().backward()
    support = x.grad[0].abs().sum(0) > 0
    rows, cols = support.any(1).nonzero().flatten(), support.any(0).nonzero().flatten()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_receptive_fields(k):
    act = nn.SiLU  # smooth: no input gradient is zeroed by the activation
    assert receptive_field(_depthwise(4, k)) == (k, k)
    assert receptive_field(XSepConv(4, k, act_layer=act)) == (k + 1, k + 1)
    assert receptive_field(XSepConv(4, k, stride=2, act_layer=act)) == (k + 1, k + 1)
    assert receptive_field(XSepConvBehind(4, k, act_layer=act)) == (k + 1, k + 1)
    assert receptive_field(XSepConvParallel(4, k, act_layer=act)) == (k, k)  # wider, not deeper (§4.3)
    assert receptive_field(SeparatedDepthwiseConv(4, k, act_layer=act)) == (k, k)


# ---------------------------------------------------------------- units


@pytest.mark.parametrize("name", ["xsepconv", "xsepconv_b", "xsepconv_p", "xsepconv_no2x2"])
def test_units_keep_the_shape_and_train(name):
    torch.manual_seed(0)
    unit = create_unit(name, 8, 8, stride=1, kernel_size=5)
    x = torch.randn(2, 8, 9, 9)
    y = unit(x)
    assert y.shape == x.shape and isinstance(unit[-1], nn.BatchNorm2d)
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in unit.parameters())


def test_unit_strides_and_errors():
    assert create_unit("xsepconv", 8, 8, stride=2, kernel_size=7)(torch.zeros(1, 8, 9, 9)).shape == (
        1,
        8,
        5,
        5,
    )
    assert create_unit("xsepconv_no2x2", 8, 8, stride=2, kernel_size=7)(torch.zeros(1, 8, 8, 8)).shape[-1] == 4
    with pytest.raises(ValueError, match="keeps the width"):
        create_unit("xsepconv", 8, 16)
    with pytest.raises(ValueError, match="no down-sampling form"):
        create_unit("xsepconv_p", 8, 8, stride=2)
    with pytest.raises(ValueError, match="odd kernel"):
        create_unit("xsepconv", 8, 8, kernel_size=4)
