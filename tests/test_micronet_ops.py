"""MicroNet's operators: Micro-Factorized convolution (Sec. 3) and Dynamic Shift-Max (Sec. 4, Eq. 4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effconv.ops import create_unit
from effconv.ops.dynamic_relu import DynamicReLU
from effconv.ops.dynamic_shift_max import (
    DynamicShiftMax,
    StaticShiftMax,
    shift_fusion_max,
    shift_fusion_max_reference,
    shift_index,
)
from effconv.ops.micro_factorized import (
    MicroFactorizedDepthwise,
    MicroFactorizedPointwise,
    adaptive_groups,
    group_pair,
)
from effconv.profile import count_cost
from effconv.threads import torch_threads


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tests are tiny; one thread avoids oversubscribing a shared 2-core machine."""
    with torch_threads(1):
        yield


# ---------------------------------------------------------------- Micro-Factorized pointwise (Sec. 3.1)


def _effective_matrix(module: nn.Module, channels: int) -> torch.Tensor:
    """W[out, in] of a module that is linear per pixel (eval mode), probed with the identity."""
    module.eval()
    with torch.no_grad():
        return module(torch.eye(channels).view(channels, channels, 1, 1)).view(channels, -1).T


def test_pointwise_factorization_is_g_by_g_rank1_blocks():
    """Fig. 2 left: C=18, R=2, G=sqrt(C/R)=3 -> 3x3 blocks of rank 1; each output sees every input once."""
    torch.manual_seed(0)
    mf = MicroFactorizedPointwise(18, 18, reduction=2)
    assert (mf.compress.groups, mf.expand.groups) == (3, 3)
    w = _effective_matrix(mf, 18)
    for p in range(3):
        for q in range(3):
            block = w[6 * p : 6 * p + 6, 6 * q : 6 * q + 6]
            s = torch.linalg.svdvals(block)
            assert s[0] > 1e-3 and s[1] < 1e-5 * s[0], f"block ({p},{q}) is not rank 1: {s[:3]}"
    # E = C: one path per input-output pair, so W (unlike a grouped conv) has no zero entry
    assert (w.abs() > 0).all()


def test_pointwise_cost_is_2c2_over_rg():
    """Sec. 3.1: O = 2 C^2 / (R G) multiply-accumulates per pixel."""
    c, r = 72, 2
    mf = MicroFactorizedPointwise(c, c, reduction=r)
    g = mf.compress.groups
    assert g == round(math.sqrt(c / r)) == 6
    assert count_cost(mf, (c, 5, 5)).madds == 2 * c * c // (r * g) * 25


def test_group_rule_reproduces_the_authors_pairs():
    """group_pair(compress_in, C/R, expand_out) -> the (G_c, G_e) pairs hard-coded in microconfig.py."""
    authors = {  # (hidden of block i, out of block i, hidden of block i+1): (G_c, G_e)
        (144, 32, 192): (4, 8),
        (192, 64, 384): (8, 8),
        (384, 96, 576): (8, 12),
        (576, 128, 768): (8, 16),
        (64, 24, 144): (4, 6),
        (384, 80, 480): (8, 10),
        (480, 120, 720): (10, 12),
        (720, 144, 864): (12, 12),
        (256, 96, 384): (8, 12),
        (48, 16, 64): (4, 4),
    }
    for (hidden, out, nxt), pair in authors.items():
        assert group_pair(hidden, out, nxt) == pair, (hidden, out, nxt)
    # lambda (Table 3b) scales G: G_c nearest lambda sqrt(C/R), the product nearest lambda^2 C/R
    assert group_pair(576, 128, 768, lam=2.0) == (16, 32)  # 16 * 32 = 2^2 * 128
    assert group_pair(576, 128, 768, lam=0.5) == (4, 8)
    assert adaptive_groups(18, 9) == 3


