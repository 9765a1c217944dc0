"""DiCE operators: DimConv against its definition and the authors' formulation, cost formulas, the unit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from effconv.ops import create_unit
from effconv.ops.dice import (
    FUSION_KINDS,
    SPATIAL_KINDS,
    DiceUnit,
    DimensionWiseFusion,
    dimfuse_cost,
    first_pointwise,
)
from effconv.ops.dimconv import DimensionWiseConv, dimconv_cost, resample_axis
from effconv.profile import count_cost


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN and PReLU parameters, so a wrong channel order cannot pass unnoticed."""
    gen = torch.Generator().manual_seed(1)
    for name, p in module.named_parameters():
        if "norm" in name or "act" in name:
            with torch.no_grad():
                p.copy_(torch.rand(p.shape, generator=gen) + 0.1)
    return module


def _naive_dimconv(x, wd, wh, ww):
    """DimConv from its definition (paper Sec. 3.1), one output element at a time, zero padding.

    depth-wise: plane c, 3x3 window over (H, W); height-wise: row h, window over (C, W) with kernel wh[h]
    indexed (C, W); width-wise: column w, window over (H, C) with kernel ww[w] indexed (H, C).
    """
    n, c, h, w = x.shape
    xp = F.pad(x, (1, 1, 1, 1, 1, 1))  # pad W, H and C by one
    out = torch.zeros(n, 3 * c, h, w, dtype=x.dtype)
    for ci in range(c):
        for hi in range(h):
            for wi in range(w):
                out[:, 3 * ci, hi, wi] = (xp[:, ci + 1, hi : hi + 3, wi : wi + 3] * wd[ci, 0]).sum((1, 2))
                out[:, 3 * ci + 1, hi, wi] = (xp[:, ci : ci + 3, hi + 1, wi : wi + 3] * wh[hi, 0]).sum((1, 2))
                window = xp[:, ci : ci + 3, hi : hi + 3, wi + 1].transpose(1, 2)  # (n, H, C)
                out[:, 3 * ci + 2, hi, wi] = (window * ww[wi, 0]).sum((1, 2))
    return out


def test_dimconv_matches_its_definition():
    torch.manual_seed(0)
    conv = DimensionWiseConv(4, (5, 6))
    x = torch.randn(2, 4, 5, 6)
    wd, wh, ww = conv.weight_depth, conv.weight_height, conv.weight_width
    with torch.no_grad():
        expected = _naive_dimconv(x, wd, wh, ww)
        got = torch.cat(conv.branches(x), 1)  # [d, h, w] blocks
        interleaved = torch.stack(conv.branches(x), 2).flatten(1, 2)
    blocks = expected.unflatten(1, (4, 3)).transpose(1, 2).flatten(1, 2)
    torch.testing.assert_close(got, blocks)
    torch.testing.assert_close(interleaved, expected)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("runtime", [(6, 7), (4, 9), (9, 5)], ids=["build", "short-wide", "tall-narrow"])
def test_dimconv_fast_equals_reference_forward_and_gradients(channels_last, runtime):
    torch.manual_seed(0)
    conv = _randomise(DimensionWiseConv(5, (6, 7)))
    x = torch.randn(2, 5, *runtime)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast, ref = conv(x_fast), conv.forward_reference(x_ref)
    torch.testing.assert_close(fast, ref)
    upstream = torch.randn_like(fast)
    grads_fast = torch.autograd.grad(fast, [x_fast, *conv.parameters()], upstream)
    grads_ref = torch.autograd.grad(ref, [x_ref, *conv.parameters()], upstream)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # the fast path keeps the input's layout (no silent NHWC -> NCHW flip for the next layer)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert fast.is_contiguous(memory_format=fmt)


def test_dimconv_params_and_cost_formula():
    c, h, w = 12, 10, 8
    conv = DimensionWiseConv(c, (h, w))
    # 9 weights per channel, per row and per column; BN (2 per channel) and PReLU (1) on 3C channels
    assert sum(p.numel() for p in conv.parameters()) == 9 * (c + h + w) + 9 * c
    assert count_cost(conv, (c, h, w)).madds == dimconv_cost(c, h, w) == 27 * c * h * w


def test_dimconv_cost_follows_the_sizes_it_runs_at():
    """Resampled branches run at the build height (or width): the authors' count at other sizes."""
    conv = DimensionWiseConv(3, (8, 8))
    madds = count_cost(conv, (3, 12, 6)).madds
    assert madds == 9 * 3 * (12 * 6 + 8 * 6 + 12 * 8)


