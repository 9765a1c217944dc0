"""Shake-Shake mixing: per-sample α forward, independent per-sample β backward, the average at evaluation."""

from __future__ import annotations

import torch

from effconv.ops.shake_shake import shake_shake


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, 1, 1, 1)


def test_training_mixes_with_alpha_forward_and_beta_backward():
    n = 8
    torch.manual_seed(123)
    x1 = torch.randn(n, 3, 4, 4, requires_grad=True)
    x2 = torch.randn(n, 3, 4, 4, requires_grad=True)
    grad = torch.randn(n, 3, 4, 4)
    torch.manual_seed(7)
    out = shake_shake(x1, x2, training=True)
    out.backward(grad)
    # the same generator state gives the coefficients: α is drawn by the forward, β afterwards by the backward
    torch.manual_seed(7)
    alpha, beta = _per_sample(torch.rand(n)), _per_sample(torch.rand(n))
    torch.testing.assert_close(out, alpha * x1 + (1 - alpha) * x2)
    torch.testing.assert_close(x1.grad, beta * grad)
    torch.testing.assert_close(x2.grad, (1 - beta) * grad)
    assert not torch.allclose(alpha, beta)  # β is not α: the backward does not reuse the forward's weights
    assert len(set(alpha.flatten().tolist())) == n  # one coefficient per sample, not per batch


def test_coefficients_are_constant_within_a_sample_and_lie_in_0_1():
    n = 16
    ones = torch.ones(n, 2, 3, 3, requires_grad=True)
    zeros = torch.zeros(n, 2, 3, 3, requires_grad=True)
    out = shake_shake(ones, zeros, training=True)  # = α per sample
    out.sum().backward()  # ones.grad = β per sample
    for coefficient in (out.detach(), ones.grad):
        per_sample = coefficient.flatten(1)
        assert torch.equal(per_sample.amin(1), per_sample.amax(1))
        assert bool(((per_sample > 0) & (per_sample < 1)).all())
    torch.testing.assert_close(ones.grad + zeros.grad, torch.ones_like(out))


def test_evaluation_averages_the_branches():
    x1 = torch.randn(4, 3, 2, 2, requires_grad=True)
    x2 = torch.randn(4, 3, 2, 2, requires_grad=True)
    out = shake_shake(x1, x2, training=False)
    torch.testing.assert_close(out, 0.5 * (x1 + x2))
    out.sum().backward()
    torch.testing.assert_close(x1.grad, torch.full_like(x1, 0.5))
    torch.testing.assert_close(x2.grad, torch.full_like(x2, 0.5))
    torch.testing.assert_close(shake_shake(x1, x2, training=False), out)  # deterministic
