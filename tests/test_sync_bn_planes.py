"""SyncBN inside DiCE units: every converted norm runs (issue 17, finding 1).

DimConv's plane path normalises each branch with ``F.batch_norm`` on ``norm``'s tensors; after SyncBN
conversion that would bypass the converted module (16 of dicenet_010's 71 norms). A converted or hooked norm
takes the interleaved path, where the module runs. The 2-process check (identical DimConv statistics on every
rank, evaluation equal to rank 0's checkpoint alone) is in tests/test_distributed.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from timm.layers import convert_sync_batchnorm
from torch.nn.modules.batchnorm import _BatchNorm

from effconv import models
from effconv.engine.sync_bn import to_sync_batchnorm
from effconv.ops.dice import DiceUnit
from effconv.ops.dimconv import DimensionWiseConv


def dicenet(size: int = 32):
    torch.manual_seed(0)
    return models.create({"name": "dicenet_010", "img_size": size}, 10)


def norms_that_ran(model, x) -> tuple[int, int]:
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    ran = set()
    handles = [n.register_forward_hook(lambda m, i, o: ran.add(id(m))) for n in norms]
    model.train()
    model(x)
    for h in handles:
        h.remove()
    return len(ran), len(norms)


@pytest.mark.parametrize(
    "convert",
    [convert_sync_batchnorm, lambda m: to_sync_batchnorm(m, torch.device("cpu"))],
    ids=["torch_syncbn", "cpu_global_statistics"],
)
def test_every_converted_norm_runs(convert):
    model = convert(dicenet())
    ran, total = norms_that_ran(model, torch.randn(2, 3, 32, 32))
    assert total == 71 and ran == total


def test_converted_unit_computes_the_plain_function():
    """Outside DDP a converted norm normalises with the local batch: the DiCE unit gives the same outputs,
    gradients and running statistics as on the plane path."""
    torch.manual_seed(0)
    plain = DiceUnit(8, 16, stride=2, input_size=12)
    synced = convert_sync_batchnorm(copy.deepcopy(plain))
    assert plain.spatial.planes_are_exact() and not synced.spatial.planes_are_exact()
    x = torch.randn(4, 8, 12, 12)
    outs = []
    for model in (plain, synced):
        model.train()
        out = model(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for (name, a), b in zip(plain.named_parameters(), synced.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)
    for (name, a), b in zip(plain.named_buffers(), synced.buffers()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_plain_dimconv_keeps_the_plane_path():
    conv = DimensionWiseConv(4, (6, 6))
    assert conv.planes_are_exact()
    conv.norm.register_forward_hook(lambda *a: None)
    assert not conv.planes_are_exact()  # a hook on the norm must see it run
