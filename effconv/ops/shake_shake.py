"""Shake-Shake regularisation (Gastaldi 2017): mix two residual branches with random per-sample weights.

Training, "Shake-Shake-Image" in Gastaldi's terms (the form the Multiception authors use): the forward pass
returns α·x1 + (1-α)·x2 with α ~ U(0, 1) drawn per sample; the backward pass sends β·g and (1-β)·g to
the two branches with an independent β ~ U(0, 1) per sample, drawn when the gradient arrives. Evaluation
uses the expectation, 0.5·(x1 + x2).

``shake_shake`` is a leaf for torch.fx and timm's fx feature extraction (a symbolic trace cannot follow an
autograd Function). TorchScript compiles no autograd Function either: a scripted model in training mode mixes
with the same per-sample α forward and β backward, written as β·x1 + (1-β)·x2 plus a detached correction to
the α mix (β is then drawn in the forward pass, from the same distribution).
"""

from __future__ import annotations

import torch
from timm.layers import register_notrace_function


def _per_sample_uniform(like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) per sample, shaped (N, 1, ..., 1) to broadcast over the sample's feature map."""
    shape = [like.shape[0]] + [1] * (like.dim() - 1)
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


@register_notrace_function
@torch.fx.wrap
def shake_shake(x1: torch.Tensor, x2: torch.Tensor, training: bool) -> torch.Tensor:
    if not training:
        return 0.5 * (x1 + x2)
    if torch.jit.is_scripting():
        alpha, beta = _per_sample_uniform(x1), _per_sample_uniform(x1)
        backward_mix = torch.lerp(x2, x1, beta)
        return backward_mix + (torch.lerp(x2, x1, alpha) - backward_mix).detach()
    return ShakeShakeMix.apply(x1, x2)
