"""MixConv operator: partitions, equivalences (g=1, split vs padded, timm), dilation, cost, unit table."""

from __future__ import annotations

import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from timm.layers import MixedConv2d

from effconv.ops import UNITS, create_unit
from effconv.ops import mixconv as mc
from effconv.ops.mixconv import GroupedPointwise, MixConv, MixConvUnit, mixconv_kernels, split_channels
from effconv.profile import count_cost


def test_kernel_sizes_follow_2i_plus_1():
    assert mixconv_kernels(1) == [3]
    assert mixconv_kernels(6) == [3, 5, 7, 9, 11, 13]


@pytest.mark.parametrize(
    "channels, groups, split, expected",
    [
        (32, 4, "equal", [8, 8, 8, 8]),
        (30, 4, "equal", [9, 7, 7, 7]),  # remainder to the first group (authors' _split_channels)
        (32, 4, "exp", [16, 8, 4, 4]),  # the paper's example (Sec. 3.2)
        (24, 4, "exp", [12, 6, 3, 3]),
        (32, 6, "exp", [16, 8, 4, 2, 1, 1]),
        (16, 6, "exp", [7, 4, 2, 1, 1, 1]),  # later groups keep at least one channel
        (7, 1, "exp", [7]),
    ],
)
def test_split_channels(channels, groups, split, expected):
    assert split_channels(channels, groups, split) == expected


def test_split_channels_errors():
    with pytest.raises(ValueError, match="cannot split 3 channels into 4"):
        split_channels(3, 4)
    with pytest.raises(ValueError, match="one of"):
        split_channels(8, 2, "log")


