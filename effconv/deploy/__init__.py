"""Deployment: the inference path (rewrites of a trained model into a faster equivalent) and export.

``inference_path(model, input_size, runtime)`` returns a rewritten copy in eval mode; the original is left
alone. Each rewrite has its own file and an equivalence test (tests/test_deploy_rewrites.py):

* ``batchnorm``: BatchNorm folded into the conv / linear layer that feeds it (any family);
* ``shift_max``: Dynamic Shift-Max with its coefficient arithmetic folded into fc2 and one gather per shift;
* ``separable``: a k x 1 conv and the 1 x k conv after it composed into one k x k conv (MicroNet);
* ``permutations``: channel shuffles folded into the layer producing them (MicroNet);
* ``dice``: the DiCE unit with its BatchNorms folded, the interleave never made and no layout copies;
* ``mixconv``: the MixConv formulation measured fastest for the runtime.

``runtime`` is where the model will run: ``eager`` (PyTorch), ``onnx`` (ONNX Runtime) or ``inductor``
(torch.compile / AOTInductor); it picks the forms that are fastest there (see each file).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

RUNTIMES = ("eager", "onnx", "inductor")
COMPOSE_DEPTHWISE = False  # depth-wise pairs too: M2 in ONNX Runtime 4.0 ms vs 3.0 (stem only)


def inference_path(model: nn.Module, input_size=(3, 224, 224), runtime: str = "eager") -> nn.Module:
    """A rewritten eval-mode copy of ``model`` computing the same function, faster on ``runtime``."""
    from effconv.deploy.batchnorm import fold_batchnorm
    from effconv.deploy.dataflow import trace_dataflow
    from effconv.deploy.dice import rewrite_dice
    from effconv.deploy.mixconv import choose_mixconv_forms
    from effconv.deploy.permutations import fold_permutations
    from effconv.deploy.separable import compose_separable
    from effconv.deploy.shift_max import rewrite_shift_max

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got '{runtime}'")
    model = copy.deepcopy(model).eval()
    param = next(model.parameters(), None)
    sample = torch.randn(1, *input_size, dtype=param.dtype if param is not None else torch.float32)
    if param is not None:
        sample = sample.to(param.device)
    counts = {"dice_units": rewrite_dice(model)}
    with torch.no_grad():
        counts["batchnorms"] = fold_batchnorm(model, trace_dataflow(model, sample))
        counts["separable_pairs"] = compose_separable(model, trace_dataflow(model, sample), COMPOSE_DEPTHWISE)
        counts["shift_max"] = rewrite_shift_max(model)
        counts["permutations"] = fold_permutations(model, trace_dataflow(model, sample))
    counts["mixconv"] = choose_mixconv_forms(model, runtime)
    model.deploy_rewrites = counts
    return model.requires_grad_(False)  # inference only: no autograd bookkeeping
