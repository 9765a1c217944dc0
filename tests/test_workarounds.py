"""The channels_last strided-1x1 crash work-around: same function, and training no longer crashes."""

import torch
from torch import nn

from effconv.engine.workarounds import SubsampledPointwiseConv2d, avoid_cpu_channels_last_crash
from tests.conftest import run_cli


def test_subsampled_pointwise_equals_strided_conv():
    conv = nn.Conv2d(8, 16, 1, stride=2)
    x = torch.randn(2, 8, 11, 11, requires_grad=True)
    expected = conv(x)
    grads = torch.autograd.grad(expected.sum(), (x, conv.weight))
    assert avoid_cpu_channels_last_crash(nn.Sequential(conv), torch.device("cpu"), True) == 1
    assert isinstance(conv, SubsampledPointwiseConv2d) and "weight" in conv.state_dict()
    out = conv(x)
    torch.testing.assert_close(out, expected)
    for a, b in zip(torch.autograd.grad(out.sum(), (x, conv.weight)), grads):
        torch.testing.assert_close(a, b)
    assert avoid_cpu_channels_last_crash(nn.Conv2d(8, 16, 3, stride=2), torch.device("cpu"), True) == 0


def test_training_step_that_crashed_torch_now_runs():
    # in a subprocess: without the work-around this aborts the interpreter (SIGSEGV)
    code = (
        "import torch; from torch import nn; from effconv.engine.workarounds import avoid_cpu_channels_last_crash\n"
        "m = nn.Conv2d(8, 16, 1, stride=2, bias=False).to(memory_format=torch.channels_last)\n"
        "avoid_cpu_channels_last_crash(m, torch.device('cpu'), True)\n"
        "x = torch.randn(4, 8, 56, 56).contiguous(memory_format=torch.channels_last).requires_grad_()\n"
        "m(x).sum().backward(); print('ok')"
    )
    done = run_cli("-c", code, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]
