"""Dynamic Shift-Max (MicroNet Eq. 4) rewritten for inference: fewest passes over the activation.

    y_i = max_k sum_j a^k_{i,j}(x) x_{partner_j(i)}

What the training module does per call and this one does not:

* coefficients: ``init + (hardsigmoid(fc2 h) - 0.5) * 2 act_max`` is three element-wise ops after fc2; since
  hardsigmoid(z) = clamp(z / 6 + 1/2, 0, 1), it equals ``clamp(fc2' h, 0, 2 act_max) + (init - act_max)`` with
  fc2's weights and bias scaled by act_max / 3 and act_max added to its bias: one clamp and one add, no
  layout work (the K x J coefficient vectors come out of one ``split``);
* the shifted copies: one gather per shift, with any channel permutation that follows the activation
  (MicroNet's shuffles) folded into the gather indices (``permute_output``), so the shuffle costs nothing;
* the K fusions and the max run as multiply-adds into one buffer, in place.

The same form serves every runtime. A "stacked" form (one gather of all shifts, one broadcast multiply, a sum
over shifts, a max over fusions: 4 graph nodes instead of 8) was tried for ONNX Runtime and dropped: its
reductions over a non-innermost axis made MicroNet-M2 1.7x slower there (10.1 vs 5.9 ms, batch 1, one thread).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from effconv.ops.dynamic_shift_max import DynamicShiftMax, StaticShiftMax, shift_index


class ShiftMaxInference(nn.Module):
    """Eval-only Dynamic (or static) Shift-Max with folded coefficient arithmetic and gather indices."""

    def __init__(self, source: DynamicShiftMax | StaticShiftMax):
        super().__init__()
        self.K, self.J = source.K, source.J
        channels = _channels(source)
        self.channels = channels
        index = torch.stack([shift_index(channels, source.groups, j, source.shift) for j in range(self.J)])
        self.register_buffer("index", index)  # (J, C): partner_j(i); row 0 is the identity until permuted
        self.gather_first = False  # whether shift 0 (the channel itself) needs a gather (after permute_output)
        if isinstance(source, DynamicShiftMax):
            coefficients = source.coefficients
            act_max = coefficients.act_max
            self.fc1 = _copy_linear(coefficients.fc1)
            self.fc2 = _copy_linear(coefficients.fc2)
            with torch.no_grad():  # hardsigmoid(z) * 2 am = clamp(z am / 3 + am, 0, 2 am)
                self.fc2.weight.mul_(act_max / 3)
                self.fc2.bias.mul_(act_max / 3).add_(act_max)
            self.span = 2 * act_max
            self.register_buffer("offset", (coefficients.init - act_max).reshape(-1).clone())
            self.register_buffer("static", None)
        else:
            self.fc1 = self.fc2 = None
            self.span = 0.0
            self.register_buffer("offset", None)
            self.register_buffer("static", source.coefficients.detach().reshape(1, -1, 1, 1).clone())

    def permute_output(self, order: torch.Tensor) -> None:
        """Make the module return ``y[:, order]``: coefficients and gather indices are permuted instead."""
        order = order.to(self.index.device)
        self.index = self.index[:, order]
        self.gather_first = not torch.equal(self.index[0], torch.arange(self.channels, device=order.device))
        blocks = torch.arange(self.K * self.J, device=order.device)[:, None] * self.channels
        rows = (blocks + order[None, :]).reshape(-1)  # coefficient (k, j, i) for every output channel
        if self.fc2 is not None:
            with torch.no_grad():
                self.fc2.weight.copy_(self.fc2.weight[rows])
                self.fc2.bias.copy_(self.fc2.bias[rows])
            self.offset = self.offset[rows]
        else:
            self.static = self.static[:, rows]

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K J C, 1, 1), fusion-major then shift then channel."""
        if self.fc2 is None:
            return self.static.to(x.dtype)
        hidden = F.relu(self.fc1(x.mean((2, 3))))
        return (self.fc2(hidden).clamp(0.0, self.span) + self.offset).reshape(x.shape[0], -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.coefficients(x).split(self.channels, dim=1)  # K J tensors (N, C, 1, 1)
        shifted = self._shifted(x)
        out = None
        for k in range(self.K):
            z = shifted[0] * parts[k * self.J]
            for j in range(1, self.J):
                z = z.addcmul_(shifted[j], parts[k * self.J + j])
            if out is None:
                out = z
            elif torch.is_grad_enabled() or torch.compiler.is_compiling():  # graph capture: no out= argument
                out = torch.maximum(out, z)
            else:
                out = torch.maximum(out, z, out=out)
        return out

    def _shifted(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x if j == 0 and not self.gather_first else x.index_select(1, self.index[j]) for j in range(self.J)]

    def extra_repr(self) -> str:
        return f"{self.channels}, K={self.K}, J={self.J}"


def _channels(source) -> int:
    if isinstance(source, DynamicShiftMax):
        return source.coefficients.init.shape[-1]
    return source.coefficients.shape[-1]


def _copy_linear(layer: nn.Linear) -> nn.Linear:
    out = nn.Linear(layer.in_features, layer.out_features, bias=True).to(layer.weight)
    with torch.no_grad():
        out.weight.copy_(layer.weight)
        out.bias.copy_(layer.bias if layer.bias is not None else torch.zeros_like(out.bias))
    return out


def rewrite_shift_max(model: nn.Module) -> int:
    """Replace every Dynamic/Static Shift-Max in ``model`` by its inference form; returns the count."""
    from effconv.deploy.dataflow import replace_module

    found = [m for m in model.modules() if isinstance(m, (DynamicShiftMax, StaticShiftMax))]
    for module in found:
        replace_module(model, module, ShiftMaxInference(module))
    return len(found)
