"""Dynamic ReLU (Chen et al., "Dynamic ReLU", ECCV 2020), channel-wise form (DY-ReLU-B): the activation
MicroNet compares against in Table 4.

    y_c = max_k ( a^k_c(x) x_c + b^k_c(x) )        k < K linear pieces, slopes and intercepts per channel

It is Dynamic Shift-Max with J = 1 (no shifted group) plus an intercept per fusion (MicroNet Sec. 5.3 calls
DY-ReLU "the special case J = 1"). Coefficients use the same squeeze hyper-function as Dynamic Shift-Max
(``CoefficientMap``: residuals in [-1, 1] from a hard sigmoid) scaled as in the DY-ReLU paper: slopes
alpha_k + lambda_a * r, intercepts beta_k + lambda_b * r with alpha = (1, 0), beta = 0, lambda_a = 1.0,
lambda_b = 0.5 (a ReLU at initialisation). The hyper-function outputs 2K values per channel, laid out
(a1, b1, a2, b2) like Dynamic Shift-Max's J = 2 output, so both have the same parameter count.

Cost: K multiplies per output element (the slopes; intercepts are additions) plus the hyper-function FCs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from effconv.ops.dynamic_shift_max import CoefficientMap, squeeze_width


class DynamicReLU(nn.Module):
    def __init__(
        self,
        channels: int,
        K: int = 2,
        reduction: float = 8,
        squeeze: int | None = None,
        init_slopes: Sequence[float] = (1.0, 0.0),
        lambda_a: float = 1.0,
        lambda_b: float = 0.5,
    ):
        super().__init__()
        if K < 1:
            raise ValueError(f"Dynamic ReLU needs K >= 1 linear pieces (got {K})")
        self.K = K
        init = torch.zeros(K, 2)  # (slope, intercept) per piece
        init[:, 0] = torch.tensor([init_slopes[k] if k < len(init_slopes) else 0.0 for k in range(K)])
        # CoefficientMap gives init + act_max * r; slopes and intercepts need their own scale, so the map is
        # built with act_max = 1 and the lambdas applied here.
        squeeze = squeeze or squeeze_width(channels, reduction)
        self.coefficients = CoefficientMap(channels, torch.zeros(K, 2), squeeze, act_max=1.0)
        self.register_buffer("init", init.view(1, K, 2, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([lambda_a, lambda_b]).view(1, 1, 2, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coef = (self.init + self.scale * self.coefficients(x)).to(x.dtype)
        coef = coef[..., None, None]  # (N, K, 2, C, 1, 1): slope, intercept per piece
        out = torch.addcmul(coef[:, 0, 1], x, coef[:, 0, 0])
        for k in range(1, self.K):
            out = torch.maximum(out, torch.addcmul(coef[:, k, 1], x, coef[:, k, 0]))
        return out

    def madds(self, inputs, output) -> int:
        return self.K * output.numel()

    def extra_repr(self) -> str:
        return f"K={self.K}"
