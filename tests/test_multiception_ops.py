"""Depthwise Multiception and the paper's baseline units: params and cost formulas, equivalences, splits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from effconv.models.units import replaced_conv
from effconv.ops import UNITS, create_unit
from effconv.ops.multiception import Multiception
from effconv.ops.multiception_baselines import AuthorsDepthwiseSeparable
from effconv.profile import count_cost, count_params


def test_units_are_registered_under_the_contract_names():
    for name in ("multiception", "dsconv", "splitconv", "mixconv_sep", "standard"):
        assert name in UNITS
    x = torch.randn(2, 6, 9, 9)
    for name in ("multiception", "dsconv", "splitconv", "mixconv_sep", "standard"):
        kernel = 3 if name in ("dsconv", "standard") else [3, 5, 7]
        assert create_unit(name, 6, 10, stride=2, kernel_size=kernel)(x).shape == (2, 10, 5, 5), name


@pytest.mark.parametrize("kernels", [[3, 5, 7], [3, 5], [3, 3], [5]])
def test_multiception_params_and_madds_follow_the_authors_code(kernels):
    """Params C·ΣK² + 2|K|C + |K|CN + N + 2N; MAdds: depth-wise at full resolution, the 1x1 at the stride."""
    c, n, h, w, stride = 6, 10, 9, 8, 2
    unit = Multiception(c, n, stride=stride, kernel_size=kernels)
    k = len(kernels)
    assert count_params(unit) == c * sum(q * q for q in kernels) + 2 * k * c + k * c * n + n + 2 * n
    cost = count_cost(unit, (c, h, w))
    assert cost.madds == h * w * c * sum(q * q for q in kernels) + math.ceil(h / 2) * math.ceil(w / 2) * k * c * n


def _identity_bn(bn: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.fill_(1.0)
        bn.bias.zero_()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [9, 10])
@pytest.mark.parametrize("kernel", [3, 5])
def test_one_kernel_multiception_is_dsconv_up_to_stride_placement(stride, size, kernel):
    """Paper Sec. III: with one kernel Multiception "has the same effects as DSConv". With the BN over the
    (single) depth-wise output at identity, it computes the authors' DSConv exactly, although its stride sits
    on the 1x1: that conv reads the positions a stride-s depth-wise conv produces. The cost does differ."""
    torch.manual_seed(0)
    c, n = 5, 7
    multi = Multiception(c, n, stride=stride, kernel_size=[kernel]).eval()
    ds = AuthorsDepthwiseSeparable(c, n, stride=stride, kernel_size=kernel).eval()
    _identity_bn(multi.bn_depthwise)
    with torch.no_grad():
        multi.bn.running_mean.normal_()
        multi.bn.running_var.uniform_(0.5, 2.0)
        multi.bn.weight.normal_()
        multi.bn.bias.normal_()
        multi.pointwise.bias.normal_()
    ds[0].weight.data.copy_(multi.depthwise[0].weight)
    ds[1].load_state_dict(multi.pointwise.state_dict())
    ds[2].load_state_dict(multi.bn.state_dict())
    x = torch.randn(3, c, size, size)
    torch.testing.assert_close(multi(x), ds(x), rtol=1e-5, atol=1e-5)
    out = math.ceil(size / stride)
    extra = count_cost(multi, (c, size, size)).madds - count_cost(ds, (c, size, size)).madds
    assert extra == (size * size - out * out) * c * kernel * kernel


def test_multiception_branches_see_every_channel():
    """Each kernel runs over all C channels (not a channel split as in MixConv): every branch is a full
    depth-wise conv, and a change to one input channel reaches one channel of every branch."""
    c = 6
    unit = Multiception(c, 4, kernel_size=[3, 5, 7]).eval()
    assert [conv.in_channels for conv in unit.depthwise] == [c] * 3
    assert all(conv.groups == c and conv.stride == (1, 1) for conv in unit.depthwise)
    x = torch.randn(1, c, 8, 8)
    branches = lambda t: torch.cat([conv(t) for conv in unit.depthwise], 1)  # noqa: E731
    y = x.clone()
    y[:, 4] += 1.0
    changed = (branches(y) - branches(x)).abs().flatten(2).amax(2)[0] > 0
    assert changed.nonzero().flatten().tolist() == [4, 4 + c, 4 + 2 * c]


def test_dsconv_is_the_authors_form():
    """dw k x k with the stride (no bias) -> 1x1 with a bias -> BN, nothing in between."""
    unit = AuthorsDepthwiseSeparable(8, 12, stride=2, kernel_size=3)
    assert [type(m) for m in unit] == [nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]
    assert unit[0].stride == (2, 2) and unit[0].groups == 8 and unit[0].bias is None
    assert unit[1].bias is not None
    assert count_params(unit) == 8 * 9 + 8 * 12 + 12 + 2 * 12


def test_splitconv_is_a_channel_split_full_conv():
    """The authors' "MixConv": split in/out channels over {3,5,7} (first split takes the remainder), a full
    conv per split, no BN. Output group i depends only on input group i."""
    unit = create_unit("splitconv", 16, 32, stride=1, kernel_size=[3, 5, 7]).eval()
    assert [(m.in_channels, m.out_channels, m.kernel_size[0], m.groups) for m in unit.values()] == [
        (6, 12, 3, 1),
        (5, 10, 5, 1),
        (5, 10, 7, 1),
    ]
    assert count_params(unit) == 6 * 12 * 9 + 5 * 10 * 25 + 5 * 10 * 49
    assert not any(isinstance(m, nn.BatchNorm2d) for m in unit.modules())
    x = torch.randn(1, 16, 8, 8)
    y = x.clone()
    y[:, 7] += 1.0  # a channel of the second input group
    changed = (unit(y) - unit(x)).abs().flatten(2).amax(2)[0] > 0
    assert changed.nonzero().flatten().tolist() == list(range(12, 22))


def test_mixconv_sep_is_depthwise_mixconv_then_pointwise():
    unit = create_unit("mixconv_sep", 16, 24, stride=2, kernel_size=[3, 5, 7])
    mixed = unit[0]
    assert mixed.splits == [6, 5, 5] and mixed.stride == 2  # the remainder goes to the first group
    assert [tuple(w.shape) for w in mixed.weights] == [(6, 1, 3, 3), (5, 1, 5, 5), (5, 1, 7, 7)]
    assert count_params(unit) == (6 * 9 + 5 * 25 + 5 * 49) + 2 * 16 + 16 * 24 + 2 * 24


def test_bad_kernels_are_value_errors():
    with pytest.raises(ValueError, match="odd"):
        Multiception(4, 4, kernel_size=[3, 4])
    with pytest.raises(ValueError, match="one kernel"):
        AuthorsDepthwiseSeparable(4, 4, kernel_size=[3, 5])
    with pytest.raises(ValueError, match="a channel per kernel"):
        create_unit("splitconv", 2, 8, kernel_size=[3, 5, 7])


def test_conv_knob_and_the_authors_kernels():
    sets = ((3, 5, 7), (3, 5), (3, 3))
    assert replaced_conv("multiception", None, sets) == ("multiception", [[3, 5, 7], [3, 5], [3, 3]])
    assert replaced_conv("mixconv_sep", None, sets) == ("mixconv_sep", [[3, 5, 7], [3, 5], [3, 3]])
    assert replaced_conv("splitconv", None, sets) == ("splitconv", [[3, 5, 7]] * 3)
    assert replaced_conv("dsconv", None, sets) == ("dsconv", [3, 3, 3])
    assert replaced_conv("standard", [5, 5, 3], sets) == ("standard", [5, 5, 3])
    with pytest.raises(ValueError, match="unknown conv 'multiceptoin'"):
        replaced_conv("multiceptoin", None, sets)
    with pytest.raises(ValueError, match="one entry"):
        replaced_conv("multiception", [[3, 5]], sets)
