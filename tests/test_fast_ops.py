"""Fast operator paths against their straightforward formulations: outputs, input and parameter gradients,
and (where a layer keeps them) BatchNorm running statistics. Speed itself is measured in benchmarks/."""

from __future__ import annotations

import copy

import pytest
import torch

from effconv.ops.dice import DiceUnit


def _randomise(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (0.5 if p.ndim == 1 else 0.0))
    return module


def _check_equal(fast, slow, x, fast_fn, slow_fn, atol=1e-5):
    """fast_fn(fast, x) and slow_fn(slow, x) agree in output, input gradient and every parameter gradient."""
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = fast_fn(fast, xa), slow_fn(slow, xb)
    torch.testing.assert_close(out_a, out_b, atol=atol, rtol=1e-4)
    upstream = torch.randn_like(out_a)
    out_a.backward(upstream)
    out_b.backward(upstream)
    torch.testing.assert_close(xa.grad, xb.grad, atol=atol, rtol=1e-4)
    for (name, pa), (_, pb) in zip(fast.named_parameters(), slow.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=atol, rtol=1e-4, msg=f"gradient of {name}")
    for (name, ba), (_, bb) in zip(fast.named_buffers(), slow.named_buffers()):
        torch.testing.assert_close(ba, bb, atol=atol, rtol=1e-4, msg=f"buffer {name}")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_dice_unit_plane_path_equals_interleaved_path(channels_last, training, stride):
    torch.manual_seed(0)
    unit = _randomise(DiceUnit(6, 8, stride, input_size=(10, 10)))
    unit.train(training)
    reference = copy.deepcopy(unit)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 6, 10, 10).contiguous(memory_format=fmt)
    assert unit.plane_path

    def interleaved(u, t):
        return u.fusion(u.spatial(u.pool(t)))

    _check_equal(unit, reference, x, lambda u, t: u(t), interleaved)


def test_dice_unit_takes_the_interleaved_path_under_a_hook():
    unit = DiceUnit(4, 4, input_size=(6, 6))
    handle = unit.fusion.local[0].register_forward_hook(lambda *a: None)
    assert not unit.plane_path
    handle.remove()
    assert unit.plane_path


@pytest.mark.parametrize("shift", ["authors", "paper"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_rolled_shift_max_equals_reference(shift, channels_last):
    from effconv.ops.dynamic_shift_max import shift_fusion_max_reference, shift_fusion_max_rolled

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 12, 4, 5).contiguous(memory_format=fmt)
    coef = torch.randn(2, 2, 3, 12)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ca, cb = coef.clone().requires_grad_(), coef.clone().requires_grad_()
    out_a, out_b = shift_fusion_max_rolled(xa, ca, 3, shift), shift_fusion_max_reference(xb, cb, 3, shift)
    torch.testing.assert_close(out_a, out_b)
    upstream = torch.randn_like(out_a)
    out_a.backward(upstream)
    out_b.backward(upstream)
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ca.grad, cb.grad)


@pytest.mark.parametrize(
    "channels, groups",
    [(96, (24, 48)), (16, (4, 8)), (24, (4, 6)), (72, (6, 36)), (60, (4, 3)), (30, (6, 2)), (12, (3, 2, 4))],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_composed_shuffles_equal_shuffles_in_turn(channels, groups, channels_last):
    from effconv.ops.common import channel_shuffle, channel_shuffles

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, channels, 3, 4).contiguous(memory_format=fmt).requires_grad_()
    expected = x
    for g in groups:
        expected = channel_shuffle(expected, g)
    got = channel_shuffles(x, groups)
    assert torch.equal(got, expected)
    assert got.is_contiguous(memory_format=fmt)
    upstream = torch.randn_like(got)
    assert torch.equal(torch.autograd.grad(got, x, upstream)[0], torch.autograd.grad(expected, x, upstream)[0])


def test_shuffles_compose_by_multiplying_group_counts():
    from effconv.ops.common import composed_shuffle_groups

    assert composed_shuffle_groups(96, (24, 48)) == 12  # MicroNet: 24 * 48 = 1152 = 12 mod 95
    assert composed_shuffle_groups(24, (4, 6)) == 1  # the second undoes the first
    assert composed_shuffle_groups(30, (6, 2)) is None  # 12 does not divide 30: two shuffles


@pytest.mark.parametrize("channels_last", [False, True])
def test_interleave_equals_concat_then_shuffle(channels_last):
    from effconv.ops.common import channel_shuffle, interleave

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    parts = [torch.randn(2, 5, 3, 4).contiguous(memory_format=fmt) for _ in range(3)]
    got = interleave(parts)
    assert torch.equal(got, channel_shuffle(torch.cat(parts, 1), 3))
    assert got.is_contiguous(memory_format=fmt)


def test_channel_shuffle_keeps_channels_last_and_matches_the_view_idiom():
    from effconv.ops.common import channel_shuffle

    x = torch.randn(2, 12, 3, 4)
    idiom = x.view(2, 3, 4, 3, 4).transpose(1, 2).reshape(2, 12, 3, 4)
    got = channel_shuffle(x.contiguous(memory_format=torch.channels_last), 3)
    assert torch.equal(got, idiom)
    assert got.is_contiguous(memory_format=torch.channels_last)
