"""Shake-Shake regularisation (Gastaldi 2017): mix two residual branches with random per-sample weights.

Training, "Shake-Shake-Image" in Gastaldi's terms (the form the Multiception authors use): the forward pass
returns α·x1 + (1-α)·x2 with α ~ U(0, 1) drawn per sample; the backward pass sends β·g and (1-β)·g to
the two branches with an independent β ~ U(0, 1) per sample, drawn when the gradient arrives. Evaluation
uses the expectation, 0.5·(x1 + x2).
"""

from __future__ import annotations

import torch


def _per_sample_uniform(like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) per sample, shaped (N, 1, ..., 1) to broadcast over the sample's feature map."""
    shape = (like.shape[0],) + (1,) * (like.ndim - 1)
    return torch.rand(shape, device=like.device, dtype=like.dtype)


class ShakeShakeMix(torch.autograd.Function):
    """α forward, independent β backward (both per sample)."""

    @staticmethod
    def forward(ctx, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        alpha = _per_sample_uniform(x1)
        return torch.lerp(x2, x1, alpha)  # alpha * x1 + (1 - alpha) * x2

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        beta = _per_sample_uniform(grad)
        return beta * grad, (1 - beta) * grad


def shake_shake(x1: torch.Tensor, x2: torch.Tensor, training: bool) -> torch.Tensor:
    if training:
        return ShakeShakeMix.apply(x1, x2)
    return 0.5 * (x1 + x2)
