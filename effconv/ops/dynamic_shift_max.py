"""Dynamic Shift-Max (Li et al., MicroNet, ICCV 2021, Sec. 4, Eq. 4) and its static variant (Table 2).

    y_i = max_k  sum_j  a^k_{i,j}(x) * x_{partner_j(i)}          k < K fusions, j < J shifted groups

The C channels form G groups of C/G. Two shifts are available:

* ``shift="authors"`` (default, reference code ``backbone/activation.py``): partner_j moves j groups on *and*
  j positions inside the group: channel (group a, position b) meets (group a+j mod G, position b+j mod C/G).
  For C=16, G=4 the j=1 partners are 5, 6, 7, 4, 9, ... (reference-architectures §2.3).
* ``shift="paper"``: Eq. 4's plain circular group shift, partner_j(i) = (i + j C/G) mod C.

Coefficients come from a squeeze hyper-function as the authors build it: global average pool of the input ->
Linear(C, sq) -> ReLU -> Linear(sq, C*J*K) -> hard sigmoid, mapped to a residual in [-act_max, +act_max]
around fixed initial values (the paper says "sigmoid"; the code uses this map, which is what we follow).
The output is laid out like the authors' (a1, b1, a2, b2): fusion-major, then shift, then channel.

Cost (DESIGN §3): the hyper-function FCs are counted by their own Linear layers; ``madds`` adds J*K
multiplies per output element (J per fusion), the convention that reproduces the paper's 4/6/12/21 M.

Speed: in training the fusion runs in one autograd Function (``shift_fusion_max``) that never materialises
the shifted copy: each shift is at most four rectangular blocks of the (G, C/G) channel view, fused into the
output with in-place ``addcmul_`` on views; backward routes gradients through the same blocks (the shift is a
permutation, so its adjoint is a scatter of disjoint blocks, no index_add). It saves x, the coefficients and
a 1-byte winner index instead of autograd's shifted copy and K fusion outputs. Without gradients (evaluation,
latency) one gather per shift is cheaper than four block updates, because per-op cost dominates at batch 1.
``shift_fusion_max_reference`` is the plain gather-and-autograd formulation both are tested against.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from torch import nn

from effconv.ops.common import make_divisible

SHIFTS = ("authors", "paper")


def _runs(n: int, shift: int) -> list[tuple[slice, slice]]:
    """(destination, source) slice pairs of a circular shift over ``n`` items: dst[i] = src[i + shift]."""
    s = shift % n
    if s == 0:
        return [(slice(0, n), slice(0, n))]
    return [(slice(0, n - s), slice(s, n)), (slice(n - s, n), slice(0, s))]


def shift_blocks(groups: int, group_size: int, j: int, shift: str) -> list[tuple[tuple[slice, slice], ...]]:
    """The j-th shift as ((dst_group, dst_pos), (src_group, src_pos)) blocks of the (G, C/G) channel view."""
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got '{shift}'")
    positions = _runs(group_size, j if shift == "authors" else 0)
    return [((dg, dp), (sg, sp)) for dg, sg in _runs(groups, j) for dp, sp in positions]


def shift_index(channels: int, groups: int, j: int, shift: str) -> torch.Tensor:
    """partner_j(i) for every channel i (the gather the reference formulation uses)."""
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got '{shift}'")
    index = torch.arange(channels).view(groups, channels // groups)
    return index.roll((-j, -j if shift == "authors" else 0), (0, 1)).reshape(channels)


@functools.cache
def _all_blocks(groups: int, group_size: int, j_shifts: int, shift: str) -> tuple:
    return tuple(tuple(shift_blocks(groups, group_size, j, shift)) for j in range(j_shifts))


def _fusion_max(x, coef, groups: int, blocks):
    """max_k of the K fusions and the index of the winning fusion per element (uint8; None when K = 1)."""
    out, winner = None, None
    for k in range(coef.shape[1]):
        z = _fuse(x, coef[:, k], blocks, groups)
        if out is None:
            out = z
            continue
        better = z > out
        if winner is None:
            winner = better.to(torch.uint8)
        else:
            winner.masked_fill_(better, k)
        out = torch.maximum(out, z)
    return out, winner


class _ShiftFusionMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coef, groups: int, shift: str):
        coef = coef.to(x.dtype)
        blocks = _all_blocks(groups, x.shape[1] // groups, coef.shape[2], shift)
        out, winner = _fusion_max(x, coef, groups, blocks)
        ctx.groups, ctx.blocks = groups, blocks
        ctx.save_for_backward(x, coef, winner if winner is not None else torch.empty(0))
        return out

    @staticmethod
    def backward(ctx, grad):
        x, coef, winner = ctx.saved_tensors
        k_fusions = coef.shape[1]
        grad = grad.contiguous(memory_format=_format_of(x))
        if k_fusions == 1:
            grads = [grad]
        elif k_fusions == 2:  # the common case: one mask, g0 = g - g1
            g1 = grad * winner
            grads = [grad - g1, g1]
        else:
            grads = [grad * (winner == k) for k in range(k_fusions)]
        grad_coef = torch.empty_like(coef)
        view = _channel_view(x, ctx.groups)
        for k, g in enumerate(grads):
            g_view = _channel_view(g, ctx.groups)
            for j, blocks in enumerate(ctx.blocks):
                dst = _channel_view(grad_coef[:, k, j, :, None, None], ctx.groups)
                for (dg, dp), (sg, sp) in blocks:  # d coef[k, j, i] = sum_hw g_k[i] * x[partner_j(i)]
                    dst[:, dg, dp] = (g_view[:, dg, dp] * view[:, sg, sp]).sum((-2, -1), keepdim=True)
        grad_x = None
        if ctx.needs_input_grad[0]:
            for j, blocks in enumerate(ctx.blocks):  # d x = sum_j P_j^T (sum_k coef[k, j] * g_k)
                h = _weighted(grads, coef[:, :, j])
                if j == 0:
                    grad_x = h
                    continue
                acc, h_view = _channel_view(grad_x, ctx.groups), _channel_view(h, ctx.groups)
                for (dg, dp), (sg, sp) in blocks:
                    acc[:, sg, sp].add_(h_view[:, dg, dp])
        return grad_x, grad_coef, None, None


def _format_of(x: torch.Tensor):
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _channel_view(t: torch.Tensor, groups: int) -> torch.Tensor:
    return t.unflatten(1, (groups, t.shape[1] // groups))


def _fuse(x, coef_k, blocks, groups: int) -> torch.Tensor:
    """sum_j coef_k[:, j] * x[partner_j], the shifted terms added block by block into the unshifted one."""
    out = x * coef_k[:, 0, :, None, None]
    out_view, x_view = _channel_view(out, groups), _channel_view(x, groups)
    for j in range(1, coef_k.shape[1]):
        c_view = _channel_view(coef_k[:, j, :, None, None], groups)
        for (dg, dp), (sg, sp) in blocks[j]:
            out_view[:, dg, dp].addcmul_(x_view[:, sg, sp], c_view[:, dg, dp])
    return out


def _weighted(grads, coef_j) -> torch.Tensor:
    out = grads[0] * coef_j[:, 0, :, None, None]
    for k in range(1, len(grads)):
        out.addcmul_(grads[k], coef_j[:, k, :, None, None])
    return out


@register_notrace_function
@torch.fx.wrap
def shift_fusion_max(x: torch.Tensor, coef: torch.Tensor, groups: int, shift: str = "authors") -> torch.Tensor:
    """Eq. 4 with coefficients ``coef`` of shape (N, K, J, C) (the fast path).

    A leaf for torch.fx and timm's fx feature extraction: it dispatches on grad mode and runs an autograd
    Function, neither of which a symbolic trace can follow. TorchScript compiles no autograd Function, so
    scripted models run the rolled form (the same function)."""
    if torch.jit.is_scripting():
        return shift_fusion_max_rolled(x, coef, groups, shift)
    _check(x, coef, groups)
    if torch.compiler.is_compiling():  # under torch.compile: the form inductor fuses into one loop
        return shift_fusion_max_rolled(x, coef, groups, shift)
    if torch.is_grad_enabled() and (x.requires_grad or coef.requires_grad):
        return _ShiftFusionMax.apply(x, coef, groups, shift)
    return _fusion_max_inference(x, coef.to(x.dtype)[..., None, None], groups, shift)


@functools.cache
def _shift_indices(channels: int, groups: int, j_shifts: int, shift: str, device: torch.device) -> tuple:
    return tuple(shift_index(channels, groups, j, shift).to(device) for j in range(1, j_shifts))


def _fusion_max_inference(x, coef, groups: int, shift: str):
    """No-grad path: one gather per shift, then K fused multiply-adds and a max. At batch 1 the per-op cost
    dominates and this does fewer ops than the block-wise fusion (15% lower M2 latency, one thread)."""
    shifted = [x] + [x.index_select(1, i) for i in _shift_indices(x.shape[1], groups, coef.shape[2], shift, x.device)]
    out = None
    for k in range(coef.shape[1]):
        z = shifted[0] * coef[:, k, 0]
        for j in range(1, len(shifted)):
            z.addcmul_(shifted[j], coef[:, k, j])
        out = z if out is None else torch.maximum(out, z, out=out)
    return out


def shift_fusion_max_rolled(x: torch.Tensor, coef: torch.Tensor, groups: int, shift: str = "authors") -> torch.Tensor:
    """Eq. 4 with each shift as a ``roll`` of the (G, C/G) channel view: pure tensor ops and no gather, so
    inductor turns shift, weighting and max into index arithmetic inside one fused loop, forward and backward
    (a gather's backward would be a scatter-add). Eager it is slower than ``shift_fusion_max``; it is what
    runs under ``torch.compile`` (benchmarks/bench_micronet.py: compiled, ~1x a depth-wise conv in NCHW)."""
    n, c, h, w = x.shape
    view = x.view(n, groups, c // groups, h, w) if x.is_contiguous() else x.unflatten(1, (groups, c // groups))
    moves_position = 1 if shift == "authors" else 0
    shifted = [x]
    for j in range(1, coef.shape[2]):
        shifted.append(view.roll((-j, -j * moves_position), (1, 2)).flatten(1, 2))
    coef = coef.to(x.dtype)[..., None, None]
    out = _weighted_sum(coef[:, 0], shifted)
    for k in range(1, coef.shape[1]):
        out = torch.maximum(out, _weighted_sum(coef[:, k], shifted))
    return out


def _weighted_sum(coef_k: torch.Tensor, shifted: list[torch.Tensor]) -> torch.Tensor:
    """sum_j coef_k[:, j] * shifted[j] (one fusion of the rolled form)."""
    out = coef_k[:, 0] * shifted[0]
    for j in range(1, len(shifted)):
        out = out + coef_k[:, j] * shifted[j]
    return out


def shift_fusion_max_reference(x: torch.Tensor, coef: torch.Tensor, groups: int, shift: str = "authors"):
    """Eq. 4 as written: gather each shifted copy, weight, sum, max (plain autograd; for tests)."""
    _check(x, coef, groups)
    _, k_fusions, j_shifts, c = coef.shape
    shifted = [x[:, shift_index(c, groups, j, shift).to(x.device)] for j in range(j_shifts)]
    coef = coef[..., None, None]
    fusions = [sum(coef[:, k, j] * shifted[j] for j in range(j_shifts)) for k in range(k_fusions)]
    return fusions[0] if k_fusions == 1 else torch.stack(fusions).amax(0)


def _check(x, coef, groups):
    if x.shape[1] % groups:
        raise ValueError(f"Dynamic Shift-Max: {x.shape[1]} channels do not split into {groups} groups")
    if coef.ndim != 4 or coef.shape[-1] != x.shape[1] or coef.shape[0] != x.shape[0]:
        raise ValueError(
            f"coefficients must be (N, K, J, C) = ({x.shape[0]}, K, J, {x.shape[1]}), got {tuple(coef.shape)}"
        )


def initial_coefficients(K: int, J: int, init_a: Sequence[float], init_b: Sequence[float]) -> torch.Tensor:
    """(K, J) starting values: fusion k starts as init_a[k] x + init_b[k] x_shift1 (+ 0 for further shifts).

    The authors give two fusions; a third (Table 6, K=3) starts as the identity (a=1, b=0).
    """
    init = torch.zeros(K, J)
    for k in range(K):
        init[k, 0] = init_a[k] if k < len(init_a) else 1.0
        if J > 1:
            init[k, 1] = init_b[k] if k < len(init_b) else 0.0
    return init


def squeeze_width(channels: int, reduction: float) -> int:
    """The authors' squeeze width: C // reduction rounded to a multiple of 4, at least 4."""
    return max(4, make_divisible(channels // reduction, 4))


class CoefficientMap(nn.Module):
    """avg-pool -> Linear(C, sq) -> ReLU -> Linear(sq, n) -> hard sigmoid -> init + act_max * (2 h - 1).

    The hyper-function of Dynamic Shift-Max (Sec. 4) as the authors map it: each coefficient is a residual in
    [-act_max, act_max] added to its fixed initial value (ACT_MAX = 2 in every official configuration).
    """

    def __init__(self, channels: int, init: torch.Tensor, squeeze: int, act_max: float = 2.0):
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, init.numel() * channels)
        self.act_max = act_max
        self.register_buffer(
            "init", init.reshape(*init.shape, 1).expand(*init.shape, channels).clone(), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean((2, 3))
        h = F.hardsigmoid(self.fc2(F.relu(self.fc1(pooled))))
        return self.init + (h.unflatten(1, self.init.shape) - 0.5) * (2 * self.act_max)


class DynamicShiftMax(nn.Module):
    """Dynamic Shift-Max: K fusions of J channel shifts with input-dependent coefficients, max over fusions.

    ``groups`` is G of Eq. 4 (C/G channels per group); ``reduction`` sets the squeeze width (the authors' rule
    ``squeeze_width``) unless ``squeeze`` is given. K=1 is the authors' single fusion (no max, no ReLU).
    """

    def __init__(
        self,
        channels: int,
        groups: int,
        J: int = 2,
        K: int = 2,
        reduction: float = 8,
        squeeze: int | None = None,
        act_max: float = 2.0,
        init_a: Sequence[float] = (1.0, 1.0),
        init_b: Sequence[float] = (0.0, 0.0),
        shift: str = "authors",
    ):
        super().__init__()
        _validate(channels, groups, J, K, shift)
        self.groups, self.J, self.K, self.shift = groups, J, K, shift
        init = initial_coefficients(K, J, init_a, init_b)
        squeeze = squeeze or squeeze_width(channels, reduction)
        self.coefficients = CoefficientMap(channels, init, squeeze, act_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shift_fusion_max(x, self.coefficients(x), self.groups, self.shift)

    def madds(self, inputs, output) -> int:
        return self.J * self.K * output.numel()

    def extra_repr(self) -> str:
        return f"groups={self.groups}, J={self.J}, K={self.K}, shift={self.shift}"


class StaticShiftMax(nn.Module):
    """Shift-Max with learned, input-independent coefficients (the "static" row of Table 2)."""

    def __init__(
        self,
        channels: int,
        groups: int,
        J: int = 2,
        K: int = 2,
        init_a: Sequence[float] = (1.0, 1.0),
        init_b: Sequence[float] = (0.0, 0.0),
        shift: str = "authors",
    ):
        super().__init__()
        _validate(channels, groups, J, K, shift)
        self.groups, self.J, self.K, self.shift = groups, J, K, shift
        init = initial_coefficients(K, J, init_a, init_b)
        self.coefficients = nn.Parameter(init.unsqueeze(-1).expand(K, J, channels).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shift_fusion_max(x, self.coefficients.expand(x.shape[0], -1, -1, -1), self.groups, self.shift)

    def madds(self, inputs, output) -> int:
        return self.J * self.K * output.numel()

    def extra_repr(self) -> str:
        return f"groups={self.groups}, J={self.J}, K={self.K}, shift={self.shift}"


def _validate(channels: int, groups: int, J: int, K: int, shift: str) -> None:
    if J < 1 or K < 1:
        raise ValueError(f"Dynamic Shift-Max needs J >= 1 and K >= 1 (got J={J}, K={K})")
    if K > 255:
        raise ValueError(f"K={K} fusions is more than the 255 the winner index holds")
    if groups < 1 or channels % groups:
        raise ValueError(f"Dynamic Shift-Max: {channels} channels do not split into {groups} groups")
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got '{shift}'")