def test_resample_axis_is_the_authors_resize():
    x = torch.randn(1, 2, 5, 7)
    up = resample_axis(x, 9, 2)
    torch.testing.assert_close(up, F.interpolate(x, size=(9, 7), mode="bilinear", align_corners=True))
    torch.testing.assert_close(up[:, :, 0], x[:, :, 0])  # align_corners keeps the border rows
    down = resample_axis(x, 3, 3)
    torch.testing.assert_close(down, F.adaptive_avg_pool2d(x, (5, 3)))
    assert resample_axis(x, 5, 2) is x


def test_dimconv_without_resampling_refuses_other_sizes():
    conv = DimensionWiseConv(3, (8, 8), resample=False)
    with pytest.raises(ValueError, match="resample=False"):
        conv(torch.randn(1, 3, 6, 8))


def test_dimfuse_cost_formula():
    """Paper Sec. 3.2: DimFuse costs HWD(3 + n^2 + D); its D term is an upper bound of the squeeze path.

    Exact: local fusion 3HWD + depth-wise n x n HWD n^2 + squeeze 2 D (D // 4) once per image.
    """
    d, h, w, n = 40, 14, 14, 3
    fuse = DimensionWiseFusion(d, d)
    measured = count_cost(fuse, (3 * d, h, w)).madds
    assert measured == dimfuse_cost(d, d, h, w) == h * w * d * (3 + n * n) + 2 * d * (d // 4)
    paper = h * w * d * (3 + n * n + d)
    assert measured <= paper
    pointwise = 3 * d * d * h * w  # the 1x1 conv 3D -> D DimFuse replaces
    assert pointwise / measured >= 3 * d / (3 + n * n + d)  # the paper's saving factor, at least


def test_dice_unit_cost_is_dimconv_plus_dimfuse():
    c, h, w = 24, 28, 28
    unit = create_unit("dice", c, c, input_size=(h, w))
    assert count_cost(unit, (c, h, w)).madds == dimconv_cost(c, h, w) + dimfuse_cost(c, c, h, w)


def test_dimfuse_changes_width_with_gcd_groups():
    """Paper footnote 1: C -> C_out with gcd(C, C_out) groups in the spatial conv."""
    fuse = DimensionWiseFusion(12, 18)
    assert fuse.spatial[0].groups == math.gcd(12, 18) == 6
    assert count_cost(fuse, (36, 5, 5)).madds == dimfuse_cost(12, 18, 5, 5)


@pytest.mark.parametrize("spatial", SPATIAL_KINDS)
@pytest.mark.parametrize("fusion", FUSION_KINDS)
@pytest.mark.parametrize("stride", [1, 2])
def test_dice_unit_variants_shapes_and_gradients(spatial, fusion, stride):
    torch.manual_seed(0)
    unit = create_unit("dice", 8, 16, stride=stride, input_size=(9, 10), spatial=spatial, fusion=fusion)
    x = torch.randn(2, 8, 9, 10, requires_grad=True)
    y = unit(x)
    assert y.shape == (2, 16, math.ceil(9 / stride), math.ceil(10 / stride))
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in unit.parameters())


def test_dice_unit_errors_are_clear():
    with pytest.raises(ValueError, match="input_size"):
        DiceUnit(8, 8)
    with pytest.raises(ValueError, match="multiple"):
        DiceUnit(8, 12, input_size=(4, 4), fusion="se")
    with pytest.raises(ValueError, match="unknown fusion"):
        DiceUnit(8, 8, input_size=(4, 4), fusion="mean")
    with pytest.raises(ValueError, match="unknown first 1x1"):
        first_pointwise("dense", 8, 8)


def test_dimfuse_as_first_pointwise_is_cheaper_than_a_pointwise_conv():
    """Table 3: DimFuse replacing a 1x1 conv (C_in -> C_out, one plane per channel)."""
    cin, cout, h, w = 64, 16, 14, 14
    fused = count_cost(first_pointwise("dimfuse", cin, cout), (cin, h, w)).madds
    assert fused == h * w * cin + h * w * cout * (cin // math.gcd(cin, cout)) * 9 + cin * 16 + 16 * cout
    assert fused < count_cost(first_pointwise("pointwise", cin, cout), (cin, h, w)).madds