# ---------------------------------------------------------------- Micro-Factorized depthwise (Sec. 3.2)


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_factorization_is_a_rank1_kxk_depthwise(stride):
    """k x 1 then 1 x k (stride (s,1) then (1,s)) = one k x k depthwise conv with the outer-product kernel."""
    torch.manual_seed(0)
    c, k = 6, 5
    mf = MicroFactorizedDepthwise(c, k, stride)
    col, row = mf[0].weight, mf[2].weight  # (c, 1, k, 1), (c, 1, 1, k)
    x = torch.randn(2, c, 11, 9)
    composed = mf[2](mf[0](x))  # the two convs without their BNs
    outer = col * row  # (c, 1, k, k), rank 1 per channel
    assert torch.allclose(composed, F.conv2d(x, outer, stride=stride, padding=k // 2, groups=c), atol=1e-5)
    # O(kC) per pixel, not O(k^2 C); the k x 1 factor runs at (H/s, W), the 1 x k at (H/s, W/s)
    assert count_cost(mf, (c, 10, 10)).madds == c * k * (10 // stride) * 10 + c * k * (10 // stride) ** 2


def test_depthwise_multiplier_and_unit():
    mf = create_unit("micro_dw", 8, 32, stride=2, kernel_size=3)  # the lite blocks' x2 then x2
    assert mf[0].out_channels == 16 and mf[2].out_channels == 32
    assert mf(torch.randn(1, 8, 9, 9)).shape == (1, 32, 5, 5)
    with pytest.raises(ValueError, match="multiple"):
        create_unit("micro_dw", 8, 12)


# ---------------------------------------------------------------- Dynamic Shift-Max (Sec. 4)


def test_authors_shift_moves_one_group_and_one_position():
    """reference-architectures §2.3: C=16, G=4 -> partners 5, 6, 7, 4, 9, ..."""
    assert shift_index(16, 4, 1, "authors")[:5].tolist() == [5, 6, 7, 4, 9]
    assert shift_index(16, 4, 1, "paper").tolist() == [(i + 4) % 16 for i in range(16)]  # Eq. 4
    assert shift_index(16, 4, 2, "authors")[:4].tolist() == [10, 11, 8, 9]


CASES = [  # channels, groups, J, K, shift, channels_last
    (16, 4, 2, 2, "authors", False),
    (16, 4, 2, 2, "authors", True),
    (24, 6, 3, 3, "paper", False),
    (12, 3, 1, 2, "authors", True),
    (12, 1, 2, 1, "authors", False),
    (30, 5, 3, 2, "authors", True),
]


@pytest.mark.parametrize("channels,groups,J,K,shift,channels_last", CASES)
def test_fast_path_equals_reference_forward_and_gradients(channels, groups, J, K, shift, channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, channels, 5, 7, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    coef = torch.randn(3, K, J, channels, dtype=torch.float64)
    xf, cf = x.clone().requires_grad_(), coef.clone().requires_grad_()
    xr, cr = x.clone().requires_grad_(), coef.clone().requires_grad_()
    fast, ref = shift_fusion_max(xf, cf, groups, shift), shift_fusion_max_reference(xr, cr, groups, shift)
    grad = torch.randn_like(ref)
    fast.backward(grad)
    ref.backward(grad)
    assert torch.allclose(fast, ref, atol=1e-12)
    assert torch.allclose(xf.grad, xr.grad, atol=1e-12)
    assert torch.allclose(cf.grad, cr.grad, atol=1e-12)
    assert fast.is_contiguous(memory_format=torch.channels_last) == channels_last
    with torch.no_grad():  # the inference path (one gather per shift)
        assert torch.allclose(shift_fusion_max(x, coef, groups, shift), ref, atol=1e-12)


def test_fast_path_gradcheck():
    x = torch.randn(2, 12, 3, 4, dtype=torch.float64, requires_grad=True)
    coef = torch.randn(2, 2, 2, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: shift_fusion_max(a, b, 3, "authors"), (x, coef))


def test_dynamic_shift_max_j1_k2_is_dynamic_relu_form():
    """J=1, K=2 (no shifted group) is Dynamic ReLU's max of K per-channel lines, with zero intercepts."""
    torch.manual_seed(0)
    c = 16
    dsm = DynamicShiftMax(c, groups=4, J=1, K=2, init_a=(1.0, 0.0), squeeze=8, act_max=2.0)
    relu = DynamicReLU(c, K=2, squeeze=8, init_slopes=(1.0, 0.0), lambda_a=2.0, lambda_b=0.5)
    with torch.no_grad():
        relu.coefficients.fc1.load_state_dict(dsm.coefficients.fc1.state_dict())
        w = relu.coefficients.fc2.weight.view(2, 2, c, -1)  # (piece, slope|intercept, channel, squeeze)
        b = relu.coefficients.fc2.bias.view(2, 2, c)
        w[:, 0] = dsm.coefficients.fc2.weight.view(2, c, -1)
        b[:, 0] = dsm.coefficients.fc2.bias.view(2, c)
        w[:, 1], b[:, 1] = 0.0, 0.0  # hard sigmoid(0) = 0.5 -> intercept residual 0
        dsm.coefficients.fc2.weight.normal_(0, 0.5)  # make the coefficients input-dependent
        relu.coefficients.fc2.weight.view(2, 2, c, -1)[:, 0] = dsm.coefficients.fc2.weight.view(2, c, -1)
    x1 = torch.randn(4, c, 6, 6, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = dsm(x1), relu(x2)
    assert torch.allclose(y1, y2, atol=1e-6)
    y1.square().sum().backward()
    y2.square().sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    # and it is a max of two slopes, not the identity: negative inputs are not passed through unchanged
    assert not torch.allclose(y1, x1)


def test_fixed_coefficients_equal_the_static_variant():
    """A Dynamic Shift-Max whose hyper-function ignores its input is the static variant (Table 2)."""
    torch.manual_seed(0)
    c, g = 24, 6
    dsm = DynamicShiftMax(c, g, J=2, K=2)
    with torch.no_grad():
        dsm.coefficients.fc2.weight.zero_()
        dsm.coefficients.fc2.bias.uniform_(-2.0, 2.0)
    a, b = torch.randn(2, c, 5, 5), 3 * torch.randn(2, c, 5, 5) + 1
    coef = dsm.coefficients(a)
    assert torch.allclose(coef, dsm.coefficients(b)) and torch.allclose(coef[0], coef[1])
    static = StaticShiftMax(c, g, J=2, K=2)
    with torch.no_grad():
        static.coefficients.copy_(coef[0])
    for x in (a, b):
        assert torch.allclose(dsm(x), static(x), atol=1e-6)


def test_initial_values_and_coefficient_range():
    """Coefficients are init + act_max * (2 hardsigmoid - 1): M3's second fusion starts at 0.5 x + 0.5 x'."""
    dsm = DynamicShiftMax(8, 2, init_a=(1.0, 0.5), init_b=(0.0, 0.5), act_max=2.0)
    nn.init.zeros_(dsm.coefficients.fc2.weight)
    nn.init.zeros_(dsm.coefficients.fc2.bias)
    coef = dsm.coefficients(torch.randn(1, 8, 3, 3))
    assert coef.shape == (1, 2, 2, 8)
    assert coef[0, :, :, 0].tolist() == [[1.0, 0.0], [0.5, 0.5]]
    nn.init.constant_(dsm.coefficients.fc2.bias, 100.0)
    assert torch.allclose(dsm.coefficients(torch.randn(1, 8, 3, 3))[0, 1, 0], torch.full((8,), 2.5))


def test_madds_hook_counts_jk_multiplies_per_element_plus_the_fcs():
    c, h = 32, 7
    dsm = DynamicShiftMax(c, 4, J=2, K=2, squeeze=8)
    cost = count_cost(dsm, (c, h, h))
    assert cost.madds == 2 * 2 * c * h * h + c * 8 + 8 * 4 * c
    assert count_cost(DynamicShiftMax(c, 4, J=3, K=1, squeeze=8), (c, h, h)).madds == 3 * c * h * h + c * 8 + 8 * 3 * c
    assert count_cost(StaticShiftMax(c, 4), (c, h, h)).madds == 4 * c * h * h
    assert count_cost(DynamicReLU(c, K=2, squeeze=8), (c, h, h)).madds == 2 * c * h * h + c * 8 + 8 * 4 * c


@pytest.mark.parametrize("module", [DynamicShiftMax(16, 4, J=3, K=3), StaticShiftMax(16, 4), DynamicReLU(16)])
def test_every_parameter_gets_a_gradient(module):
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bad_arguments_raise_one_line_errors():
    with pytest.raises(ValueError, match="groups"):
        DynamicShiftMax(10, 4)
    with pytest.raises(ValueError, match="J >= 1"):
        DynamicShiftMax(8, 2, J=0)
    with pytest.raises(ValueError, match="shift"):
        StaticShiftMax(8, 2, shift="sideways")