@pytest.mark.parametrize("impl", ["split", "padded"])
@pytest.mark.parametrize("kernel, stride", [(3, 1), (5, 2), (7, 1)])
def test_one_group_is_a_depthwise_conv(impl, kernel, stride):
    torch.manual_seed(0)
    op = MixConv(12, [kernel], stride, impl=impl)
    dw = torch.nn.Conv2d(12, 12, kernel, stride, kernel // 2, groups=12, bias=False)
    dw.weight.data.copy_(op.weights[0])
    x = torch.randn(2, 12, 11, 11)
    torch.testing.assert_close(op(x), dw(x), rtol=0, atol=1e-6)


CASES = [
    ([3, 5, 7, 9], 1, "equal", False),
    ([3, 5, 7], 2, "exp", False),
    ([3, 5, 7, 9, 11], 1, "exp", True),
    ([3, 5], 2, "equal", False),
]


@pytest.mark.parametrize("kernels, stride, split, dilated", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_split_and_padded_formulations_agree(kernels, stride, split, dilated, channels_last):
    torch.manual_seed(0)
    op = MixConv(22, kernels, stride, split, dilated)
    x = torch.randn(2, 22, 13, 13)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    results = []
    for forward in (op.forward_split, op.forward_padded):
        xi = x.clone().requires_grad_()
        out = forward(xi)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), [xi, *op.weights])
        results.append((out, grads))
    (out_s, grads_s), (out_p, grads_p) = results
    torch.testing.assert_close(out_p, out_s, rtol=1e-5, atol=1e-5)
    for gp, gs in zip(grads_p, grads_s):
        torch.testing.assert_close(gp, gs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernels, stride", [([3, 5, 7], 2), ([3, 5, 7, 9, 11], 1)])
def test_matches_timm_mixed_conv(kernels, stride):
    torch.manual_seed(0)
    theirs = MixedConv2d(30, 30, kernels, stride=stride, depthwise=True)
    ours = MixConv(30, kernels, stride)
    assert ours.splits == theirs.splits
    for w, conv in zip(ours.weights, theirs.values()):
        w.data.copy_(conv.weight)
    x = torch.randn(2, 30, 14, 14)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


def test_dilated_receptive_field_through_input_gradients():
    """A dilated 9x9 group sees a 3x3 lattice of step 4; undilated, the whole 9x9 window (paper Sec. 3.4)."""
    for dilated, expected in (
        (True, {(dy, dx) for dy in (-4, 0, 4) for dx in (-4, 0, 4)}),
        (False, {(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)}),
    ):
        op = MixConv(2, [3, 9], dilated=dilated)
        for w in op.weights:
            torch.nn.init.constant_(w, 1.0)
        x = torch.zeros(1, 2, 15, 15, requires_grad=True)
        op(x)[0, 1, 7, 7].backward()  # channel 1 is the 9x9 group
        assert x.grad[0, 0].abs().sum() == 0  # groups do not mix channels
        seen = {(int(y) - 7, int(x_) - 7) for y, x_ in x.grad[0, 1].nonzero()}
        assert seen == expected
    assert [w.shape[-1] for w in MixConv(2, [3, 9], dilated=True).weights] == [3, 3]


def test_dilated_needs_stride_one():
    with pytest.raises(ValueError, match="stride 1"):
        MixConv(8, [3, 5], stride=2, dilated=True)


@pytest.mark.parametrize("impl", ["split", "padded"])
def test_madds_is_sum_of_group_costs(impl):
    op = MixConv(40, [3, 5, 7, 9], stride=2, split="exp", impl=impl)  # splits 20, 10, 5, 5
    cost = count_cost(op, (40, 16, 16))
    assert cost.params == 20 * 9 + 10 * 25 + 5 * 49 + 5 * 81
    assert cost.madds == 8 * 8 * cost.params  # one MAC per weight per output pixel
    dilated = count_cost(MixConv(40, [3, 5, 7, 9], dilated=True, impl=impl), (40, 16, 16))
    assert dilated.madds == 16 * 16 * 40 * 9  # every group has 3x3 taps


class FakeClock:
    """time.perf_counter for one simulated process: calls of the formulation named ``slow`` take a second."""

    def __init__(self, op: MixConv, slow: str):
        self.now, self.ran = 0.0, []
        for name in ("split", "padded"):
            real = getattr(op, f"forward_{name}")

            def timed(x, name=name, real=real):
                self.now += 1.0 if name == slow else 1e-3
                self.ran.append(name)
                return real(x)

            setattr(op, f"forward_{name}", timed)

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("deterministic", [False, True])
def test_auto_is_the_same_form_on_every_rank_whatever_the_clock(monkeypatch, deterministic):
    """Two ranks (or runs, or a run and its resume) whose clocks favour different forms, with no measured
    entry for the device: 'auto' must compute the same function on both, the split form (issue 17, finding 4)."""
    monkeypatch.setattr(mc, "MEASURED_IMPL", {}, raising=False)  # the table the old per-process probe used
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        ran = []
        for slow in ("split", "padded"):  # rank 0's clock, then rank 1's
            monkeypatch.setattr(mc, "_PROBED", {}, raising=False)
            op = MixConv(16, [3, 5, 7])
            clock = FakeClock(op, slow)
            monkeypatch.setattr(time, "perf_counter", clock)
            op(torch.randn(2, 16, 10, 10, requires_grad=True))
            ran.append(clock.ran[-1])  # the form the forward computed
    finally:
        torch.use_deterministic_algorithms(previous)
    assert ran == ["split", "split"]


@pytest.mark.parametrize("impl", ["auto", "split", "padded"])
@pytest.mark.parametrize("kernels, dilated", [([3, 5, 7], False), ([3, 5, 7, 9], True), ([5], False)])
def test_scripts_and_fx_traces(impl, kernels, dilated):
    """torch.jit.script and torch.fx.symbolic_trace of every form compute what eager does (export, issue 14)."""
    torch.manual_seed(0)
    op = MixConv(22, kernels, 1, "exp", dilated, impl)
    x = torch.randn(2, 22, 9, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
        scripted = torch.jit.script(op)
    traced = torch.fx.symbolic_trace(op)
    expected = op(x)
    torch.testing.assert_close(scripted(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(traced(x), expected, rtol=0, atol=0)
    unit = torch.fx.symbolic_trace(MixConvUnit(22, 22, 2, kernels)).eval()
    assert unit(x).shape == (2, 22, 5, 5)


def test_impl_is_a_plain_attribute_read_at_call_time():
    op = MixConv(6, [3, 5])
    x = torch.randn(1, 6, 7, 7)
    op.impl = "padded"  # what deployment does per module
    spy = []
    op.forward_padded = lambda t: spy.append("padded") or MixConv.forward_padded(op, t)
    op(x)
    assert spy == ["padded"]


@pytest.mark.parametrize("in_ch, out_ch", [(16, 96), (15, 9)])
def test_grouped_pointwise_matches_timm(in_ch, out_ch):
    torch.manual_seed(0)
    theirs = MixedConv2d(in_ch, out_ch, [1, 1])
    ours = GroupedPointwise(in_ch, out_ch, 2)
    assert len(ours.convs) == (1 if in_ch % 2 == 0 and out_ch % 2 == 0 else 2)  # one grouped call when even
    if len(ours.convs) == 1:
        ours.convs[0].weight.data.copy_(torch.cat([c.weight for c in theirs.values()]))
    else:
        for a, b in zip(ours.convs, theirs.values()):
            a.weight.data.copy_(b.weight)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    x = torch.randn(2, in_ch, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


def test_registered_unit():
    assert "mixconv" in UNITS
    unit = create_unit("mixconv", 24, 24, stride=2, kernel_size=[3, 5, 7])
    assert unit(torch.randn(2, 24, 9, 9)).shape == (2, 24, 5, 5)
    assert isinstance(unit[1], torch.nn.BatchNorm2d)
    with pytest.raises(ValueError, match="keeps the width"):
        create_unit("mixconv", 24, 32)


def test_padded_weight_keeps_zeros_out_of_training():
    op = MixConv(6, [3, 5], impl="padded")
    weight = op.padded_weight()
    assert weight.shape == (6, 1, 5, 5)
    assert weight[:3, :, 0].abs().sum() == 0 and weight[:3, :, :, 0].abs().sum() == 0  # 3x3 group padded
    out = op(torch.randn(1, 6, 7, 7))
    out.sum().backward()
    assert [tuple(w.grad.shape) for w in op.weights] == [(3, 1, 3, 3), (3, 1, 5, 5)]
    assert F.pad(op.weights[0], (1, 1, 1, 1)).equal(op.padded_weight()[:3])
