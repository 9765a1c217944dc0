"""The Depthwise Multiception networks: params and MAdds per model x conv type against the authors' code
(reference-architectures §5.2), the structure the published numbers depend on, and a training step each."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import effconv  # noqa: F401  (registers the models)
from effconv import models
from effconv.errors import UserError
from effconv.ops.multiception import Multiception
from effconv.profile import count_cost, count_params

CONVS = ("standard", "dsconv", "multiception", "splitconv")  # splitconv: the authors' "MixConv" column

# reference-architectures §5.2 "Measured": params (exact ints where the spec gives them, else M to 4 digits)
PARAMS = {
    ("resnet20_cifar", 10): (272_474, 0.1669, 189_434, 0.2698),
    ("resnet50_cifar", 10): (0.7586, 0.4435, 0.5094, 0.7522),
    ("resnet50_cifar", 100): (0.7644, 0.4493, 0.5153, 0.7580),
    ("resnet50_cifar", 1000): (0.8229, 0.5078, 0.5738, 0.8165),  # ImageNet32
    ("seresnet56_cifar", 10): (867_866, 0.5109, 585_530, 0.8608),
    ("shakeshake26_2x96d_cifar", 10): (26.7775, 16.0358, 17.5654, 27.0653),
    ("shakeshake26_2x96d_cifar", 100): (26.8122, 16.0705, 17.6000, 27.0999),
    ("mobilenetv2_stl10", 10): (None, 2.2363, 2.2526, 2.2849),  # the paper has no standard MobileNetV2
}
# MAdds in M at (model, classes, input size): every conv type for ResNet-20 and MobileNetV2, the Table V pair
# or Multiception alone for the larger forwards (each costs seconds on CPU)
MADDS = {
    ("resnet20_cifar", 10, 32): (40.81, 24.75, 32.41, 40.06),
    ("resnet50_cifar", 10, 32): (111.59, None, 85.53, None),  # DSConv 65.37, splitconv 109.55
    ("resnet50_cifar", 10, 96): (None, None, 769.8, None),  # STL-10: (1004.3, 588.3, 769.8, 986.0)
    ("resnet50_cifar", 1000, 32): (None, None, 85.60, None),  # ImageNet32
    ("seresnet56_cifar", 10, 32): (125.76, None, 96.17, None),  # DSConv 73.50, splitconv 123.46
    # the spec prints 2566.3 for 2,566,246,144 (2566.25 rounded twice); CIFAR-100 is 2566.28
    ("shakeshake26_2x96d_cifar", 10, 32): (None, None, 2566.3, None),
    ("mobilenetv2_stl10", 10, 96): (None, 220.05, 300.97, 356.9),
}
SHAKE_EXTRA = {"unused_shortcuts": True}  # the authors' counts include their never-used shortcut modules


def build(name, num_classes, conv, **knobs):
    if name.startswith("shakeshake"):
        knobs = {**SHAKE_EXTRA, **knobs}
    return timm.create_model(name, num_classes=num_classes, conv=conv, **knobs)


def _assert_matches(ours: int, target: int | float, what: str, digits: int = 4):
    """Exact for ints; for a figure printed in M to ``digits`` decimals, within its rounding (+20% slack)."""
    if isinstance(target, int):
        assert ours == target, what
    else:
        assert ours / 1e6 == pytest.approx(target, abs=0.6 * 10**-digits), (what, ours)


@pytest.mark.parametrize(("name", "num_classes"), list(PARAMS))
def test_params_match_the_authors_code(name, num_classes):
    for conv, target in zip(CONVS, PARAMS[(name, num_classes)]):
        if target is not None:
            _assert_matches(count_params(build(name, num_classes, conv)), target, f"{name} {conv}")


@pytest.mark.parametrize(("name", "num_classes", "size"), list(MADDS))
def test_madds_match_the_authors_code(name, num_classes, size):
    for conv, target in zip(CONVS, MADDS[(name, num_classes, size)]):
        if target is not None:
            madds = count_cost(build(name, num_classes, conv), (3, size, size)).madds
            digits = len(str(target).split(".")[1])  # as many decimals as the spec prints
            _assert_matches(madds, target, f"{name} {conv} @{size}", digits)


def test_default_model_is_unchanged():
    assert count_params(timm.create_model("resnet20_cifar")) == 272_474


def test_shakenet_unused_shortcuts_are_frozen_and_idle():
    """The authors' ShakeBlock builds a shortcut in every block; the 9 width-preserving ones are never called:
    9 x (in·out + 2·out) = 584,640 parameters at 2x96d. The knob adds them frozen; the output is unchanged."""
    widths = (96, 96, 96, 192, 192, 192, 384, 384, 384)
    assert sum(w * w + 2 * w for w in widths) == 584_640
    torch.manual_seed(0)
    small = {
        "depth": 14,
        "base_width": 8,
        "num_classes": 10,
    }  # two blocks per stage: one unused shortcut each
    plain = timm.create_model("shakeshake26_2x96d_cifar", **small).eval()
    torch.manual_seed(0)
    authors = timm.create_model("shakeshake26_2x96d_cifar", unused_shortcuts=True, **small).eval()
    extra = [p for n, p in authors.named_parameters() if "unused_shortcut" in n]
    assert sum(p.numel() for p in extra) == sum(w * w + 2 * w for w in (8, 16, 32))
    assert not any(p.requires_grad for p in extra)
    assert count_params(authors) - count_params(plain) == sum(p.numel() for p in extra)
    missing = authors.load_state_dict(plain.state_dict(), strict=False)
    assert all("unused_shortcut" in k for k in missing.missing_keys) and not missing.unexpected_keys
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(authors(x), plain(x))


def test_only_the_first_conv_of_each_branch_is_replaced():
    net = timm.create_model("resnet20_cifar", conv="multiception")
    blocks = [m for m in net.features if hasattr(m, "conv1")]
    assert [b.conv1.kernels for b in blocks] == [[3, 5, 7]] * 3 + [[3, 5]] * 3 + [[3, 3]] * 3
    assert all(b.conv2[0].kernel_size == (3, 3) and b.conv2[0].groups == 1 for b in blocks)
    shake = timm.create_model("shakeshake26_2x96d_cifar", conv="multiception", depth=8, base_width=8)
    units = [m for m in shake.modules() if isinstance(m, Multiception)]
    assert [u.kernels for u in units] == [[3, 5, 7]] * 2 + [[3, 5]] * 2 + [[3, 3]] * 2  # two branches a block


def test_mobilenetv2_replaces_the_first_three_blocks_with_a_stride_1_stem():
    net = timm.create_model("mobilenetv2_stl10", conv="multiception")
    units = [m for m in net.modules() if isinstance(m, Multiception)]
    assert [u.kernels for u in units] == [[3, 5, 7], [3, 5], [3, 5]]
    assert net.features[0][0].stride == (1, 1)
    replaced = net.features[1].conv
    assert isinstance(replaced[-2], nn.ReLU) and isinstance(replaced[-1], nn.BatchNorm2d)  # ReLU + second BN
    assert net.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 1280, 2, 2)  # total stride 16, not 32


def test_bad_knobs_are_one_line_errors():
    with pytest.raises(UserError, match="unknown conv 'mixconvv'"):
        models.create({"name": "resnet20_cifar", "conv": "mixconvv"}, 10)
    with pytest.raises(UserError, match="kernels needs one entry"):
        models.create({"name": "mobilenetv2_stl10", "kernels": [[3, 5, 7], [3, 5], [3, 3]]}, 10)
    with pytest.raises(UserError, match="depth must be 6n"):
        models.create({"name": "shakeshake26_2x96d_cifar", "depth": 27}, 10)


TINY = {  # every network at a small size: one training step each
    "resnet20_cifar": {"conv": "multiception"},
    "resnet50_cifar": {"conv": "mixconv_sep", "blocks_per_stage": 2},
    "seresnet56_cifar": {"conv": "multiception", "blocks_per_stage": 2},
    "shakeshake26_2x96d_cifar": {
        "conv": "multiception",
        "depth": 8,
        "base_width": 8,
        "unused_shortcuts": True,
    },
    "mobilenetv2_stl10": {"conv": "multiception"},
}


@pytest.mark.parametrize("name", list(TINY))
def test_each_network_trains_a_step(name):
    torch.manual_seed(0)
    net = timm.create_model(name, num_classes=5, **TINY[name]).train()
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    for n, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizer.step()
    assert any(not torch.equal(before[n], p) for n, p in net.named_parameters())
    assert net.reset_classifier(7) is None and net.eval()(x).shape == (4, 7)
